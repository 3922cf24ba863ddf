// kvsrtc web player: one camera tile. Each connection attempt gets a fresh
// session from the server (new client id, fresh presigned URL) and waits a
// bounded time for the answer and the first frame; an attempt whose answer
// is late keeps listening while the next one runs (at most two open; the
// first answer wins and the other is torn down completely). A playing tile restarts ICE when the
// network path drops and reconnects from scratch when that fails or the
// video stalls. When it gives up it shows the server's diagnosis.

const now = () => performance.now();

/** Whether an ICE candidate line names a loopback address. */
function isLoopbackCandidate(line) {
  // candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
  const addr = (line.replace(/^a=/, '').split(' ')[4] || '').toLowerCase();
  return addr.startsWith('127.') || addr === '::1' || addr === '[::1]';
}

/** Status texts by state. */
function statusText(p) {
  const of = ` (attempt ${p.attempt} of ${p.policy.maxAttempts})`;
  switch (p.state) {
    case 'connecting':
      return p.attempt > 1 ? 'Connecting' + of : 'Connecting…';
    case 'waiting':
      return 'Waiting for the camera…' + (p.attempt > 1 ? of : '');
    case 'negotiating':
      return 'Camera answered, starting video…';
    case 'retrying':
      return 'Retrying' + of;
    case 'reconnecting':
      return p.attempt > 0 ? 'Reconnecting' + of : 'Reconnecting…';
    case 'restarting':
      return 'Connection lost, reconnecting…';
    case 'upstream': {
      // Relay mode: the server lost the camera (relay.js).
      const u = p.upstream || {};
      const why = u.cause ? ` (${u.cause})` : '';
      return u.state === 'offline' ? `Camera offline${why}: waiting for it to come back…` : `The server lost the camera${why}, reconnecting…`;
    }
    case 'playing':
      return '';
    case 'failed':
      return '';
    default:
      return '';
  }
}

class Player {
  /**
   * @param {HTMLElement} el the tile (see view())
   * @param {string} channel channel name
   * @param {object} policy retry policy from the page configuration
   */
  constructor(el, channel, policy, loopbackOnly, opts) {
    const o = opts || {};
    this.el = el;
    // The API client (the built-in pages: /api/), whether to adopt the
    // bootstrap's early connection, event hooks (state, firstFrame, failed,
    // stats, talk, message, declined), whether stats are gathered without
    // the overlay, whether sound stays off, and the two-way parts to
    // negotiate in every offer (talk: push-to-talk; data: a data channel
    // and its console; see twoway.js).
    this.api = o.api;
    this.early = o.early !== false;
    this.on = o.on || {};
    this.statsEvents = !!o.statsEvents;
    this.noSound = !!o.noSound;
    this.channel = channel;
    this.policy = policy;
    this.loopbackOnly = !!loopbackOnly;
    this.video = el.querySelector('video');
    this.statusEl = el.querySelector('.status');
    this.statusTextEl = el.querySelector('.status-text');
    this.failureEl = el.querySelector('.failure');
    this.statsEl = el.querySelector('.stats');
    this.unmuteEl = el.querySelector('.unmute');
    this.gen = 0;
    this.state = 'idle';
    this.attempt = 0;
    this.attemptsTotal = 0;
    this.recoveries = 0;
    this.ttffMs = null;
    this.startedAt = 0;
    this.cur = null; // the newest open attempt (stats)
    this.open = []; // open attempts, oldest first: at most two
    this.winner = null; // the attempt that took an answer
    this.diagnosis = null;
    this.lastCause = '';
    this.clientIds = [];
    this.events = [];
    this.statsTimer = null;
    this.prevStats = null;
    this.stats = {};
    el.querySelector('.retry').addEventListener('click', () => this.start());
    this.unmuteEl.addEventListener('click', () => {
      this.video.muted = false;
      this.video.play().catch(() => {});
      this.unmuteEl.hidden = true;
    });
    el.querySelector('.stats-toggle').addEventListener('click', () => this.toggleStats());
    this.two = new TwoWay(this, { talk: o.talk, data: o.data });
    // The overlays appear with the first frame, or half a second after the
    // navigation (the page may be built late: see bootstrap.js).
    setTimeout(() => this.show(), Math.max(0, 500 - now()));
  }

  show() {
    this.el.classList.add('shown');
  }

  log(what, detail) {
    const e = { t: Math.round(now()), what };
    if (detail !== undefined) e.detail = detail;
    this.events.push(e);
    if (this.events.length > 200) this.events.shift();
  }

  setState(state, info) {
    this.state = state;
    this.el.dataset.state = state;
    const text = statusText(this);
    this.statusTextEl.textContent = text;
    this.statusEl.hidden = text === '';
    if (state !== 'failed') this.failureEl.hidden = true;
    this.log('state', info ? `${state} ${info}` : state);
    if (this.on.state) this.on.state(state, info || '');
  }

