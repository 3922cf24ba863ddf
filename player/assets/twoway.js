// kvsrtc web player: two-way, per tile. Push-to-talk: the microphone is
// asked for only while the button is held, its track is attached to the
// talk-back sender with replaceTrack and stopped on release. The data
// channel: a small console (hidden until its toggle is pressed) sends a
// typed line and shows what comes back. Both are negotiated in every
// attempt's offer (a send-receive audio transceiver without a track, a
// data channel), so pressing costs no round trip; an ICE restart keeps
// them (same peer connection) and a reconnect brings them back by itself
// (the new attempt's offer carries them again; a held button's track is
// attached to the new sender).

const DATA_LABEL = 'kvsDataChannel';
// The same words as the Go viewer's ErrTalkbackDeclined and
// ErrDataChannelDeclined (viewer/twoway.go).
const TALK_DECLINED = 'The master declined talk-back audio: this camera does not take it (video is not affected).';
const DATA_DECLINED = 'The master does not accept a data channel: this camera does not take it (video is not affected).';
const MAX_MESSAGE = 65536; // the viewer's and the master's MaxMessageSize
const MAX_OUTBOX = 100; // lines typed while the channel is not open
const MAX_LOG_LINES = 200;

/** The tiles whose button is held: a page that is hidden (another tab,
 * minimised) sends nothing, so they are released. */
const holding = new Set();
let watchingVisibility = false;
function watchVisibility() {
  if (watchingVisibility) return;
  watchingVisibility = true;
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) for (const tw of [...holding]) tw.release();
  });
}

/** The media sections of an SDP: kind, port and direction. */
function sdpSections(sdp) {
  const out = [];
  let cur = null;
  for (const line of (sdp || '').split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      const f = line.slice(2).split(' ');
      cur = { kind: f[0], port: Number(f[1]), dir: 'sendrecv' };
      out.push(cur);
    } else if (cur && /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) {
      cur.dir = line.slice(2);
    }
  }
  return out;
}

class TwoWay {
  /**
   * @param {Player} p the tile's player
   * @param {{talk?: boolean, data?: boolean}} opts what to negotiate
   */
  constructor(p, opts) {
    this.p = p;
    this.talk = !!opts.talk;
    this.data = !!opts.data;
    this.at = null; // the answered attempt whose sender and channel are used
    this.sender = null; // its talk-back sender, when the master takes audio
    this.dc = null; // its open data channel
    this.pressed = false;
    this.track = null; // the microphone track while the button is held
    this.lastTrack = null; // the last one (ended after release)
    this.liveAt = 0;
    this.talkMs = 0; // how long the last press sent audio
    this.talkDeclined = '';
    this.dataDeclined = '';
    this.outbox = [];
    this.sent = 0;
    this.received = 0;
    this.talkEl = this.dataEl = this.consoleEl = this.noticeEl = null;
    this.noticeTimer = null;
    if (this.talk || this.data) this.build();
  }

