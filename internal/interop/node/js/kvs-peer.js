'use strict';
// kvs-peer.js: a KVS WebRTC peer in Node for kvsrtc's interoperability tests
// (internal/interop/node). It drives the official KVS WebRTC JS SDK's
// SignalingClient and the AWS SDK for JavaScript v2, unmodified, with
// @roamhq/wrtc (libwebrtc) as RTCPeerConnection and ws as WebSocket.
//
//   node kvs-peer.js viewer   connect once as VIEWER, receive video, print
//                             the first decoded frame, exit 0 after
//                             KVS_FRAMES frames (default 10)
//   node kvs-peer.js master   connect as MASTER and send a generated
//                             moving I420 pattern (640x360, 30 fps) to every
//                             viewer that sends an offer, until SIGTERM or
//                             SIGINT (or, with KVS_EXIT_ON_STDIN_EOF=1, until
//                             stdin closes)
//   node kvs-peer.js twoway-viewer
//                             the viewer flow with "send audio" and "open
//                             data channel" (kvs-twoway.js, which uses the
//                             helpers exported here)
//
// Configuration (environment): KVS_CHANNEL (required), AWS_REGION,
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
// AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_KINESIS_VIDEO (the local service,
// e.g. https://127.0.0.1:PORT), NODE_EXTRA_CA_CERTS (its certificate: the
// file "kvsrtc local --tls" prints as AWS_CA_BUNDLE), KVS_FRAMES and
// KVS_TIMEOUT_MS (viewer: exit after this many frames, default 10, or fail
// after this long, default 30000), KVS_FORCE_RELAY=1 (TURN relay only).
//
// Output: one JSON object per line on stdout, {"event": ..., "ms": ...}
// where ms is performance.now() (milliseconds since the process started);
// diagnostics go to stderr.
//
// Loopback only: only 127.0.0.1 candidates are signaled to the remote peer
// and only 127.0.0.1 candidates from it are added (also inside SDPs), so
// the connectivity checks of both sides target loopback addresses only. The
// test also runs this process in a network namespace that has nothing but
// the loopback interface.

const { performance } = require('perf_hooks');

// The SDK opens its WebSocket with the global WebSocket, which Node 20 lacks.
globalThis.WebSocket = require('ws');

const wrtc = require('@roamhq/wrtc');
const AWS = require('aws-sdk');
const KVSWebRTC = require('amazon-kinesis-video-streams-webrtc');

const WIDTH = 640;
const HEIGHT = 360;
const FPS = 30;

function emit(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ event, ms: Math.round(performance.now()) }, fields || {})) + '\n');
}

function log(...args) {
  process.stderr.write('[kvs-peer ' + Math.round(performance.now()) + ' ms] ' + args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ') + '\n');
}

function fail(err) {
  emit('error', { error: String((err && err.stack) || err) });
  log('FAILED:', String((err && err.stack) || err));
  process.exit(1);
}

function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) {
      fail(new Error(`environment variable ${name} is not set: the test passes the local service's settings in it`));
    }
    return fallback;
  }
  return v;
}

// isLoopbackCandidate reports whether an ICE candidate line
// ("candidate:... 1 udp PRIO ADDR PORT typ ...") names 127.0.0.1.
function isLoopbackCandidate(line) {
  const f = String(line || '').replace(/^a=/, '').split(' ');
  return f.length > 5 && f[4] === '127.0.0.1';
}

// loopbackSDP drops every a=candidate line that does not name 127.0.0.1.
function loopbackSDP(desc) {
  const sdp = desc.sdp
    .split('\r\n')
    .filter((l) => !l.startsWith('a=candidate:') || isLoopbackCandidate(l))
    .join('\r\n');
  return { type: desc.type, sdp };
}

// codecOf names the first video codec of an SDP's video section.
function codecOf(sdp) {
  const m = /m=video \d+ \S+ (\d+)/.exec(sdp || '');
  if (!m) return '';
  const r = new RegExp('a=rtpmap:' + m[1] + ' ([^/\\r\\n]+)').exec(sdp);
  return r ? r[1] : '';
}

