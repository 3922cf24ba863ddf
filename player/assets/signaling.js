// kvsrtc web player: a small KVS WebRTC signaling client for the VIEWER role.
//
// It opens the presigned wss:// URL the server minted, sends the offer and
// the ICE candidates as {"action", "messagePayload": base64(JSON)} and
// dispatches the service's events ({"messageType", "messagePayload",
// "senderClientId"}). It never sees an AWS secret: the URL is presigned on
// the server.

/** base64 of the UTF-8 bytes of s. */
function encodePayload(obj) {
  const bytes = new TextEncoder().encode(JSON.stringify(obj));
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** The JSON document inside a base64 messagePayload, or null. */
function decodePayload(b64) {
  if (typeof b64 !== 'string' || b64 === '') return null;
  try {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

// ICE candidates are paced under the service's 20 messages per second per
// connection (excess messages are dropped silently).
const CANDIDATE_RATE = 15; // per second
const CANDIDATE_BURST = 15;

class Signaling {
  /**
   * @param {string|WebSocket} url presigned wss:// URL, or a WebSocket that
   *   is already open or opening (adopted from the page's bootstrap)
   * @param {object} on handlers: open, answer(desc), candidate(init),
   *   status(obj), goAway(), reconnectICE(), close(code, reason), error()
   * @param {string[]} buffered frames the adopted socket already received
   */
  constructor(url, on, buffered) {
    this.on = on;
    this.closed = false;
    this.hold = false; // hold candidates back until the offer is sent
    this.tokens = CANDIDATE_BURST;
    this.lastRefill = performance.now();
    this.queue = [];
    this.pump = null;
    const ws = (this.ws = typeof url === 'string' ? new WebSocket(url) : url);
    ws.onopen = () => !this.closed && this.on.open && this.on.open();
    ws.onerror = () => !this.closed && this.on.error && this.on.error();
    ws.onclose = (ev) => {
      if (this.closed) return;
      this.closed = true;
      this.stopPump();
      this.on.close && this.on.close(ev.code, ev.reason);
    };
    ws.onmessage = (ev) => !this.closed && this.dispatch(ev.data);
    if (buffered && buffered.length) {
      // Replay after the caller has stored this object.
      queueMicrotask(() => {
        for (const m of buffered) if (!this.closed) this.dispatch(m);
      });
    }
  }

  get open() {
    return !this.closed && this.ws.readyState === WebSocket.OPEN;
  }

  dispatch(data) {
    if (typeof data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // not an event (e.g. an API Gateway notice)
    }
    if (!msg || typeof msg !== 'object') return;
    const type = msg.messageType || msg.MessageType;
    const payload = decodePayload(msg.messagePayload || msg.MessagePayload);
    switch (type) {
      case 'SDP_ANSWER':
        if (payload && payload.sdp) this.on.answer && this.on.answer({ type: 'answer', sdp: payload.sdp });
        break;
      case 'ICE_CANDIDATE':
        if (payload && typeof payload.candidate === 'string') this.on.candidate && this.on.candidate(payload);
        break;
      case 'STATUS_RESPONSE':
        this.on.status && this.on.status(msg.statusResponse || {});
        break;
      case 'GO_AWAY':
        this.on.goAway && this.on.goAway();
        break;
      case 'RECONNECT_ICE_SERVER':
        this.on.reconnectICE && this.on.reconnectICE();
        break;
      default:
      // SDP_OFFER to a viewer and unknown types are ignored.
    }
  }

  send(action, payload) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify({ action, messagePayload: encodePayload(payload) }));
    return true;
  }

  sendOffer(desc) {
    return this.send('SDP_OFFER', { type: desc.type, sdp: desc.sdp });
  }

  sendCandidate(cand) {
    const init = typeof cand.toJSON === 'function' ? cand.toJSON() : cand;
    this.queue.push(init);
    this.drain();
  }

  /** Stops holding candidates back (the offer went out) and sends them. */
  release() {
    this.hold = false;
    this.drain();
  }

  drain() {
    if (this.hold) return;
    const now = performance.now();
    this.tokens = Math.min(CANDIDATE_BURST, this.tokens + ((now - this.lastRefill) / 1000) * CANDIDATE_RATE);
    this.lastRefill = now;
    while (this.queue.length && this.tokens >= 1 && this.open) {
      this.tokens--;
      this.send('ICE_CANDIDATE', this.queue.shift());
    }
    if (this.queue.length && !this.pump && !this.closed) {
      this.pump = setTimeout(() => {
        this.pump = null;
        this.drain();
      }, 1000 / CANDIDATE_RATE);
    }
  }

  stopPump() {
    if (this.pump) clearTimeout(this.pump);
    this.pump = null;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.stopPump();
    this.queue = [];
    const ws = this.ws;
    ws.onopen = ws.onerror = ws.onclose = ws.onmessage = null;
    try {
      ws.close(1000);
    } catch {
      // already closing
    }
  }
}