  /** Starts (or restarts) the tile; startedAt is when the clock for the
   * time to first frame started (default: now). */
  start(startedAt) {
    this.stop();
    const gen = ++this.gen;
    this.startedAt = startedAt === undefined ? now() : startedAt;
    this.ttffMs = null;
    this.diagnosis = null;
    this.recoveries = 0;
    this.run(gen).catch((e) => this.log('error', String(e)));
  }

  stop() {
    this.two.release();
    this.gen++;
    for (const o of this.open) o.a.close();
    this.open = [];
    this.cur = null;
  }

  /** Stops the tile for good: its connections and its stats timer. */
  dispose() {
    this.stop();
    this.statsEvents = false;
    this.statsEl.hidden = true;
    this.syncStatsTimer();
  }

  backoff(n) {
    const p = this.policy;
    const d = Math.min(p.backoffCapMs, p.backoffBaseMs * 2 ** (n - 1));
    return p.noJitter ? d : Math.random() * d;
  }

  /** The connect loop, the same policy as the Go viewer's (viewer/connect.go):
   * an attempt that gets no answer within answerTimeoutMs reports it and
   * keeps listening until lateAnswerWindowMs after its offer while the next
   * attempt runs; at most two attempts are open, the first answer wins and
   * the other attempt is torn down. A lost answer is retried at once; a
   * camera that answers slowly (10 s for a C SDK camera given a non-trickle
   * offer) is not locked out. */
  async run(gen) {
    const p = this.policy;
    const late = p.lateAnswerWindowMs > p.answerTimeoutMs ? p.lateAnswerWindowMs - p.answerTimeoutMs : 0;
    let began = now();
    let reconnecting = false;
    let last = null;
    let n = 0; // attempts started in this connect cycle
    let startTimer = null;
    let full = false; // a newer attempt was refused as channel-full: start no more
    const q = [];
    let wake = null;
    const post = (ev) => {
      if (gen !== this.gen) return;
      q.push(ev);
      if (wake) {
        const w = wake;
        wake = null;
        w();
      }
    };
    // schedule: the next attempt after the backoff; false when none may start.
    const schedule = () => {
      if (startTimer !== null) return true;
      if (full || n >= p.maxAttempts) return false;
      let wait = 0;
      if (n > 0) {
        wait = this.backoff(n);
        if (last && last.retryAfterMs) wait = Math.max(wait, last.retryAfterMs);
        if (p.budgetMs > 0 && now() - began + wait > p.budgetMs) return false;
        this.attempt = n + 1;
        const lingering = this.open.filter((o) => o.timedOut).map((o) => o.a.n);
        this.setState(reconnecting ? 'reconnecting' : 'retrying', `after ${last && last.cause}` + (lingering.length ? `; still listening to attempt ${lingering.join(', ')}` : ''));
      }
      startTimer = setTimeout(() => {
        startTimer = null;
        post({ kind: 'start' });
      }, wait);
      return true;
    };
    const closeOthers = (keep) => {
      for (const o of this.open) if (o !== keep) o.a.close();
      this.open = keep ? [keep] : [];
    };
    const fresh = () => this.open.some((o) => !o.timedOut);
    schedule();
    for (;;) {
      if (!q.length) await new Promise((r) => (wake = r));
      if (gen !== this.gen) {
        clearTimeout(startTimer);
        return;
      }
      const ev = q.shift();
      if (ev.kind === 'done' && this.whepFallback && !ev.res.played && (ev.res.cause === 'channel-full' || (ev.res.cause === 'signaling-lost' && ev.res.stage === 'signaling'))) {
        // Auto mode: the channel may be full (a browser cannot see why its
        // socket was refused). The next session request says so; the server
        // checks and sends the page to its relay if it is.
        this.after = ev.res.cause;
        ev.res.retryable = true;
      }
      if (ev.kind === 'start') {
        if (fresh() || this.open.length >= 2) continue; // an answer came meanwhile
        n++;
        this.attempt = n;
        this.attemptsTotal++;
        this.setState(reconnecting ? 'reconnecting' : 'connecting');
        const o = { timedOut: false, a: null };
        o.a = new Attempt(this, n, (res) => post({ kind: 'done', o, res }), {
          late,
          timedOut: () => post({ kind: 'timeout', o }),
          answered: () => post({ kind: 'answered', o }),
        });
        this.open.push(o);
        this.cur = o.a;
        o.a.start();
        continue;
      }
      if (!this.open.includes(ev.o)) continue; // torn down already
      if (ev.kind === 'timeout') {
        ev.o.timedOut = true;
        last = { cause: 'no-answer', stage: 'answer', clientId: ev.o.a.clientId };
        this.log('answer-late', `attempt ${ev.o.a.n}: no answer within ${p.answerTimeoutMs} ms; listening ${late} ms more`);
        if (this.open.length < 2) schedule();
        continue;
      }
      if (ev.kind === 'answered') {
        clearTimeout(startTimer);
        startTimer = null;
        full = false; // the winner has its slot
        if (this.open.length > 1) this.log('answer-won', `attempt ${ev.o.a.n}${ev.o.timedOut ? ' (late)' : ''}; closing the other attempt`);
        closeOthers(ev.o);
        this.cur = ev.o.a;
        this.attempt = ev.o.a.n;
        continue;
      }
      // done
      const res = ev.res;
      this.open = this.open.filter((o) => o !== ev.o);
      if (this.cur === ev.o.a) this.cur = this.open.length ? this.open[this.open.length - 1].a : null;
      this.lastCause = res.cause;
      this.log('attempt-ended', `${res.cause} at ${res.stage}${res.played ? ' after playing' : ''}`);
      if (res.played) {
        // It played, then broke: start over with a fresh budget.
        this.recoveries++;
        this.api.report({ channel: this.channel, clientId: res.clientId || '', event: 'reconnect', cause: res.cause });
        closeOthers(null);
        clearTimeout(startTimer);
        startTimer = null;
        reconnecting = true;
        began = now();
        n = 0;
        last = res;
        schedule();
        continue;
      }
      this.api.report({ channel: this.channel, clientId: res.clientId || '', event: 'attempt-failed', cause: res.cause });
      if (full) {
        // The channel refused a newer attempt as full; this one was the
        // last chance. Its refusal says more than this one's timeout.
        if (this.open.length === 0) break;
        continue;
      }
      last = res;
      if (!res.retryable && res.cause === 'channel-full' && this.open.length > 0) {
        // An earlier attempt, still listening for a late answer, holds one
        // of the channel's slots: it decides; no further attempt starts.
        full = true;
        this.log('channel-full-waiting', `attempt ${ev.o.a.n} refused; waiting for the earlier attempt's answer`);
        continue;
      }
      if (!res.retryable) {
        closeOthers(null);
        break;
      }
      if (fresh()) continue; // the newer attempt decides
      if (!schedule() && this.open.length === 0) break;
    }
    clearTimeout(startTimer);
    if (gen !== this.gen) return;
    await this.giveUp(gen, last, now() - began);
  }

