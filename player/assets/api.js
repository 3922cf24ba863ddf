// kvsrtc web player: the client of the server's JSON API.

/** An API refusal: the server's diagnosis, the HTTP status, Retry-After. */
class ApiError extends Error {
  constructor(status, diagnosis, retryAfterMs) {
    super((diagnosis && diagnosis.message) || `HTTP ${status}`);
    this.status = status;
    this.diagnosis = diagnosis || {
      cause: status === 0 ? 'service-unavailable' : 'bad-request',
      title: status === 0 ? 'The player server is unreachable' : 'Request failed',
      message: status === 0 ? 'The browser could not reach the player server.' : `The player server answered HTTP ${status}.`,
      advice: 'Check your network connection and press Retry.',
      retryable: true,
    };
    this.retryAfterMs = retryAfterMs || 0;
  }
}

async function post(path, body) {
  let r;
  try {
    r = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, null, 0);
  }
  let j = null;
  if (r.status !== 204) {
    try {
      j = await r.json();
    } catch {
      j = null;
    }
  }
  if (!r.ok) {
    const ra = Number(r.headers.get('Retry-After')) * 1000 || 0;
    throw new ApiError(r.status, j && j.error, ra);
  }
  return j;
}

const api = {
  /** A fresh session (new client id, presigned URL, ICE servers), or a
   * renewed signaling URL for clientId when renew is given. */
  session(channel, renew) {
    return post('/api/session', renew ? { channel, renew } : { channel });
  },
  /** The server's diagnosis of a failure the page gives up on. */
  diagnose(report) {
    return post('/api/diagnose', report);
  },
  /** Best-effort metrics report; never throws. */
  report(report) {
    post('/api/report', report).catch(() => {});
  },
};
