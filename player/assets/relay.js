// kvsrtc web player: relay mode. A tile watches through the server's WHEP
// endpoint (RFC 9725) instead of joining the channel as a viewer of its own:
// the server is the camera's one viewer and forwards its media to every
// browser (see docs/SCALING.md). The attempt's timers, frame watch and
// two-way parts are player.js's; this file is the WHEP exchange (POST the
// offer, PATCH trickle candidates and ICE restarts, DELETE on leaving) and
// the upstream status the server sends as server-sent events.

/** The cause of a refused WHEP request, and whether retrying can help. */
function whepRefusal(status, headers, text) {
  const detail = `WHEP: HTTP ${status}${text ? ': ' + text.trim() : ''}`;
  const ra = Number(headers && headers.get('Retry-After')) * 1000 || 0;
  const told = (headers && headers.get('X-Kvsrtc-Cause')) || '';
  switch (status) {
    case 0:
      return { cause: 'service-unavailable', retryable: true, detail: 'the player server is unreachable' };
    case 400:
    case 415:
      return { cause: 'bad-offer', retryable: false, detail };
    case 401:
      return { cause: 'unauthorized', retryable: false, detail };
    case 403:
      return { cause: 'channel-not-served', retryable: false, detail };
    case 404:
      return { cause: 'channel-not-found', retryable: false, detail };
    case 503:
      // The camera sent no video in time (its cause, when known), or the
      // relay is full.
      return { cause: told || 'no-answer', retryable: true, detail, retryAfterMs: ra };
    default:
      return { cause: 'service-unavailable', retryable: true, detail, retryAfterMs: ra };
  }
}

/** The refusal of a response that is not OK, with its body's text. */
async function refusalOf(r) {
  let text = '';
  try {
    text = await r.text();
  } catch {
    text = '';
  }
  return whepRefusal(r.status, r.headers, text);
}

/** The ICE credentials and candidates of an SDP fragment or description. */
function iceParts(sdp) {
  const get = (k) => {
    const m = sdp.match(new RegExp('^a=' + k + ':(.*)$', 'm'));
    return m ? m[1].trim() : '';
  };
  const cands = sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
  return { ufrag: get('ice-ufrag'), pwd: get('ice-pwd'), cands };
}

/** The remote description after an ICE restart: the old answer with the new
 * credentials and candidates (in the first media section: the connection is
 * bundled). */
function restartedAnswer(old, frag) {
  const f = iceParts(frag);
  const out = [];
  let section = -1;
  for (const l of old.split(/\r?\n/)) {
    if (l === '') continue;
    if (l.startsWith('m=')) {
      section++;
      out.push(l);
      continue;
    }
    if (l.startsWith('a=candidate:') || l === 'a=end-of-candidates') continue;
    if (l.startsWith('a=ice-ufrag:') && f.ufrag) {
      out.push('a=ice-ufrag:' + f.ufrag);
      if (section === 0) out.push(...f.cands);
      continue;
    }
    if (l.startsWith('a=ice-pwd:') && f.pwd) {
      out.push('a=ice-pwd:' + f.pwd);
      continue;
    }
    out.push(l);
  }
  return out.join('\r\n') + '\r\n';
}

/** Reads a server-sent event stream with fetch (so that it carries the same
 * Authorization header as every other request), calling on(event, data). */
async function readEvents(url, headers, signal, on) {
  const r = await fetch(url, { headers, signal, credentials: 'same-origin', cache: 'no-store' });
  if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let ev = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) ev = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      if (data) on(ev, data);
    }
  }
}

/** Upstream states (relay.Status) a tile shows instead of video. */
const upstreamTrouble = { reconnecting: true, offline: true };

/** One attempt's WHEP session. */
class RelayLink {
  constructor(a, url) {
    this.a = a;
    this.url = url;
    this.location = '';
    this.pending = []; // candidates waiting for the resource, or a PATCH in flight
    this.sending = false;
    this.ended = false;
    this.closed = false;
    this.status = null; // the upstream's last relay.Status
    this.abort = new AbortController();
  }