  async giveUp(gen, last, elapsed) {
    let d = last && last.diagnosis;
    if (!d) {
      try {
        d = await this.api.diagnose({
          channel: this.channel,
          clientId: (last && last.clientId) || '',
          cause: (last && last.cause) || '',
          stage: (last && last.stage) || '',
          attempts: this.attempt,
          elapsedMs: Math.round(elapsed),
        });
      } catch (e) {
        d = e instanceof ApiError ? e.diagnosis : null;
      }
    }
    if (gen !== this.gen) return;
    if (!d) {
      d = {
        cause: (last && last.cause) || 'unknown',
        title: 'Connection failed',
        message: `Could not connect to the camera of channel "${this.channel}".`,
        advice: 'Press Retry.',
      };
    }
    this.diagnosis = d;
    this.show();
    this.failureEl.querySelector('.failure-title').textContent = d.title;
    this.failureEl.querySelector('.failure-message').textContent = d.message;
    this.failureEl.querySelector('.failure-advice').textContent = d.advice;
    this.failureEl.querySelector('.failure-cause').textContent = `cause: ${d.cause}`;
    this.failureEl.hidden = false;
    this.setState('failed', d.cause);
    if (this.on.failed) this.on.failed(d);
  }

  /** Called by the attempt when the first frame is shown. */
  firstFrame(ms) {
    this.show();
    if (this.ttffMs === null) {
      this.ttffMs = ms;
      this.api.report({ channel: this.channel, clientId: this.cur ? this.cur.clientId : '', event: 'first-frame', ms });
      if (this.on.firstFrame) this.on.firstFrame(ms);
    }
    this.setState('playing');
  }

  toggleStats(show) {
    const on = show === undefined ? this.statsEl.hidden : show;
    this.statsEl.hidden = !on;
    this.syncStatsTimer();
  }

  /** Runs the stats timer while the overlay shows or stats events are
   * wanted. */
  syncStatsTimer() {
    const want = !this.statsEl.hidden || this.statsEvents;
    if (want && !this.statsTimer) {
      this.statsTimer = setInterval(() => this.updateStats(), 1000);
      this.updateStats();
    } else if (!want && this.statsTimer) {
      clearInterval(this.statsTimer);
      this.statsTimer = null;
    }
  }

