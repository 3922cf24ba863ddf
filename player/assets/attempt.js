// kvsrtc web player: one connection attempt of a tile (player.js runs the
// attempts): its session, peer connection, signaling socket and timers, the
// adoption of the page's early connection (bootstrap.js), the frame watch,
// ICE restarts and signaling renewal. Relay mode adds its WHEP exchange in
// relay.js, storage mode its join and answer in storage.js. (One class of
// about 600 lines: its steps share the attempt's state and timers.)

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
      sess = await this.mintSession(after);
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
    if (sess.mode === 'storage') {
      this.startStorage(sess);
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
    if (e.storage) {
      // The bootstrap left a storage session alone (storage.js answers).
      e.adopted = true;
      this.startStorage(e.session);
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
    const Sig = this.storage ? StorageSignaling : Signaling;
    const sig = new Sig(url, {
      open: () => {
        if (sig !== this.sig) return;
        this.p.log('signaling-open');
        if (first) this.signalingReady();
      },
      answer: (desc) => this.onAnswer(desc),
      offer: (desc) => this.onStorageOffer(desc),
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
    sig.hold = first && !this.offerSent && !this.storage;
    const old = this.sig;
    this.sig = sig;
    if (first && sig.open) queueMicrotask(() => this.signalingReady());
    if (old && old !== sig) {
      // Keep the old socket a moment: a message may still be on its way.
      this.timer(2000, () => old.close());
    }
  }

  /** The attempt's socket is open: send the offer, or (storage mode) ask
   * the server to join the storage session. */
  signalingReady() {
    if (this.storage) this.joinStorage();
    else this.maybeSendOffer();
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
            // (!==: a storage session's new offer starts a new count)
            if (r.framesDecoded !== decoded && decoded >= 0) this.lastFrameAt = now();
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
    if (this.storage) {
      // The storage session offers, the page cannot: reconnect (the same
      // client id keeps its place in the session). New ICE servers wait.
      if (why !== 'ice-expired') this.finish(why, 'ice-restart');
      return;
    }
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