  headers(extra) {
    return this.a.p.api.headers().then((h) => Object.assign({}, h, extra || {}));
  }

  /** A request to the resource; resolves to the response, or throws the
   * refusal (see whepRefusal). */
  async request(url, method, type, body, timeoutMs) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), timeoutMs || 10000);
    const stop = () => ctl.abort();
    this.abort.signal.addEventListener('abort', stop);
    let r;
    try {
      r = await fetch(url, {
        method,
        headers: await this.headers(type ? { 'Content-Type': type } : undefined),
        body,
        signal: ctl.signal,
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch {
      throw whepRefusal(0);
    } finally {
      clearTimeout(t);
      this.abort.signal.removeEventListener('abort', stop);
    }
    if (!r.ok) throw await refusalOf(r);
    return r;
  }

  /** POSTs the offer; resolves to the answer. */
  async connect(offer, timeoutMs) {
    const r = await this.request(this.url, 'POST', 'application/sdp', offer, timeoutMs);
    const answer = await r.text();
    this.accept(r);
    return answer;
  }

  /** Takes the resource of a 201 answer to the offer: where to PATCH and
   * DELETE, and the upstream's status events. */
  accept(r) {
    this.location = new URL(r.headers.get('Location') || '', new URL(this.url, location.href)).href;
    const m = (r.headers.get('Link') || '').match(/<([^>]+)>;\s*rel="urn:ietf:params:whep:ext:core:server-sent-events"/);
    if (m) this.watch(new URL(m[1], this.location).href);
    this.flush();
  }

  /** Queues a local candidate (null: the end of them) for a trickle PATCH. */
  candidate(c) {
    if (this.ended) return;
    if (!c || !c.candidate) this.ended = true;
    else this.pending.push(c);
    this.flush();
  }

  /** Sends the queued candidates in one PATCH (one at a time). */
  async flush() {
    if (!this.location || this.sending || this.closed) return;
    if (!this.pending.length && !(this.ended && !this.endSent)) return;
    const pc = this.a.pc;
    if (!pc || !pc.localDescription) return;
    const cands = this.pending.splice(0);
    const end = this.ended && !this.endSent;
    const { ufrag, pwd } = iceParts(pc.localDescription.sdp);
    const mid = (cands[0] && cands[0].sdpMid) || '0';
    const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, 'm=video 9 UDP/TLS/RTP/SAVPF 0', `a=mid:${mid}`];
    for (const c of cands) lines.push('a=' + c.candidate);
    if (end) lines.push('a=end-of-candidates');
    this.sending = true;
    try {
      await this.request(this.location, 'PATCH', 'application/trickle-ice-sdpfrag', lines.join('\r\n') + '\r\n');
      if (end) this.endSent = true;
    } catch (e) {
      this.a.p.log('trickle-failed', e.detail || String(e));
    } finally {
      this.sending = false;
    }
    this.flush();
  }

  /** ICE restart of this browser's connection alone (the camera's session is
   * not touched): a PATCH with new credentials; its answer replaces the
   * remote ones. */
  async restart(pc) {
    const offer = await pc.createOffer({ iceRestart: true });
    await pc.setLocalDescription(offer);
    const p = iceParts(offer.sdp);
    const body = [`a=ice-ufrag:${p.ufrag}`, `a=ice-pwd:${p.pwd}`, 'm=video 9 UDP/TLS/RTP/SAVPF 0', 'a=mid:0', ...p.cands].join('\r\n') + '\r\n';
    const r = await this.request(this.location, 'PATCH', 'application/trickle-ice-sdpfrag', body);
    const frag = r.status === 200 ? await r.text() : '';
    if (!frag) throw whepRefusal(500, null, 'no answer to the ICE restart');
    await pc.setRemoteDescription({ type: 'answer', sdp: restartedAnswer(pc.remoteDescription.sdp, frag) });
  }

  /** Follows the upstream's status until the link closes. */
  async watch(url) {
    for (let i = 0; !this.closed && i < 5; i++) {
      try {
        await readEvents(url, await this.headers(), this.abort.signal, (ev, data) => {
          if (ev !== 'status') return;
          try {
            this.a.onUpstream(JSON.parse(data));
          } catch (e) {
            this.a.p.log('bad-status', String(e));
          }
        });
      } catch (e) {
        if (this.closed) return;
        this.a.p.log('status-stream', String(e));
      }
      if (!this.closed) await new Promise((r) => setTimeout(r, 1000 * (i + 1)));
    }
  }

  /** Leaves: DELETE the resource (kept alive past a page unload). */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    if (!this.location) return;
    const loc = this.location;
    this.headers().then((headers) =>
      fetch(loc, { method: 'DELETE', headers, keepalive: true, credentials: 'same-origin' }).catch(() => {}),
    );
  }
}

