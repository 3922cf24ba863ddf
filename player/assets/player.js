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
    this.storageId = ''; // storage mode: the client id a reconnect keeps (storage.js)
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
