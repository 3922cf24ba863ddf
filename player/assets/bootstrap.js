// kvsrtc web player: connect first. The server inlines this script (allowed
// by its hash in the Content-Security-Policy) together with the sessions it
// minted while rendering the page, so the signaling WebSocket, the peer
// connection, the offer and the answer happen while the rest of the page is
// still being built. The player (player.js) adopts what this started
// (window.kvsrtcEarly) and handles everything after; nothing here is used
// when the page has no sessions.
//
// On a page with one camera, the video plays in a bare element as soon as
// its track arrives, and the page is built after the first frame (or after
// a bound): until then the main thread only handles the connection (the
// answer, the candidates, the track), and the page takes the element over.
// A page with several cameras is built once the offers are out.
(() => {
  const el = document.getElementById('kvsrtc-sessions');
  const cfgEl = document.getElementById('kvsrtc-config');
  if (!el || !cfgEl || !window.RTCPeerConnection || !window.WebSocket) return;
  let sessions;
  let cfg;
  try {
    sessions = JSON.parse(el.textContent) || {};
    cfg = JSON.parse(cfgEl.textContent) || {};
  } catch {
    return;
  }
  const b64 = (obj) => {
    const bytes = new TextEncoder().encode(JSON.stringify(obj));
    let bin = '';
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin);
  };
  const unb64 = (s) => {
    const bin = atob(s);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return JSON.parse(new TextDecoder().decode(bytes));
  };
  const loopback = (line) => {
    const a = (line.split(' ')[4] || '').toLowerCase();
    return a.startsWith('127.') || a === '::1';
  };
  const early = (window.kvsrtcEarly = {});
  const solo = Object.keys(sessions).length === 1;
  // Settles when every early connection showed its first frame (one camera)
  // or sent its offer (several), or cannot soon: the player builds the page
  // after it, so that the page does not compete with the connection for the
  // main thread.
  const pending = [];
  // A one-camera page gets its video element when the offer goes out,
  // styled like the single-camera tile whose place it takes until the page
  // is built (the player then moves it into the tile). The first video
  // track plays in it at once.
  const element = (e) => {
    if (e.video) return;
    const v = (e.video = document.createElement('video'));
    v.className = 'kvsrtc-early';
    v.muted = v.autoplay = v.playsInline = true;
    const put = () => e.adopted || (document.getElementById('app') || document.body).append(v);
    if (document.body) put();
    else document.addEventListener('DOMContentLoaded', put, { once: true });
  };
  const show = (e, track) => {
    element(e);
    const v = e.video;
    v.srcObject = e.stream = new MediaStream([track]);
    const first = () => {
      e.t.frame = performance.now();
      e.settle();
    };
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(first);
    else v.addEventListener('playing', first, { once: true });
    v.play().catch(() => {});
  };
  // The offer's sections: video, audio (push-to-talk and the data channel
  // are in the first offer, with no track and no microphone until the
  // button is pressed: see twoway.js) and the data channel; the first video
  // track plays at once on a one-camera page.
  const media = (e) => {
    e.pc.addTransceiver('video', { direction: 'recvonly' });
    e.pc.addTransceiver('audio', { direction: cfg.talk ? 'sendrecv' : 'recvonly' });
    if (cfg.data) e.dc = e.pc.createDataChannel('kvsDataChannel');
    e.pc.ontrack = (ev) => {
      if (ev.receiver && 'jitterBufferTarget' in ev.receiver) ev.receiver.jitterBufferTarget = 0;
      e.tracks.push(ev);
      if (solo && ev.track.kind === 'video' && !e.stream) show(e, ev.track);
    };
  };
  // Relay mode (relay.js): the offer goes to the server's WHEP endpoint at
  // once; the player adopts the peer connection and the answer.
  const relay = (channel, s) => {
    const e = { session: s, relay: true, candidates: [], tracks: [], t: { start: performance.now() } };
    try {
      e.pc = new RTCPeerConnection({ iceServers: s.iceServers || [], bundlePolicy: 'max-bundle' });
    } catch {
      return;
    }
    let settle;
    pending.push(new Promise((r) => (settle = e.settle = r)));
    media(e);
    e.pc.onicecandidate = (ev) => e.adopted || e.candidates.push(ev.candidate);
    // The offer goes out as soon as it exists; setLocalDescription runs
    // meanwhile, and the answer is applied after it.
    e.offer = e.pc
      .createOffer()
      .then((o) => {
        e.t.offer = e.t.sent = performance.now();
        e.offerSdp = o.sdp;
        e.sld = e.pc.setLocalDescription(o);
        const post = fetch(s.whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: o.sdp, credentials: 'same-origin', cache: 'no-store' });
        if (solo) element(e);
        return Promise.all([post, e.sld]);
      })
      .then(([r]) => {
        e.response = r;
        if (!r.ok) return settle();
        return r.text().then((sdp) => {
          e.t.answer = performance.now();
          e.answer = sdp;
          e.srd = e.pc.setRemoteDescription({ type: 'answer', sdp });
          return e.srd;
        });
      });
    e.offer.catch(settle);
    setTimeout(settle, solo ? 400 : 300);
    e.t.created = performance.now();
    early[channel] = e;
  };
  for (const channel of Object.keys(sessions)) {
    const s = sessions[channel];
    if (s.mode === 'relay') {
      relay(channel, s);
      continue;
    }
    if (s.mode === 'storage') {
      // The storage session makes the offer after a join (storage.js).
      early[channel] = { session: s, storage: true };
      continue;
    }
    const e = { session: s, messages: [], candidates: [], remote: [], tracks: [], t: { start: performance.now() } };
    try {
      e.ws = new WebSocket(s.signalingUrl);
      e.pc = new RTCPeerConnection({ iceServers: s.iceServers, iceTransportPolicy: s.iceTransportPolicy || 'all', bundlePolicy: 'max-bundle' });
    } catch {
      if (e.ws) e.ws.close();
      continue;
    }
    let settle;
    pending.push(new Promise((r) => (settle = e.settle = r)));
    const send = (action, payload) => e.ws.send(JSON.stringify({ action, messagePayload: b64(payload) }));
    const trySend = () => {
      if (e.adopted || e.sent || !e.open || !e.offerSdp) return;
      e.sent = true;
      e.sentAt = e.t.sent = performance.now();
      // The offer as created, without the candidates gathered since: they
      // are trickled (and filtered) separately.
      send('SDP_OFFER', { type: 'offer', sdp: e.offerSdp });
      for (const c of e.candidates.splice(0)) send('ICE_CANDIDATE', c.toJSON());
      // While the camera answers, the main thread has time to style the
      // video element (one camera).
      if (solo) element(e);
      else settle();
    };
    e.ws.onopen = () => {
      e.t.open = performance.now();
      e.open = true;
      trySend();
    };
    e.ws.onmessage = (m) => {
      if (e.adopted) return;
      let msg = null;
      try {
        msg = JSON.parse(m.data);
      } catch {
        // not an event
      }
      const type = msg && msg.messageType;
      if (type === 'SDP_ANSWER' && !e.answer) {
        try {
          e.answer = { type: 'answer', sdp: unb64(msg.messagePayload).sdp };
        } catch {
          e.messages.push(m.data);
          return;
        }
        e.t.answer = performance.now();
        e.srd = e.sld.then(() => e.pc.setRemoteDescription(e.answer));
        e.srd.catch(settle);
        e.srd.then(() => {
          e.t.srd = performance.now();
          for (const c of e.remote.splice(0)) e.pc.addIceCandidate(c).catch(() => {});
        }, () => {});
      } else if (type === 'ICE_CANDIDATE' && e.answer) {
        let c;
        try {
          c = unb64(msg.messagePayload);
        } catch {
          return;
        }
        e.srd.then(() => e.pc.addIceCandidate(c).catch(() => {}), () => {});
      } else if (type === 'ICE_CANDIDATE') {
        try {
          e.remote.push(unb64(msg.messagePayload));
        } catch {
          // dropped, as the player would
        }
      } else {
        e.messages.push(m.data);
      }
    };
    e.ws.onclose = (ev) => {
      settle();
      e.closed = true;
      e.closeCode = ev.code;
    };
    media(e);
    e.pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (e.adopted || !c || !c.candidate || (cfg.loopbackOnly && !loopback(c.candidate))) return;
      if (e.sent) send('ICE_CANDIDATE', c.toJSON());
      else e.candidates.push(c);
    };
    // The offer goes out as soon as it exists; setLocalDescription runs
    // meanwhile, and the answer is applied after it.
    e.offer = e.pc.createOffer().then((o) => {
      e.t.offer = performance.now();
      e.offerSdp = o.sdp;
      e.sld = e.pc.setLocalDescription(o);
      e.sld.catch(settle);
      trySend();
    });
    e.offer.catch(settle);
    setTimeout(settle, solo ? 400 : 300); // the service or the camera may be slow
    e.t.created = performance.now();
    early[channel] = e;
  }
  window.kvsrtcEarlyReady = Promise.all(pending);
})();