  async updateStats() {
    const a = this.cur;
    const s = {
      channel: this.channel,
      state: this.state,
      attempt: this.attempt,
      resolution: this.video.videoWidth ? `${this.video.videoWidth}x${this.video.videoHeight}` : '-',
      ttff: this.ttffMs === null ? '-' : `${Math.round(this.ttffMs)} ms`,
    };
    if (a && a.pc) {
      try {
        const report = await a.pc.getStats();
        let inbound = null;
        let pair = null;
        report.forEach((r) => {
          if (r.type === 'inbound-rtp' && r.kind === 'video') inbound = r;
          if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
        });
        if (inbound) {
          const prev = this.prevStats;
          if (prev && inbound.timestamp > prev.timestamp) {
            const dt = (inbound.timestamp - prev.timestamp) / 1000;
            s.bitrate = `${Math.round(((inbound.bytesReceived - prev.bytesReceived) * 8) / dt / 1000)} kbit/s`;
            s.fps = inbound.framesPerSecond !== undefined ? String(inbound.framesPerSecond) : String(Math.round((inbound.framesDecoded - prev.framesDecoded) / dt));
          }
          this.prevStats = { timestamp: inbound.timestamp, bytesReceived: inbound.bytesReceived, framesDecoded: inbound.framesDecoded };
          s.framesDecoded = inbound.framesDecoded;
          const codec = inbound.codecId && report.get(inbound.codecId);
          if (codec) s.codec = codec.mimeType;
        }
        if (pair && pair.currentRoundTripTime !== undefined) s.rtt = `${Math.round(pair.currentRoundTripTime * 1000)} ms`;
      } catch {
        // the connection went away
      }
    }
    this.stats = s;
    if (this.on.stats) this.on.stats(s);
    const lines = [
      `resolution ${s.resolution}`,
      `fps        ${s.fps || '-'}`,
      `bitrate    ${s.bitrate || '-'}`,
      `first frame ${s.ttff}`,
      `codec      ${s.codec || '-'}`,
      `rtt        ${s.rtt || '-'}`,
      `attempt    ${s.attempt}`,
    ];
    this.statsEl.querySelector('pre').textContent = lines.join('\n');
  }

  /** A plain summary for tests and the console. */
  snapshot() {
    return {
      channel: this.channel,
      state: this.state,
      attempt: this.attempt,
      attemptsTotal: this.attemptsTotal,
      recoveries: this.recoveries,
      ttffMs: this.ttffMs,
      width: this.video.videoWidth,
      height: this.video.videoHeight,
      framesDecoded: this.cur ? this.cur.framesDecoded : 0,
      clientIds: this.clientIds.slice(),
      lastCause: this.lastCause,
      diagnosis: this.diagnosis,
      status: this.statusEl.hidden ? '' : this.statusTextEl.textContent,
      relay: !!(this.cur && this.cur.relay), // watching through the server's relay (relay.js)
      upstream: this.upstream ? this.upstream.state : '',
      events: this.events.slice(-50),
      ...this.two.snapshot(),
    };
  }
}

/** The bootstrap's early start for channel, once. */
function takeEarly(channel) {
  const all = window.kvsrtcEarly;
  const e = all && all[channel];
  if (!e || e.adopted) return null;
  delete all[channel];
  return e;
}

/** One connection attempt: session, peer connection, signaling, timers. */
class Attempt {
  constructor(player, n, done, hooks) {
    this.p = player;
    this.n = n;
    this.done = done;
    this.hooks = hooks || { late: 0, timedOut() {}, answered() {} };
    this.lingering = false;
    this.policy = player.policy;
    this.closed = false;
    this.timers = new Set();
    this.pc = null;
    this.sig = null;
    this.session = null;
    this.clientId = '';
    this.offerSent = false;
    this.answered = false;
    this.played = false;
    this.remoteCands = [];
    this.stream = null;
    this.answerTimer = null;
    this.mediaTimer = null;
    this.restartTimer = null;
    this.graceTimer = null;
    this.restarting = false;
    this.framesDecoded = 0;
    this.lastFrameAt = 0;
    this.vfc = null;
    this.renewing = false;
    this.talkTr = null; // the audio transceiver (talk-back: see twoway.js)
    this.dc = null; // the data channel
  }

  timer(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  clear(t) {
    if (t) {
      clearTimeout(t);
      clearInterval(t);
      this.timers.delete(t);
    }
    return null;
  }

  finish(cause, stage, extra) {
    if (this.closed) return;
    const res = Object.assign({ cause, stage, retryable: true, played: this.played, clientId: this.clientId }, extra || {});
    this.close();
    this.done(res);
  }

  /** Called when the answer timer runs out: the first time, with a late-answer
   * window, the attempt goes on listening while the next one starts. */
  onAnswerTimeout() {
    if (this.hooks.late > 0 && !this.lingering && !this.answered) {
      this.lingering = true;
      this.answerTimer = this.timer(this.hooks.late, () => this.onAnswerTimeout());
      this.hooks.timedOut();
      return;
    }
    this.finish('no-answer', 'answer');
  }

  /** Whether this attempt may take an answer: the first open attempt to get
   * one wins; the run loop then closes the other. */
  claim() {
    if (this.p.winner === this) return true;
    if (this.p.winner && !this.p.winner.closed) return false;
    this.p.winner = this;
    this.hooks.answered();
    return true;
  }

  /** Tears everything down: timers, signaling, peer connection, video. */
  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.p.winner === this) this.p.winner = null;
    this.p.two.detach(this);
    for (const t of this.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    this.timers.clear();
    if (this.sig) this.sig.close();
    this.sig = null;
    if (this.relay) this.relay.close();
    if (this.pc) {
      const pc = this.pc;
      pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = null;
      pc.close();
    }
    this.pc = null;
    const v = this.p.video;
    if (this.vfc !== null && v.cancelVideoFrameCallback) v.cancelVideoFrameCallback(this.vfc);
    this.vfc = null;
    if (v.srcObject === this.stream) v.srcObject = null;
    this.stream = null;
    this.p.unmuteEl.hidden = true;
  }