// setup resolves the channel, its endpoints and ICE servers with the AWS
// SDK, pointed at the local service, as the SDK's users do.
async function setup(role) {
  const region = env('AWS_REGION', env('AWS_DEFAULT_REGION', 'us-west-2'));
  const endpoint = process.env.AWS_ENDPOINT_URL || env('AWS_ENDPOINT_URL_KINESIS_VIDEO');
  const credentials = {
    accessKeyId: env('AWS_ACCESS_KEY_ID'),
    secretAccessKey: env('AWS_SECRET_ACCESS_KEY'),
    sessionToken: env('AWS_SESSION_TOKEN', '') || undefined,
  };
  const channelName = env('KVS_CHANNEL');
  const kv = new AWS.KinesisVideo({ region, endpoint, credentials, correctClockSkew: true, maxRetries: 2 });
  const describe = await kv.describeSignalingChannel({ ChannelName: channelName }).promise();
  const channelARN = describe.ChannelInfo.ChannelARN;
  const ep = await kv
    .getSignalingChannelEndpoint({
      ChannelARN: channelARN,
      SingleMasterChannelEndpointConfiguration: { Protocols: ['WSS', 'HTTPS'], Role: role },
    })
    .promise();
  const byProto = {};
  for (const e of ep.ResourceEndpointList) byProto[e.Protocol] = e.ResourceEndpoint;
  if (!byProto.WSS || !byProto.HTTPS) {
    throw new Error('GetSignalingChannelEndpoint returned no WSS or HTTPS endpoint: ' + JSON.stringify(ep));
  }
  const sig = new AWS.KinesisVideoSignalingChannels({ region, endpoint: byProto.HTTPS, credentials, correctClockSkew: true, maxRetries: 2 });
  const ice = await sig.getIceServerConfig({ ChannelARN: channelARN }).promise();
  // Only what the service hands out (no public STUN server).
  const iceServers = (ice.IceServerList || []).map((s) => ({ urls: s.Uris, username: s.Username, credential: s.Password }));
  emit('setup', { channelARN, wss: byProto.WSS, iceServers: iceServers.map((s) => s.urls).flat() });
  return { region, credentials, channelARN, wss: byProto.WSS, iceServers };
}

function rtcConfig(iceServers) {
  return {
    iceServers,
    iceTransportPolicy: process.env.KVS_FORCE_RELAY === '1' ? 'relay' : 'all',
    bundlePolicy: 'max-bundle',
  };
}

function signalingClient(s, role, clientId) {
  const client = new KVSWebRTC.SignalingClient({
    channelARN: s.channelARN,
    channelEndpoint: s.wss,
    role,
    clientId,
    region: s.region,
    credentials: s.credentials,
  });
  return client;
}

// addRemoteCandidate adds a signaled candidate when it is a loopback one.
function addRemoteCandidate(pc, cand, counts) {
  if (!cand || !cand.candidate) return;
  if (!isLoopbackCandidate(cand.candidate)) {
    counts.droppedRemote++;
    return;
  }
  counts.remote++;
  pc.addIceCandidate(cand).catch((e) => log('addIceCandidate:', String(e)));
}

// candidateSender returns an onicecandidate handler that signals loopback
// candidates only.
function candidateSender(send, counts) {
  return ({ candidate }) => {
    if (!candidate) return;
    if (!isLoopbackCandidate(candidate.candidate)) {
      counts.droppedLocal++;
      return;
    }
    counts.local++;
    send({ candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex });
  };
}

