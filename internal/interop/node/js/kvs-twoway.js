'use strict';
// kvs-twoway.js: the two-way viewer of kvsrtc's Node interoperability tests
// (node kvs-peer.js twoway-viewer). The official JS SDK's viewer flow, as
// in its examples/viewer.js with "send audio" and "open data channel", on
// @roamhq/wrtc: a 440 Hz tone from wrtc's RTCAudioSource (48 kHz mono,
// 10 ms frames) on a send-receive audio transceiver, a receive-only video
// transceiver and a data channel "kvsDataChannel", all in the one offer.
// Once the data channel is open it sends "msg 0" .. "msg 9", 100 ms apart.
// KVS_TALK_MS (default 3000) after the peer connection connected, it emits
// {"event": "done", "replies": [...], "talkMs": ..., "audioBytesSent": ...}
// and hangs up.
//
// Environment and output as for kvs-peer.js, whose helpers it uses.

const { performance } = require('perf_hooks');
const peer = require('./kvs-peer.js');

const { wrtc, KVSWebRTC, emit, log, fail, env } = peer;

const RATE = 48000;
const FRAME = RATE / 100; // 10 ms

async function runTwoWayViewer() {
  const talkMs = Number(env('KVS_TALK_MS', '3000'));
  const timeout = Number(env('KVS_TIMEOUT_MS', '30000'));
  const timer = setTimeout(() => fail(new Error(`not done within ${timeout} ms`)), timeout);
  const s = await peer.setup('VIEWER');
  const clientId = 'node-twoway-' + Math.random().toString(16).slice(2, 14);
  const pc = new wrtc.RTCPeerConnection(peer.rtcConfig(s.iceServers));
  const counts = { local: 0, remote: 0, droppedLocal: 0, droppedRemote: 0 };
  const client = peer.signalingClient(s, KVSWebRTC.Role.VIEWER, clientId);

  // The microphone: a tone, fed every 10 ms.
  const source = new wrtc.nonstandard.RTCAudioSource();
  const samples = new Int16Array(FRAME);
  let phase = 0;
  let fed = 0; // 10 ms frames
  const feedStart = performance.now();
  // Every frame that is due, so a late timer (a busy machine) catches up
  // instead of sending less audio than the time it talked.
  const feed = setInterval(() => {
    while (fed < Math.floor((performance.now() - feedStart) / 10)) {
      for (let i = 0; i < FRAME; i++) {
        samples[i] = Math.round(8000 * Math.sin(phase));
        phase += (2 * Math.PI * 440) / RATE;
      }
      source.onData({ samples, sampleRate: RATE, bitsPerSample: 16, channelCount: 1, numberOfFrames: FRAME });
      fed++;
    }
  }, 10);
  pc.addTrack(source.createTrack());
  pc.addTransceiver('video', { direction: 'recvonly' });

  const replies = [];
  const dc = pc.createDataChannel('kvsDataChannel');
  const onReply = (m) => replies.push(String(m.data));
  dc.onmessage = onReply;
  pc.ondatachannel = ({ channel }) => {
    channel.onmessage = onReply;
  };
  dc.onopen = () => {
    emit('data-open', {});
    let n = 0;
    const t = setInterval(() => {
      if (n >= 10 || dc.readyState !== 'open') {
        clearInterval(t);
        return;
      }
      dc.send('msg ' + n++);
    }, 100);
  };

  let connectedAt = 0;
  const finish = async () => {
    clearTimeout(timer);
    let audioBytesSent = 0;
    try {
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'outbound-rtp' && (r.kind === 'audio' || r.mediaType === 'audio')) audioBytesSent = r.bytesSent || 0;
      });
    } catch (e) {
      log('getStats:', String(e));
    }
    const talked = Math.round(performance.now() - connectedAt);
    clearInterval(feed);
    emit('done', { replies, talkMs: talked, audioBytesSent, candidates: counts });
    client.close();
    pc.close();
    setTimeout(() => process.exit(0), 100);
  };

  pc.onicecandidate = peer.candidateSender((c) => client.sendIceCandidate(c), counts);
  pc.onconnectionstatechange = () => {
    emit('pc', { state: pc.connectionState });
    if (pc.connectionState === 'connected' && !connectedAt) {
      connectedAt = performance.now();
      setTimeout(finish, talkMs);
    }
    if (pc.connectionState === 'failed') fail(new Error('the peer connection failed'));
  };
  client.on('open', async () => {
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      client.sendSdpOffer(peer.loopbackSDP(pc.localDescription));
      emit('offer-sent', {});
    } catch (e) {
      fail(e);
    }
  });
  client.on('sdpAnswer', async (answer) => {
    emit('answer', {});
    try {
      await pc.setRemoteDescription(peer.loopbackSDP(answer));
    } catch (e) {
      fail(e);
    }
  });
  client.on('iceCandidate', (c) => peer.addRemoteCandidate(pc, c, counts));
  client.on('error', (e) => log('signaling error:', String((e && e.message) || e)));
  client.open();
}

module.exports = { runTwoWayViewer };