  async start() {
    const early = this.p.early ? takeEarly(this.p.channel) : null;
    if (early) {
      this.adopt(early);
      return;
    }
    let sess;
    try {
      const after = this.p.after;
      this.p.after = '';
      sess = await this.p.api.session(this.p.channel, '', after);
      if (after && sess.mode === 'relay') this.p.log('relay-fallback', after);
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(0, null, 0);
      const d = err.diagnosis;
      // The server's own refusal is the diagnosis, unless retrying helps.
      this.finish(d.cause, 'session', {
        retryable: !!d.retryable,
        diagnosis: d.retryable ? null : d,
        retryAfterMs: err.retryAfterMs,
      });
      return;
    }
    if (this.closed) return;
    if (sess.mode === 'relay') {
      this.startRelay(sess);
      return;
    }
    this.useSession(sess);
    const pc = (this.pc = new RTCPeerConnection({
      iceServers: sess.iceServers,
      iceTransportPolicy: sess.iceTransportPolicy || 'all',
      bundlePolicy: 'max-bundle',
    }));
    pc.addTransceiver('video', { direction: 'recvonly' });
    // Audio (send-receive with push-to-talk) and the data channel.
    this.p.two.prepare(this, pc);
    this.wirePeer();
    // The signaling socket opens while the offer is made.
    this.openSignaling(sess.signalingUrl, true);
    this.openTimer = this.timer(this.policy.answerTimeoutMs, () => {
      if (!this.offerSent) this.finish('signaling-lost', 'signaling');
    });
    let offer;
    try {
      offer = await pc.createOffer();
    } catch (e) {
      this.finish('bad-offer', 'offer', { retryable: false, detail: String(e) });
      return;
    }
    if (this.closed) return;
    // The offer goes out as soon as it exists; the answer waits for
    // setLocalDescription (this.sld).
    this.offerSdp = offer.sdp;
    this.sld = pc.setLocalDescription(offer);
    this.sld.catch((e) => this.finish('bad-offer', 'offer', { retryable: false, detail: String(e) }));
    this.offerReady = true;
    this.maybeSendOffer();
  }

  useSession(sess) {
    this.session = sess;
    if (sess.whep) this.p.whepFallback = sess.whep; // auto mode: the relay, should the channel be full
    this.clientId = sess.clientId;
    this.p.clientIds.push(sess.clientId);
  }