/** Relay mode: the attempt's peer connection talks to the server's relay. */
Attempt.prototype.startRelay = async function (sess) {
  const link = (this.relay = new RelayLink(this, sess.whep));
  const pc = (this.pc = new RTCPeerConnection({
    iceServers: sess.iceServers || [],
    iceTransportPolicy: sess.iceTransportPolicy || 'all',
    bundlePolicy: 'max-bundle',
  }));
  pc.addTransceiver('video', { direction: 'recvonly' });
  this.p.two.prepare(this, pc);
  pc.ontrack = (ev) => this.onTrack(ev);
  pc.onconnectionstatechange = () => this.onConnectionState();
  pc.onicecandidate = (ev) => {
    const c = ev.candidate;
    if (c && c.candidate && this.p.loopbackOnly && !isLoopbackCandidate(c.candidate)) return;
    link.candidate(c);
  };
  let offer;
  try {
    offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
  } catch (e) {
    this.finish('bad-offer', 'offer', { retryable: false, detail: String(e) });
    return;
  }
  if (this.closed) return;
  this.offerSdp = offer.sdp;
  this.offerSent = true;
  this.p.setState('waiting');
  // The relay answers once the camera's video is there: on a cold channel
  // that is the upstream's whole connect, so the bound is longer than an
  // answer's.
  let answer;
  try {
    answer = await link.connect(offer.sdp, this.policy.answerTimeoutMs + 10000);
  } catch (e) {
    if (this.closed) return;
    const r = e && e.cause ? e : whepRefusal(0);
    this.p.log('whep-refused', r.detail || '');
    this.finish(r.cause, 'answer', { retryable: r.retryable, detail: r.detail, retryAfterMs: r.retryAfterMs });
    return;
  }
  if (this.closed) return;
  if (!this.claim()) return;
  this.answered = true;
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  } catch (e) {
    this.finish('bad-offer', 'answer', { retryable: false, detail: String(e) });
    return;
  }
  if (this.closed) return;
  this.p.log('relay-joined', link.location);
  this.afterAnswer();
};

/** Takes over the bootstrap's early relay connection (bootstrap.js): its
 * peer connection, its offer (maybe answered already) and its video. */