async function runViewer() {
  const start = performance.now();
  const want = Number(env('KVS_FRAMES', '10'));
  const timeout = Number(env('KVS_TIMEOUT_MS', '30000'));
  const timer = setTimeout(() => fail(new Error(`no ${want} video frames within ${timeout} ms`)), timeout);
  const s = await setup('VIEWER');
  const clientId = 'node-viewer-' + Math.random().toString(16).slice(2, 14);
  const pc = new wrtc.RTCPeerConnection(rtcConfig(s.iceServers));
  const counts = { local: 0, remote: 0, droppedLocal: 0, droppedRemote: 0 };
  const client = signalingClient(s, KVSWebRTC.Role.VIEWER, clientId);
  let frames = 0;
  let sink = null;
  let done = false;

  const finish = async () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    let framesDecoded = 0;
    let pair = '';
    try {
      const stats = await pc.getStats();
      let selected = null;
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && (r.kind === 'video' || r.mediaType === 'video')) framesDecoded = r.framesDecoded || 0;
        if (r.type === 'transport' && r.selectedCandidatePairId) selected = stats.get(r.selectedCandidatePairId);
      });
      if (!selected) {
        stats.forEach((r) => {
          if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') selected = r;
        });
      }
      if (selected) {
        const local = stats.get(selected.localCandidateId) || {};
        const remote = stats.get(selected.remoteCandidateId) || {};
        pair = `${local.candidateType} ${local.address || local.ip}:${local.port} -> ${remote.candidateType} ${remote.address || remote.ip}:${remote.port}`;
      }
    } catch (e) {
      log('getStats:', String(e));
    }
    emit('done', { frames, framesDecoded, candidates: counts, pair });
    if (sink) sink.stop();
    client.close();
    pc.close();
    // Let the close frame go out, then leave.
    setTimeout(() => process.exit(0), 100);
  };

  pc.onicecandidate = candidateSender((c) => client.sendIceCandidate(c), counts);
  pc.oniceconnectionstatechange = () => emit('ice', { state: pc.iceConnectionState });
  pc.onconnectionstatechange = () => {
    emit('pc', { state: pc.connectionState });
    if (pc.connectionState === 'failed') fail(new Error('the peer connection failed'));
  };
  pc.ontrack = ({ track }) => {
    if (track.kind !== 'video' || sink) return;
    emit('track', {});
    sink = new wrtc.nonstandard.RTCVideoSink(track);
    sink.onframe = ({ frame }) => {
      frames++;
      if (frames === 1) {
        emit('first-frame', { sinceStart: Math.round(performance.now() - start), width: frame.width, height: frame.height });
      }
      if (frames === want) finish();
    };
  };
  pc.addTransceiver('video', { direction: 'recvonly' });

  client.on('open', async () => {
    emit('signaling-open', { sinceStart: Math.round(performance.now() - start) });
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      client.sendSdpOffer(loopbackSDP(pc.localDescription));
      emit('offer-sent', {});
    } catch (e) {
      fail(e);
    }
  });
  client.on('sdpAnswer', async (answer) => {
    emit('answer', { sinceStart: Math.round(performance.now() - start), codec: codecOf(answer.sdp) });
    try {
      await pc.setRemoteDescription(loopbackSDP(answer));
    } catch (e) {
      fail(e);
    }
  });
  client.on('iceCandidate', (c) => addRemoteCandidate(pc, c, counts));
  client.on('statusResponse', (r) => emit('status', { response: r }));
  client.on('error', (e) => log('signaling error:', String((e && e.message) || e)));
  client.on('close', () => {
    if (!done) fail(new Error('the signaling connection closed before the video arrived'));
  });
  client.open();
}

// Pattern draws a moving picture into I420 frames: a sliding luma ramp, a
// bouncing bright box and chroma that drifts with time.
class Pattern {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.n = 0;
    this.ramp = new Uint8Array(width * 2);
    for (let x = 0; x < this.ramp.length; x++) this.ramp[x] = 16 + ((x * 219) / width) % 219;
  }

  next() {
    const w = this.width;
    const h = this.height;
    const data = new Uint8ClampedArray((w * h * 3) / 2);
    const shift = (this.n * 4) % w;
    for (let y = 0; y < h; y++) {
      const off = (shift + y) % w;
      data.set(this.ramp.subarray(off, off + w), y * w);
    }
    const box = 64;
    const bx = Math.abs(((this.n * 6) % (2 * (w - box))) - (w - box));
    const by = Math.abs(((this.n * 3) % (2 * (h - box))) - (h - box));
    for (let y = by; y < by + box; y++) data.fill(235, y * w + bx, y * w + bx + box);
    const cw = w / 2;
    const ch = h / 2;
    const u = w * h;
    const v = u + cw * ch;
    for (let y = 0; y < ch; y++) {
      data.fill(128 + ((y + this.n) % 64) - 32, u + y * cw, u + (y + 1) * cw);
      data.fill(128 - ((y * 2 + this.n) % 64) + 32, v + y * cw, v + (y + 1) * cw);
    }
    this.n++;
    return { width: w, height: h, data };
  }
}