  wirePeer() {
    const pc = this.pc;
    pc.ontrack = (ev) => this.onTrack(ev);
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (!c || !c.candidate || !this.sig) return;
      if (this.p.loopbackOnly && !isLoopbackCandidate(c.candidate)) return;
      this.sig.sendCandidate(c);
    };
    pc.onconnectionstatechange = () => this.onConnectionState();
  }

  /** Takes over what the page's bootstrap started with the session the
   * server embedded: socket, peer connection, offer, and maybe the answer. */
  adopt(e) {
    if (e.relay) {
      this.adoptRelay(e);
      return;
    }
    e.adopted = true;
    const t = JSON.stringify(e.t, (k, v) => (typeof v === 'number' ? Math.round(v) : v));
    this.p.log('adopted', (e.answer ? 'answered' : e.sent ? 'offer sent' : e.open ? 'socket open' : 'socket opening') + ' ' + t);
    this.useSession(e.session);
    this.pc = e.pc;
    this.p.two.adopt(this, e);
    this.wirePeer();
    this.remoteCands.push(...e.remote.splice(0));
    this.openSignaling(e.ws, true, e.messages.splice(0));
    if (e.closed) {
      this.finish('signaling-lost', 'signaling', { detail: `closed ${e.closeCode}` });
      return;
    }
    if (e.video) this.takeVideo(e.video, e.stream);
    for (const ev of e.tracks.splice(0)) this.onTrack(ev);
    // The bootstrap's element may have shown the first frame already.
    if (e.t.frame !== undefined) this.onFrame(e.t.frame);
    if (e.sent) {
      this.offerSdp = e.offerSdp;
      this.sld = e.sld;
      this.offerReady = true;
      this.offerSent = true;
      this.sig.release();
      if (e.answer) {
        this.answered = true;
        e.srd.then(
          () => {
            if (this.closed) return;
            for (const c of this.remoteCands.splice(0)) this.addCandidate(c);
            this.afterAnswer();
          },
          (err) => this.finish('bad-offer', 'answer', { retryable: false, detail: String(err) }),
        );
        return;
      }
      this.p.setState('waiting');
      const left = Math.max(0, this.policy.answerTimeoutMs - (now() - e.sentAt));
      this.answerTimer = this.timer(left, () => this.onAnswerTimeout());
      return;
    }
    for (const c of e.candidates.splice(0)) this.sig.sendCandidate(c);
    this.openTimer = this.timer(this.policy.answerTimeoutMs, () => {
      if (!this.offerSent) this.finish('signaling-lost', 'signaling');
    });
    // e.offer resolves when the offer exists (e.sld applies it).
    e.offer.then(
      () => {
        if (this.closed) return;
        this.offerSdp = e.offerSdp;
        this.sld = e.sld;
        this.offerReady = true;
        this.maybeSendOffer();
      },
      (err) => this.finish('bad-offer', 'offer', { retryable: false, detail: String(err) }),
    );
  }

  /** Puts the bootstrap's video element (and its stream, if it has one: it
   * may be playing) in the tile in place of the tile's own (one DOM move:
   * playback goes on). */
  takeVideo(v, stream) {
    const old = this.p.video;
    v.className = '';
    if (old !== v) old.replaceWith(v);
    this.p.video = v;
    if (stream) this.stream = stream;
  }

  openSignaling(url, first, buffered) {
    const sig = new Signaling(url, {
      open: () => {
        if (sig !== this.sig) return;
        this.p.log('signaling-open');
        if (first) this.maybeSendOffer();
      },
      answer: (desc) => this.onAnswer(desc),
      candidate: (c) => this.onRemoteCandidate(c),
      status: (st) => this.p.log('status-response', JSON.stringify(st)),
      goAway: () => {
        this.p.log('go-away');
        this.renewSignaling('go-away');
      },
      reconnectICE: () => {
        this.p.log('reconnect-ice-server');
        this.renewSignaling('ice-expired', true);
      },
      close: (code) => {
        if (sig !== this.sig) return;
        this.p.log('signaling-closed', code);
        this.sig = null;
        if (!this.answered) {
          this.finish('signaling-lost', 'signaling', { detail: `closed ${code}` });
        } else {
          // Media does not need the socket; renew it for ICE restarts.
          this.timer(500, () => this.renewSignaling('signaling-lost'));
        }
      },
      error: () => this.p.log('signaling-error'),
    }, buffered);
    sig.hold = first && !this.offerSent;
    const old = this.sig;
    this.sig = sig;
    if (first && sig.open) queueMicrotask(() => this.maybeSendOffer());
    if (old && old !== sig) {
      // Keep the old socket a moment: a message may still be on its way.
      this.timer(2000, () => old.close());
    }
  }

  maybeSendOffer() {
    if (this.offerSent || !this.offerReady || !this.sig || !this.sig.open) return;
    this.offerSent = true;
    this.openTimer = this.clear(this.openTimer);
    // The offer as created: candidates gathered since then are trickled
    // (and filtered) on their own.
    this.sig.sendOffer({ type: 'offer', sdp: this.offerSdp });
    this.sig.release();
    this.p.setState('waiting');
    this.answerTimer = this.timer(this.policy.answerTimeoutMs, () => this.onAnswerTimeout());
  }

  async onAnswer(desc) {
    if (this.closed || !this.pc) return;
    this.p.log('answer');
    try {
      await this.sld; // the offer may have gone out before it was applied
    } catch {
      return;
    }
    if (this.closed || !this.pc) return;
    if (this.pc.signalingState !== 'have-local-offer') return; // a duplicate
    if (!this.claim()) {
      this.p.log('answer-ignored', `attempt ${this.n}: another attempt was answered first`);
      return;
    }
    const first = !this.answered;
    this.answered = true;
    this.answerTimer = this.clear(this.answerTimer);
    try {
      await this.pc.setRemoteDescription(desc);
    } catch (e) {
      this.finish('bad-offer', 'answer', { retryable: false, detail: String(e) });
      return;
    }
    if (this.closed) return;
    for (const c of this.remoteCands.splice(0)) this.addCandidate(c);
    if (first) this.afterAnswer();
    else if (this.restarting && this.pc.connectionState === 'connected') {
      // An ICE restart keeps the working path until the new one is up, so
      // the state may never leave "connected".
      this.restartDone();
    }
  }

  /** The answer is applied: wait a bounded time for the first frame. */
  afterAnswer() {
    this.p.two.answered(this);
    if (this.played) return; // the bootstrap's element is showing frames
    this.p.setState('negotiating');
    this.mediaTimer = this.timer(this.policy.mediaTimeoutMs, () => {
      const st = this.pc && this.pc.connectionState;
      this.finish(st === 'connected' ? 'no-media' : 'ice-failed', st === 'connected' ? 'media' : 'ice');
    });
  }

  onRemoteCandidate(c) {
    if (!this.pc) return;
    if (!this.pc.remoteDescription) this.remoteCands.push(c);
    else this.addCandidate(c);
  }

  addCandidate(c) {
    this.pc.addIceCandidate(c).catch((e) => this.p.log('bad-candidate', String(e)));
  }

  onTrack(ev) {
    // Live camera: play each frame as soon as it is decoded.
    if (ev.receiver && 'jitterBufferTarget' in ev.receiver) ev.receiver.jitterBufferTarget = 0;
    if (!this.stream) {
      this.stream = new MediaStream();
      this.p.video.srcObject = this.stream;
    }
    this.stream.addTrack(ev.track);
    if (ev.track.kind === 'audio') {
      if (this.p.video.muted && !this.p.noSound) this.p.unmuteEl.hidden = false;
      return;
    }
    this.p.video.play().catch(() => {});
    this.watchFrames();
  }

  /** Counts presented frames; the first one ends the attempt's setup. */
  watchFrames() {
    const v = this.p.video;
    if (!v.requestVideoFrameCallback) {
      // Without rVFC, the 'playing' event stands for the first frame.
      v.addEventListener('playing', () => !this.closed && this.onFrame(), { once: true });
      this.timer(250, () => this.pollFrames());
      return;
    }
    const cb = (ts, meta) => {
      if (this.closed) return;
      this.framesDecoded = meta && meta.presentedFrames ? meta.presentedFrames : this.framesDecoded + 1;
      this.onFrame();
      this.vfc = v.requestVideoFrameCallback(cb);
    };
    this.vfc = v.requestVideoFrameCallback(cb);
  }

  async pollFrames() {
    if (!this.pc) return;
    try {
      const report = await this.pc.getStats();
      report.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > this.framesDecoded) {
          this.framesDecoded = r.framesDecoded;
          this.onFrame();
        }
      });
    } catch {
      return;
    }
    if (!this.closed) this.timer(250, () => this.pollFrames());
  }

  /** A frame was presented (at: when, default now). */
  onFrame(at) {
    const t = at === undefined ? now() : at;
    this.lastFrameAt = Math.max(this.lastFrameAt, t);
    if (this.played) return;
    this.played = true;
    this.mediaTimer = this.clear(this.mediaTimer);
    this.p.firstFrame(t - this.p.startedAt);
    // Stall watch: no new decoded frame for stallTimeoutMs means the camera
    // stopped. Decoding is read from the stats too, since a hidden tab
    // presents no frames (and so gets no frame callbacks).
    const every = Math.max(250, Math.min(1000, this.policy.stallTimeoutMs / 4));
    let decoded = -1;
    const iv = setInterval(async () => {
      if (this.closed || !this.pc) return;
      try {
        const report = await this.pc.getStats();
        report.forEach((r) => {
          if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded !== undefined) {
            if (r.framesDecoded > decoded && decoded >= 0) this.lastFrameAt = now();
            decoded = r.framesDecoded;
          }
        });
      } catch {
        // the connection went away; the checks below decide
      }
      if (this.closed) return;
      if (now() - this.lastFrameAt > this.policy.stallTimeoutMs) {
        if (this.restarting) return; // the restart has its own bound
        if (this.upstreamDown()) return; // relay: the tile shows the camera's trouble
        this.finish('master-gone', 'media');
      }
    }, every);
    this.timers.add(iv);
  }

  onConnectionState() {
    if (this.closed || !this.pc) return;
    const st = this.pc.connectionState;
    this.p.log('connection', st);
    switch (st) {
      case 'connected':
        this.graceTimer = this.clear(this.graceTimer);
        if (this.restarting && this.pc.signalingState === 'stable') this.restartDone();
        break;
      case 'disconnected':
        if (this.played && !this.restarting && !this.graceTimer) {
          this.graceTimer = this.timer(this.policy.iceRestartGraceMs, () => {
            this.graceTimer = null;
            this.restartICE('network-change');
          });
        }
        break;
      case 'failed':
        if (this.played) this.restartICE('network-change');
        else this.finish('ice-failed', 'ice');
        break;
      default:
    }
  }

  restartDone() {
    this.restarting = false;
    this.restartTimer = this.clear(this.restartTimer);
    this.p.log('ice-restarted');
    this.p.setState(this.played ? 'playing' : 'negotiating');
  }

  /** ICE restart over the (renewed if need be) signaling connection; a full
   * reconnect when it does not connect in time. */
  async restartICE(why) {
    if (this.closed || this.restarting) return;
    this.restarting = true;
    this.p.setState('restarting', why);
    this.p.api.report({ channel: this.p.channel, clientId: this.clientId, event: 'reconnect', cause: why });
    this.restartTimer = this.timer(this.policy.answerTimeoutMs + 5000, () => this.finish(why, 'ice-restart'));
    if (this.relay) {
      try {
        await this.relay.restart(this.pc);
        if (!this.closed && this.pc.connectionState === 'connected') this.restartDone();
      } catch (e) {
        this.finish(why, 'ice-restart', { detail: (e && e.detail) || String(e) });
      }
      return;
    }
    if (!this.sig || !this.sig.open) {
      const ok = await this.renewSignaling(why);
      if (!ok || this.closed) return;
    }
    try {
      const offer = await this.pc.createOffer({ iceRestart: true });
      await this.pc.setLocalDescription(offer);
      if (this.closed) return;
      if (this.sig) this.sig.sendOffer({ type: 'offer', sdp: offer.sdp });
    } catch (e) {
      this.finish(why, 'ice-restart', { detail: String(e) });
    }
  }

  /** A new signaling connection for the same client id (GO_AWAY, a lost
   * socket, new ICE servers); media keeps flowing meanwhile. */
  async renewSignaling(why, newICE) {
    if (this.closed || this.renewing) return false;
    this.renewing = true;
    try {
      for (let i = 0; i < 3 && !this.closed; i++) {
        try {
          const sess = await this.p.api.session(this.p.channel, this.clientId);
          if (this.closed) return false;
          this.session = sess;
          const opened = new Promise((resolve) => {
            this.openSignaling(sess.signalingUrl, false);
            const sig = this.sig;
            const check = setInterval(() => {
              if (this.closed || sig.closed || sig.open) {
                clearInterval(check);
                resolve(sig.open);
              }
            }, 20);
            this.timers.add(check);
          });
          if (!(await opened)) continue;
          this.p.log('signaling-renewed', why);
          if (newICE && this.pc) {
            this.pc.setConfiguration(Object.assign(this.pc.getConfiguration(), { iceServers: sess.iceServers }));
            this.renewing = false;
            this.restartICE('ice-expired');
          }
          return true;
        } catch (e) {
          this.p.log('renew-failed', String(e));
          await new Promise((r) => setTimeout(r, 500 * (i + 1)));
        }
      }
      return false;
    } finally {
      this.renewing = false;
    }
  }
}

