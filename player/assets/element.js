// kvsrtc: the <kvs-viewer> custom element and its programmatic API. The
// server joins this file after signaling.js, api.js and player.js into one
// ES module (kvs-viewer.js), preceded by KVS_CONFIG (the serving API's
// retry policy) and KVS_STYLE (tile.css): the element runs the same Player
// and Attempt as the built-in pages, in a shadow root.

/** The API base of this module: the directory it was served from. */
const moduleBase = new URL('.', import.meta.url).href;

let styleSheet = null;

/** The elements that are connected, closed when the page goes away (the
 * camera's viewer slot is freed at once, not after its timeouts). */
const live = new Set();
addEventListener('pagehide', () => {
  for (const el of [...live]) el.close();
});

/** The tile's style sheet, shared by every element (a constructed sheet:
 * a strict Content-Security-Policy without 'unsafe-inline' allows it). */
function tileSheet() {
  if (!styleSheet) {
    styleSheet = new CSSStyleSheet();
    styleSheet.replaceSync(
      ':host { display: block; position: relative; aspect-ratio: 16 / 9; min-height: 120px; contain: content; }\n' +
        ':host([hidden]) { display: none; }\n' +
        '.player { position: absolute; inset: 0; min-height: 0; }\n' +
        KVS_STYLE,
    );
  }
  return styleSheet;
}

/** Milliseconds from an attribute: "2500", "2500ms", "2.5s"; NaN if not. */
function parseMs(v) {
  if (v === null || v === undefined || v === '') return NaN;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)?\s*$/.exec(String(v));
  if (!m) return NaN;
  return m[2] === 's' ? Number(m[1]) * 1000 : Number(m[1]);
}

/** Policy knobs: attribute name -> [policy field, parser]. */
const knobs = {
  'answer-timeout': ['answerTimeoutMs', parseMs],
  'media-timeout': ['mediaTimeoutMs', parseMs],
  'max-attempts': ['maxAttempts', (v) => (/^\s*[0-9]+\s*$/.test(v || '') ? Number(v) : NaN)],
  'late-answer-window': ['lateAnswerWindowMs', parseMs],
  'stall-timeout': ['stallTimeoutMs', parseMs],
  'ice-restart-grace': ['iceRestartGraceMs', parseMs],
};

/**
 * <kvs-viewer channel="front-door" [endpoint="/cams/"] [muted] [controls]
 *   [stats] [token="..."] [manual] [answer-timeout="2.5s"] [max-attempts="5"]
 *   [late-answer-window="12s"] [stall-timeout="5s"] [talk] [data]>
 *
 * Plays one camera. It connects when it is put in the document (unless
 * manual) and closes completely when it is taken out. talk adds a
 * push-to-talk button (the microphone is asked for only while it is held),
 * data a data channel and its console; both are negotiated in the offer,
 * so changing them reconnects. Events (CustomEvent, detail): state {state,
 * info}, first-frame {ms}, failed {cause, title, message, advice,
 * retryable}, stats {resolution, fps, bitrate, ...}, talk {live},
 * message {data}, declined {what: 'talk' | 'data', message}.
 */
