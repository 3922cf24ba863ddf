// kvsrtc web player: the client of the server's JSON API (the built-in
// pages' /api/, or a Handler mounted by another app).

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

/**
 * A client of the API at base (a path or URL ending in "/"). token, when
 * given, is a function returning (a promise of) a bearer token for each
 * request ('' for none): the app's own short-lived credential.
 */
function apiClient(base, token) {
  const post = async (path, body) => {
    const headers = { 'Content-Type': 'application/json' };
    let r;
    try {
      const t = token ? await token() : '';
      if (t) headers.Authorization = 'Bearer ' + t;
      r = await fetch(base + path, {
        method: 'POST',
        headers,
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
  };
  return {
    /** A fresh session (new client id, presigned URL, ICE servers), or a
     * renewed signaling URL for clientId when renew is given. after is the
     * cause of the page's failed attempt (auto mode: the server checks
     * whether the channel is full). A session with mode "relay" names the
     * relay's WHEP endpoint to use instead. */
    session(channel, renew, after) {
      const body = { channel };
      if (renew) body.renew = renew;
      if (after) body.after = after;
      return post('session', body);
    },
    /** Storage mode (storage.js): asks the server to join clientId, whose
     * signaling socket is open, to the channel's storage session; its offer
     * comes over that socket. retry counts the re-joins of the attempt. */
    storageJoin(channel, clientId, retry) {
      return post('storage-join', { channel, clientId, retry });
    },
    /** The headers that authenticate a request of the page's own (WHEP). */
    async headers() {
      const t = token ? await token() : '';
      return t ? { Authorization: 'Bearer ' + t } : {};
    },
    /** The server's diagnosis of a failure the page gives up on. */
    diagnose(report) {
      return post('diagnose', report);
    },
    /** Best-effort metrics report; never throws. */
    report(report) {
      post('report', report).catch(() => {});
    },
  };
}