/** Builds a tile for a channel inside parent and returns its element. Its
 * parts carry CSS part names (tile, video, status, failure, failure-title,
 * failure-message, failure-advice, failure-cause, retry, stats, bar,
 * label, unmute, stats-toggle; with two-way, twoway.js adds talk,
 * data-toggle, console, console-log, console-input and notice) for pages
 * that theme a <kvs-viewer>. */
function view(parent, channel) {
  const part = (e, name) => {
    e.setAttribute('part', name);
    return e;
  };
  const el = part(document.createElement('div'), 'tile');
  el.className = 'player';
  el.dataset.channel = channel;
  const video = part(document.createElement('video'), 'video');
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  el.append(video);

  const status = part(document.createElement('div'), 'status');
  status.className = 'status';
  status.setAttribute('role', 'status');
  const spin = document.createElement('span');
  spin.className = 'spinner';
  const text = document.createElement('span');
  text.className = 'status-text';
  status.append(spin, text);
  el.append(status);

  const failure = part(document.createElement('div'), 'failure');
  failure.className = 'failure';
  failure.setAttribute('role', 'alert');
  failure.hidden = true;
  for (const [tag, cls] of [['h2', 'failure-title'], ['p', 'failure-message'], ['p', 'failure-advice'], ['p', 'failure-cause']]) {
    const e = part(document.createElement(tag), cls);
    e.className = cls;
    failure.append(e);
  }
  const retry = part(document.createElement('button'), 'retry');
  retry.className = 'retry';
  retry.type = 'button';
  retry.textContent = 'Retry';
  failure.append(retry);
  el.append(failure);

  const stats = part(document.createElement('div'), 'stats');
  stats.className = 'stats';
  stats.hidden = true;
  stats.append(document.createElement('pre'));
  el.append(stats);

  const bar = part(document.createElement('div'), 'bar');
  bar.className = 'bar';
  const label = part(document.createElement('span'), 'label');
  label.className = 'label';
  label.textContent = channel;
  const unmute = part(document.createElement('button'), 'unmute');
  unmute.className = 'unmute';
  unmute.type = 'button';
  unmute.textContent = 'Sound on';
  unmute.hidden = true;
  const st = part(document.createElement('button'), 'stats-toggle');
  st.className = 'stats-toggle';
  st.type = 'button';
  st.textContent = 'Stats';
  bar.append(label, unmute, st);
  el.append(bar);
  parent.append(el);
  return el;
}