async function runMaster() {
  const s = await setup('MASTER');
  const client = signalingClient(s, KVSWebRTC.Role.MASTER);
  const source = new wrtc.nonstandard.RTCVideoSource();
  const pattern = new Pattern(WIDTH, HEIGHT);
  const ticker = setInterval(() => source.onFrame(pattern.next()), 1000 / FPS);
  const peers = new Map(); // client id -> RTCPeerConnection
  let stopping = false;

  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    emit('stopping', { why });
    clearInterval(ticker);
    for (const pc of peers.values()) pc.close();
    peers.clear();
    client.close();
    setTimeout(() => process.exit(0), 100);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.env.KVS_EXIT_ON_STDIN_EOF === '1') {
    // The test holds stdin open: the master ends with the test.
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }

  client.on('open', () => emit('ready', {}));
  client.on('sdpOffer', async (offer, viewerId) => {
    emit('offer', { viewer: viewerId, codec: codecOf(offer.sdp) });
    const old = peers.get(viewerId);
    if (old) old.close();
    const pc = new wrtc.RTCPeerConnection(rtcConfig(s.iceServers));
    peers.set(viewerId, pc);
    const counts = { local: 0, remote: 0, droppedLocal: 0, droppedRemote: 0 };
    pc.__counts = counts;
    pc.onicecandidate = candidateSender((c) => client.sendIceCandidate(c, viewerId), counts);
    pc.onconnectionstatechange = () => {
      emit('pc', { viewer: viewerId, state: pc.connectionState, candidates: counts });
      if (['failed', 'closed'].includes(pc.connectionState) && peers.get(viewerId) === pc) {
        peers.delete(viewerId);
        pc.close();
      }
    };
    try {
      pc.addTrack(source.createTrack());
      await pc.setRemoteDescription(loopbackSDP(offer));
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      client.sendSdpAnswer(loopbackSDP(pc.localDescription), viewerId);
      emit('answer-sent', { viewer: viewerId, codec: codecOf(pc.localDescription.sdp) });
    } catch (e) {
      emit('viewer-error', { viewer: viewerId, error: String(e) });
    }
  });
  client.on('iceCandidate', (c, viewerId) => {
    const pc = peers.get(viewerId);
    if (pc) addRemoteCandidate(pc, c, pc.__counts);
  });
  client.on('statusResponse', (r) => emit('status', { response: r }));
  client.on('error', (e) => log('signaling error:', String((e && e.message) || e)));
  client.on('close', () => {
    if (!stopping) fail(new Error('the signaling connection closed'));
  });
  client.open();
}

// The helpers, for kvs-twoway.js (the two-way viewer).
module.exports = { wrtc, KVSWebRTC, emit, log, fail, env, setup, rtcConfig, signalingClient, loopbackSDP, addRemoteCandidate, candidateSender };

process.on('unhandledRejection', fail);
const role = process.argv[2];
if (role === 'viewer') {
  runViewer().catch(fail);
} else if (role === 'master') {
  runMaster().catch(fail);
} else if (role === 'twoway-viewer') {
  require('./kvs-twoway.js').runTwoWayViewer().catch(fail);
} else {
  fail(new Error(`usage: node kvs-peer.js viewer|master|twoway-viewer (got ${JSON.stringify(role)})`));
}