class KvsViewerElement extends HTMLElement {
  static get observedAttributes() {
    return ['channel', 'endpoint', 'muted', 'controls', 'stats', 'token', 'talk', 'data'];
  }

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [tileSheet()];
    this._player = null;
    this._tile = null;
    this._getToken = null;
  }

  /** The API base URL: the endpoint attribute, else where this module came from. */
  get endpoint() {
    const e = this.getAttribute('endpoint');
    if (!e) return moduleBase;
    const u = new URL(e, document.baseURI).href;
    return u.endsWith('/') ? u : u + '/';
  }

  set endpoint(v) {
    this.setAttribute('endpoint', v);
  }

  get channel() {
    return this.getAttribute('channel') || '';
  }

  set channel(v) {
    this.setAttribute('channel', v);
  }

  /** A function returning (a promise of) the bearer token for each API
   * request: the app's own short-lived credential (kvsrtc serve --api-only
   * with --token-key-file). Overrides the token attribute. */
  get getToken() {
    return this._getToken;
  }

  set getToken(fn) {
    this._getToken = typeof fn === 'function' ? fn : null;
  }

  /** The current state: idle, connecting, waiting, negotiating, playing,
   * retrying, reconnecting, restarting, failed or closed. */
  get state() {
    return this._player ? this._player.state : 'closed';
  }

  /** The diagnosis shown after giving up, or null. */
  get diagnosis() {
    return this._player ? this._player.diagnosis : null;
  }

  /** The video element (in the shadow root). */
  get video() {
    return this._player ? this._player.video : null;
  }

  /** Whether the microphone is being sent (push-to-talk held). */
  get talking() {
    return !!(this._player && this._player.two.snapshot().talk.live);
  }

  /** Starts talking, as if the push-to-talk button were pressed: asks for
   * the microphone (needs the talk attribute). */
  startTalking() {
    return this._player ? this._player.two.press() : Promise.resolve();
  }

  /** Stops talking: detaches and stops the microphone track. */
  stopTalking() {
    if (this._player) this._player.two.release();
  }

  /** Sends a text message on the data channel (needs the data attribute);
   * queued while the channel is not open. False when it cannot be sent
   * (no data channel, declined by the camera, too large). */
  send(text) {
    return this._player ? this._player.two.send(text) : false;
  }

  /** Shows (true), hides (false) or toggles the data channel console. */
  toggleConsole(show) {
    if (this._player) this._player.two.toggleConsole(show);
  }

  /** A plain summary of the player (state, attempts, client ids, events). */
  snapshot() {
    return this._player ? this._player.snapshot() : { channel: this.channel, state: 'closed' };
  }

  connectedCallback() {
    if (!this.hasAttribute('manual') && !this._player) queueMicrotask(() => this.isConnected && !this._player && this.connect());
  }

  disconnectedCallback() {
    this.close();
  }

  attributeChangedCallback(name, old, val) {
    if (old === val || !this._player) return;
    if (name === 'channel' || name === 'endpoint' || name === 'talk' || name === 'data') this.connect();
    else this._applyAttributes();
  }

  _policy() {
    const p = Object.assign({}, KVS_CONFIG.policy);
    for (const [attr, [field, parse]] of Object.entries(knobs)) {
      if (!this.hasAttribute(attr)) continue;
      const v = parse(this.getAttribute(attr));
      if (Number.isFinite(v) && v >= 0) p[field] = v;
      else console.warn(`kvs-viewer: ignoring ${attr}="${this.getAttribute(attr)}": give milliseconds ("2500"), or seconds ("2.5s")`);
    }
    if (p.maxAttempts < 1) p.maxAttempts = 1;
    return p;
  }

  _applyAttributes() {
    const p = this._player;
    if (!p) return;
    const bar = this._tile.querySelector('.bar');
    const controls = this.hasAttribute('controls');
    // The two-way buttons show without controls too (alone in the bar).
    bar.hidden = !controls && !p.two.talk && !p.two.data;
    bar.classList.toggle('twoway-only', !controls);
    p.noSound = this.hasAttribute('muted');
    if (p.noSound) {
      p.video.muted = true;
      p.unmuteEl.hidden = true;
    }
    p.toggleStats(this.hasAttribute('stats'));
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Connects (again): closes what runs, then plays the channel with a
   * fresh connection. */
  connect() {
    this.close();
    const channel = this.channel;
    const tile = (this._tile = view(this.shadowRoot, channel));
    const token = () => (this._getToken ? this._getToken() : this.getAttribute('token') || '');
    const p = (this._player = new Player(tile, channel, this._policy(), KVS_CONFIG.loopbackOnly, {
      api: apiClient(this.endpoint, token),
      early: false,
      statsEvents: true,
      talk: this.hasAttribute('talk'),
      data: this.hasAttribute('data'),
      on: {
        talk: (live) => this._emit('talk', { live }),
        message: (data) => this._emit('message', { data }),
        declined: (what, message) => this._emit('declined', { what, message }),
        state: (state, info) => this._emit('state', { state, info }),
        firstFrame: (ms) => this._emit('first-frame', { ms }),
        failed: (d) => this._emit('failed', d),
        stats: (s) => this._emit('stats', s),
      },
    }));
    live.add(this);
    this._applyAttributes();
    if (!channel) {
      p.giveUp(p.gen, { diagnosis: { cause: 'bad-request', title: 'No channel', message: 'This <kvs-viewer> names no channel.', advice: 'Give it a channel attribute.' } }, 0);
      return;
    }
    p.start();
  }

  /** Closes everything: attempts, signaling, peer connection, timers. */
  close() {
    const p = this._player;
    if (!p) return;
    this._player = null;
    live.delete(this);
    p.dispose();
    this._tile.remove();
    this._tile = null;
    this._emit('state', { state: 'closed', info: '' });
  }
}

/** Defines the element under name (default kvs-viewer) unless a page did. */
function defineKvsViewer(name) {
  const n = name || 'kvs-viewer';
  if (!customElements.get(n)) customElements.define(n, n === 'kvs-viewer' ? KvsViewerElement : class extends KvsViewerElement {});
  return customElements.get(n);
}

defineKvsViewer();

export { KvsViewerElement, defineKvsViewer, ApiError, apiClient };