  /** Adds the two-way controls to the tile (parts: talk, data-toggle,
   * console, console-log, console-input, notice). */
  build() {
    const el = this.p.el;
    const bar = el.querySelector('.bar');
    const before = bar.querySelector('.stats-toggle');
    const button = (cls, text) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = cls;
      b.setAttribute('part', cls);
      b.textContent = text;
      bar.insertBefore(b, before);
      return b;
    };
    const notice = (this.noticeEl = document.createElement('div'));
    notice.className = 'notice';
    notice.setAttribute('part', 'notice');
    notice.setAttribute('role', 'status');
    notice.hidden = true;
    el.append(notice);
    if (this.talk) {
      const b = (this.talkEl = button('talk', ''));
      b.setAttribute('aria-pressed', 'false');
      b.addEventListener('pointerdown', (ev) => {
        if (ev.button !== 0) return;
        ev.preventDefault();
        if (b.setPointerCapture && ev.pointerId !== undefined) {
          try {
            b.setPointerCapture(ev.pointerId);
          } catch {
            // a synthetic event has no active pointer
          }
        }
        this.press();
      });
      for (const t of ['pointerup', 'pointercancel', 'lostpointercapture']) b.addEventListener(t, () => this.release());
      b.addEventListener('keydown', (ev) => {
        if ((ev.key === ' ' || ev.key === 'Enter') && !ev.repeat) {
          ev.preventDefault();
          this.press();
        }
      });
      b.addEventListener('keyup', (ev) => (ev.key === ' ' || ev.key === 'Enter') && this.release());
      b.addEventListener('blur', () => this.release());
      b.addEventListener('contextmenu', (ev) => ev.preventDefault());
      this.updateTalk();
    }
    if (this.data) {
      this.dataEl = button('data-toggle', 'Data');
      this.dataEl.setAttribute('aria-expanded', 'false');
      this.dataEl.addEventListener('click', () => this.toggleConsole());
      const c = (this.consoleEl = document.createElement('div'));
      c.className = 'console';
      c.setAttribute('part', 'console');
      c.hidden = true;
      const head = document.createElement('div');
      head.className = 'console-status';
      const log = document.createElement('pre');
      log.className = 'console-log';
      log.setAttribute('part', 'console-log');
      log.setAttribute('role', 'log');
      const input = document.createElement('input');
      input.className = 'console-input';
      input.setAttribute('part', 'console-input');
      input.type = 'text';
      input.maxLength = MAX_MESSAGE;
      input.placeholder = 'Type a line, Enter sends it';
      input.setAttribute('aria-label', 'Data channel message');
      input.addEventListener('keydown', (ev) => {
        if (ev.key !== 'Enter' || ev.isComposing) return;
        ev.preventDefault();
        if (input.value !== '' && this.send(input.value)) input.value = '';
      });
      c.append(head, log, input);
      el.append(c);
      this.updateData();
    }
  }

  /** The attempt's transceivers and channel, before its offer. */
  prepare(a, pc) {
    a.talkTr = pc.addTransceiver('audio', { direction: this.talk ? 'sendrecv' : 'recvonly' });
    if (this.data) {
      a.dc = pc.createDataChannel(DATA_LABEL);
      this.wire(a);
    }
  }

  /** The same, for a connection the page's bootstrap made. */
  adopt(a, e) {
    a.talkTr = e.pc.getTransceivers().find((t) => t.receiver && t.receiver.track && t.receiver.track.kind === 'audio') || null;
    a.dc = e.dc || null;
    if (a.dc) this.wire(a);
  }

  wire(a) {
    const dc = a.dc;
    dc.binaryType = 'arraybuffer';
    dc.onopen = () => this.at === a && this.channelOpen(a);
    dc.onclose = () => {
      if (this.at !== a || this.dc !== dc) return;
      this.dc = null;
      this.line('!', 'The data channel closed; it comes back with the next connection.');
      this.updateData();
    };
    dc.onmessage = (ev) => {
      if (this.at !== a) return;
      const text = typeof ev.data === 'string' ? ev.data : `(${ev.data.byteLength} bytes, binary)`;
      this.received++;
      this.line('<', text);
      if (this.p.on.message) this.p.on.message(ev.data);
    };
  }

  /** The attempt's first answer is applied: what did the master take? */
  answered(a) {
    if (!this.talk && !this.data) return;
    this.at = a;
    const secs = sdpSections(a.pc && a.pc.remoteDescription ? a.pc.remoteDescription.sdp : '');
    if (this.talk) {
      const s = secs.find((x) => x.kind === 'audio');
      let why = '';
      if (!s) why = 'its answer has no audio section';
      else if (s.port === 0) why = 'its answer rejects the audio section (no audio support)';
      else if (s.dir === 'sendonly' || s.dir === 'inactive') why = `its answer's audio section does not receive (${s.dir})`;
      this.sender = !why && a.talkTr ? a.talkTr.sender : null;
      this.decline('talk', why);
      if (this.sender && this.track) this.attach();
      this.updateTalk();
    }
    if (this.data) {
      const s = secs.find((x) => x.kind === 'application');
      this.decline('data', !s || s.port === 0 ? 'its answer has no data channel section, or rejects it' : '');
      if (!this.dataDeclined && a.dc && a.dc.readyState === 'open') this.channelOpen(a);
      this.updateData();
    }
  }

  decline(what, why) {
    const msg = why ? (what === 'talk' ? TALK_DECLINED : DATA_DECLINED) : '';
    const key = what === 'talk' ? 'talkDeclined' : 'dataDeclined';
    if (this[key] === msg) return;
    this[key] = msg;
    if (!msg) return;
    this.p.log(what + '-declined', why);
    if (what === 'data') this.line('!', msg);
    if (this.p.on.declined) this.p.on.declined(what, msg);
  }

  /** The attempt is torn down: its sender and channel go with it. */
  detach(a) {
    if (this.at !== a) return;
    this.at = null;
    this.sender = null;
    this.dc = null;
    if (this.talkEl) this.updateTalk();
    if (this.consoleEl) this.updateData();
  }

  channelOpen(a) {
    this.dc = a.dc;
    this.p.log('data-open');
    for (const text of this.outbox.splice(0)) this.transmit(text);
    this.updateData();
  }

  /** Push-to-talk pressed: asks for the microphone (now, not before) and
   * sends it while held. */
  async press() {
    if (!this.talk || this.pressed) return;
    if (this.talkDeclined) {
      this.notice(this.talkDeclined);
      return;
    }
    if (this.p.otherTalking) this.notice('Someone else is talking to the camera: your voice goes through when they stop.');
    const md = navigator.mediaDevices;
    if (!md || !md.getUserMedia) {
      this.notice('The microphone needs a secure page: open the player over HTTPS (or on localhost).');
      return;
    }
    this.pressed = true;
    holding.add(this);
    watchVisibility();
    this.updateTalk();
    let stream;
    try {
      stream = await md.getUserMedia({ audio: true });
    } catch (e) {
      this.pressed = false;
      holding.delete(this);
      this.updateTalk();
      this.p.log('talk-error', String(e));
      this.notice(`No microphone (${e && e.name ? e.name : e}): allow this page to use the microphone, then press again.`);
      return;
    }
    const track = stream.getAudioTracks()[0];
    if (!this.pressed || !track) {
      // Released while the browser asked: stop at once.
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    this.track = this.lastTrack = track;
    track.addEventListener('ended', () => this.track === track && this.release());
    if (this.sender) this.attach();
    this.updateTalk();
  }

  attach() {
    const sender = this.sender;
    const track = this.track;
    sender.replaceTrack(track).then(
      () => {
        if (this.track !== track || this.sender !== sender) return;
        if (!this.liveAt) this.liveAt = now();
        this.p.log('talk-live');
        this.updateTalk();
        if (this.p.on.talk) this.p.on.talk(true);
      },
      (e) => this.p.log('talk-error', String(e)),
    );
  }

  /** Push-to-talk released (or the page hidden or left): detaches and
   * stops the microphone. */
  release() {
    if (!this.pressed) return;
    this.pressed = false;
    holding.delete(this);
    const track = this.track;
    this.track = null;
    if (this.sender) this.sender.replaceTrack(null).catch(() => {});
    if (track) track.stop();
    if (this.liveAt) {
      this.talkMs = now() - this.liveAt;
      this.liveAt = 0;
      this.p.log('talk-stopped', `${Math.round(this.talkMs)} ms`);
    }
    this.updateTalk();
    if (this.p.on.talk) this.p.on.talk(false);
  }

  updateTalk() {
    const b = this.talkEl;
    if (!b) return;
    const live = this.pressed && !!this.track;
    let text = 'Hold to talk';
    if (this.talkDeclined) text = 'No talk-back';
    else if (this.pressed && !this.track) text = 'Microphone…';
    else if (live && !this.sender) text = 'Live (reconnecting…)';
    else if (live) text = '● Live: release to stop';
    b.textContent = text;
    b.title = this.talkDeclined || 'Hold to talk to the camera (the microphone is used only while held)';
    b.classList.toggle('live', live);
    b.classList.toggle('declined', !!this.talkDeclined);
    b.setAttribute('aria-pressed', String(this.pressed));
    b.setAttribute('aria-disabled', String(!!this.talkDeclined));
    this.p.el.classList.toggle('talking', live);
  }

  /** Sends a text line on the data channel; queued while it is not open.
   * Returns false when it cannot be sent (shown in the console). */
  send(text) {
    const s = String(text);
    if (!this.data) return false;
    if (this.dataDeclined) {
      this.line('!', this.dataDeclined);
      return false;
    }
    if (new TextEncoder().encode(s).length > MAX_MESSAGE) {
      this.line('!', `Too large: at most ${MAX_MESSAGE} bytes a message; split it.`);
      return false;
    }
    if (this.dc && this.dc.readyState === 'open') return this.transmit(s);
    if (this.outbox.length >= MAX_OUTBOX) {
      this.line('!', 'Not connected, and too many lines wait already.');
      return false;
    }
    this.outbox.push(s);
    this.line('…', s + '  (sent when the channel opens)');
    return true;
  }

  transmit(s) {
    try {
      this.dc.send(s);
    } catch (e) {
      this.line('!', `Not sent: ${e}`);
      return false;
    }
    this.sent++;
    this.line('>', s);
    return true;
  }

  toggleConsole(show) {
    if (!this.consoleEl) return;
    const on = show === undefined ? this.consoleEl.hidden : !!show;
    this.consoleEl.hidden = !on;
    this.dataEl.setAttribute('aria-expanded', String(on));
    if (on) this.consoleEl.querySelector('input').focus({ preventScroll: true });
  }

  updateData() {
    if (!this.consoleEl) return;
    let st = 'data channel: connecting…';
    if (this.dataDeclined) st = this.dataDeclined;
    else if (this.dc && this.dc.readyState === 'open') st = 'data channel: open';
    this.consoleEl.querySelector('.console-status').textContent = st;
    this.consoleEl.classList.toggle('declined', !!this.dataDeclined);
    this.dataEl.classList.toggle('declined', !!this.dataDeclined);
    this.dataEl.title = this.dataDeclined || 'Data channel console';
  }

  line(dir, text) {
    if (!this.consoleEl) return;
    const log = this.consoleEl.querySelector('.console-log');
    log.append(`${dir} ${text}\n`);
    while (log.childNodes.length > MAX_LOG_LINES) log.firstChild.remove();
    log.scrollTop = log.scrollHeight;
  }

  notice(text) {
    const n = this.noticeEl;
    if (!n) return;
    n.textContent = text;
    n.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => (n.hidden = true), 6000);
  }

  snapshot() {
    return {
      talk: {
        enabled: this.talk,
        declined: this.talkDeclined,
        pressed: this.pressed,
        live: !!this.track && !!this.sender && this.liveAt > 0,
        trackState: this.lastTrack ? this.lastTrack.readyState : '',
        talkMs: Math.round(this.talkMs),
        button: this.talkEl ? this.talkEl.textContent : '',
      },
      data: {
        enabled: this.data,
        declined: this.dataDeclined,
        open: !!this.dc && this.dc.readyState === 'open',
        sent: this.sent,
        received: this.received,
        console: this.consoleEl ? this.consoleEl.querySelector('.console-log').textContent : '',
        status: this.consoleEl ? this.consoleEl.querySelector('.console-status').textContent : '',
      },
    };
  }
}