Attempt.prototype.adoptRelay = async function (e) {
  e.adopted = true;
  this.p.log('adopted', 'relay ' + JSON.stringify(e.t, (k, v) => (typeof v === 'number' ? Math.round(v) : v)));
  const link = (this.relay = new RelayLink(this, e.session.whep));
  const pc = (this.pc = e.pc);
  this.p.two.adopt(this, e);
  pc.ontrack = (ev) => this.onTrack(ev);
  pc.onconnectionstatechange = () => this.onConnectionState();
  const cand = (c) => {
    if (c && c.candidate && this.p.loopbackOnly && !isLoopbackCandidate(c.candidate)) return;
    link.candidate(c);
  };
  pc.onicecandidate = (ev) => cand(ev.candidate);
  for (const c of e.candidates.splice(0)) cand(c);
  if (e.video) this.takeVideo(e.video, e.stream);
  for (const ev of e.tracks.splice(0)) this.onTrack(ev);
  if (e.t.frame !== undefined) this.onFrame(e.t.frame);
  this.offerSent = true;
  if (!this.played) this.p.setState('waiting');
  const bound = this.timer(this.policy.answerTimeoutMs + 10000, () => this.finish('no-answer', 'answer'));
  try {
    await e.offer;
  } catch (err) {
    if (this.closed) return;
    const detail = String(err);
    if (e.answer !== undefined || e.offerSdp === undefined) {
      // The browser could not make the offer, or rejected the answer.
      this.finish('bad-offer', 'answer', { retryable: false, detail });
      return;
    }
    const r = whepRefusal(e.response ? 500 : 0, null, detail);
    this.finish(r.cause, 'answer', { retryable: r.retryable, detail });
    return;
  }
  this.clear(bound);
  if (this.closed) return;
  const r = e.response;
  if (!r.ok) {
    const f = await refusalOf(r);
    this.p.log('whep-refused', f.detail || '');
    this.finish(f.cause, 'answer', { retryable: f.retryable, detail: f.detail, retryAfterMs: f.retryAfterMs });
    return;
  }
  link.accept(r);
  if (!this.claim()) return;
  this.answered = true;
  this.p.log('relay-joined', link.location);
  this.afterAnswer();
};

/** The relay's upstream status (relay.Status): the camera's side of the
 * connection. Trouble there is shown on the tile while the connection to the
 * server stays up; video resumes by itself when the camera is back. */
Attempt.prototype.onUpstream = function (st) {
  if (this.closed) return;
  const prev = this.relay.status;
  this.relay.status = st;
  this.p.log('upstream', `${st.state}${st.cause ? ' ' + st.cause : ''}`);
  if (st.state === 'closed') {
    this.finish('signaling-lost', 'relay', { detail: 'the server closed the channel' });
    return;
  }
  this.relayTwoWay(st);
  if (upstreamTrouble[st.state]) {
    this.p.upstream = st;
    this.p.setState('upstream', st.cause || st.state);
    return;
  }
  this.p.upstream = null;
  if (st.state === 'streaming' && prev && upstreamTrouble[prev.state]) {
    // Do not count the outage as a stall of this browser's connection.
    this.lastFrameAt = now();
    if (this.played) this.p.setState('playing', 'the camera is back');
  }
};

/** Two-way through the relay: one speaker at a time (status.talker is the
 * WHEP resource that has the floor), and what the camera declined. */
Attempt.prototype.relayTwoWay = function (st) {
  const two = this.p.two;
  const mine = this.relay.location.split('/').pop();
  const other = !!st.talker && st.talker !== mine;
  if (other !== !!this.p.otherTalking) {
    this.p.otherTalking = other;
    this.p.log('talker', other ? 'another page' : st.talker ? 'this page' : 'nobody');
    if (other && two.talk) two.notice('Someone else is talking to the camera: your voice goes through when they stop.');
  }
  if (st.talkDeclined && two.talk && !two.talkDeclined) {
    two.talkDeclined = 'The camera declined talk-back audio: it does not take it (video is not affected).';
    if (two.talkEl) two.updateTalk();
  }
  if (st.dataDeclined && two.data && !two.dataDeclined) {
    two.dataDeclined = 'The camera declined the data channel: it does not take messages.';
    if (two.consoleEl) two.updateData();
  }
};

/** Whether the camera's side is in trouble (the tile then waits for it
 * instead of reconnecting). */
Attempt.prototype.upstreamDown = function () {
  return !!(this.relay && this.relay.status && upstreamTrouble[this.relay.status.state]);
};
