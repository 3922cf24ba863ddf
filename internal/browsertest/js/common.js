// Shared by the official-flow test pages (kvsrtc internal/browsertest).
// window.result is what the Go test reads.
window.result = { events: [], error: null, firstFrameMs: null, width: 0, height: 0 };

function mark(what) {
  window.result.events.push([what, Math.round(performance.now())]);
}

function fail(e) {
  window.result.error = String((e && (e.code || e.name)) || '') + ': ' + String((e && e.message) || e);
}

// The test machine must keep all traffic on loopback: only loopback
// candidates are sent (like the candidate filters of the SDK's example app).
function loopbackCandidate(candidate) {
  const addr = ((candidate && candidate.candidate) || '').split(' ')[4] || '';
  return addr.startsWith('127.') || addr === '::1';
}

// Calls back on the first frame the video element presents.
function watchFirstFrame(video) {
  const cb = () => {
    if (window.result.firstFrameMs === null) {
      window.result.firstFrameMs = performance.now();
      window.result.width = video.videoWidth;
      window.result.height = video.videoHeight;
      mark('first-frame');
    }
    window.result.frames = (window.result.frames || 0) + 1;
    window.result.width = video.videoWidth;
    window.result.height = video.videoHeight;
    video.requestVideoFrameCallback(cb);
  };
  video.requestVideoFrameCallback(cb);
}

function params() {
  const q = new URLSearchParams(location.search);
  return {
    region: q.get('region'),
    endpoint: q.get('endpoint'),
    channelName: q.get('channel'),
    credentials: { accessKeyId: q.get('accessKeyId'), secretAccessKey: q.get('secretAccessKey') },
  };
}

// The channel steps every official flow starts with, as the SDK's
// examples do: DescribeSignalingChannel, GetSignalingChannelEndpoint (WSS
// and HTTPS for role), GetIceServerConfig. No STUN entry is added: the KVS
// STUN host is on the internet and the tests stay on loopback, so the local
// service's TURN servers are used.
async function openChannel({ region, endpoint, channelName, credentials }, role) {
  const kinesisVideoClient = new AWS.KinesisVideo({ region, ...credentials, endpoint, correctClockSkew: true });
  const describe = await kinesisVideoClient.describeSignalingChannel({ ChannelName: channelName }).promise();
  const channelARN = describe.ChannelInfo.ChannelARN;
  mark('described');
  const endpoints = await kinesisVideoClient
    .getSignalingChannelEndpoint({
      ChannelARN: channelARN,
      SingleMasterChannelEndpointConfiguration: { Protocols: ['WSS', 'HTTPS'], Role: role },
    })
    .promise();
  const endpointsByProtocol = endpoints.ResourceEndpointList.reduce((acc, e) => {
    acc[e.Protocol] = e.ResourceEndpoint;
    return acc;
  }, {});
  mark('endpoints');
  const signalingChannelsClient = new AWS.KinesisVideoSignalingChannels({
    region,
    ...credentials,
    endpoint: endpointsByProtocol.HTTPS,
    correctClockSkew: true,
  });
  const ice = await signalingChannelsClient.getIceServerConfig({ ChannelARN: channelARN }).promise();
  const iceServers = ice.IceServerList.map((s) => ({ urls: s.Uris, username: s.Username, credential: s.Password }));
  return { kinesisVideoClient, channelARN, endpointsByProtocol, iceServers };
}

// ---- WebRTC ingestion and Multiviewer (storage-master.js, storage-viewer.js)

// The bundled aws-sdk 2.x browser build does not include the Kinesis Video
// WebRTC Storage client (its npm package has it as clients/
// kinesisvideowebrtcstorage.js with apis/kinesis-video-webrtc-storage-
// 2018-05-10.min.json). This defines the same service from its API model:
// REST-JSON, signing name kinesisvideo, two operations.
function defineWebRTCStorage() {
  if (AWS.KinesisVideoWebRTCStorage) return AWS.KinesisVideoWebRTCStorage;
  const model = {
    version: '2.0',
    metadata: {
      apiVersion: '2018-05-10',
      endpointPrefix: 'kinesisvideo',
      jsonVersion: '1.1',
      protocol: 'rest-json',
      serviceFullName: 'Amazon Kinesis Video WebRTC Storage',
      serviceId: 'Kinesis Video WebRTC Storage',
      signatureVersion: 'v4',
      signingName: 'kinesisvideo',
      uid: 'kinesis-video-webrtc-storage-2018-05-10',
    },
    operations: {
      JoinStorageSession: {
        http: { requestUri: '/joinStorageSession', responseCode: 200 },
        input: { type: 'structure', required: ['channelArn'], members: { channelArn: {} } },
      },
      JoinStorageSessionAsViewer: {
        http: { requestUri: '/joinStorageSessionAsViewer', responseCode: 200 },
        input: { type: 'structure', required: ['channelArn', 'clientId'], members: { channelArn: {}, clientId: {} } },
      },
    },
    shapes: {},
  };
  AWS.apiLoader.services.kinesisvideowebrtcstorage = { '2018-05-10': model };
  AWS.KinesisVideoWebRTCStorage = AWS.Service.defineService('kinesisvideowebrtcstorage', ['2018-05-10']);
  window.result.definedWebRTCStorage = true;
  return AWS.KinesisVideoWebRTCStorage;
}

// The channel steps of the SDK example's ChannelHelper in ingestion mode
// (DETERMINE_THROUGH_DESCRIBE): DescribeSignalingChannel,
// DescribeMediaStorageConfiguration (must be ENABLED with a stream),
// GetSignalingChannelEndpoint for HTTPS, WSS and WEBRTC, GetIceServerConfig,
// and a WebRTC Storage client on the WEBRTC endpoint (no retries, a timeout
// of the join interval).
async function openStorageChannel({ region, endpoint, channelName, credentials }, role, joinIntervalMs) {
  const kinesisVideoClient = new AWS.KinesisVideo({ region, ...credentials, endpoint, correctClockSkew: true });
  const describe = await kinesisVideoClient.describeSignalingChannel({ ChannelName: channelName }).promise();
  const channelARN = describe.ChannelInfo.ChannelARN;
  mark('described');
  const msc = await kinesisVideoClient.describeMediaStorageConfiguration({ ChannelARN: channelARN }).promise();
  const cfg = msc.MediaStorageConfiguration;
  if (!cfg || cfg.Status !== 'ENABLED' || !cfg.StreamARN) {
    throw new Error('the channel is not configured for WebRTC ingestion: ' + JSON.stringify(cfg));
  }
  window.result.streamARN = cfg.StreamARN;
  mark('storage-enabled');
  const endpoints = await kinesisVideoClient
    .getSignalingChannelEndpoint({
      ChannelARN: channelARN,
      SingleMasterChannelEndpointConfiguration: { Protocols: ['HTTPS', 'WSS', 'WEBRTC'], Role: role },
    })
    .promise();
  const endpointsByProtocol = endpoints.ResourceEndpointList.reduce((acc, e) => {
    acc[e.Protocol] = e.ResourceEndpoint;
    return acc;
  }, {});
  if (!endpointsByProtocol.WEBRTC) throw new Error('no WEBRTC endpoint in ' + JSON.stringify(endpoints));
  mark('endpoints');
  const signalingChannelsClient = new AWS.KinesisVideoSignalingChannels({
    region,
    ...credentials,
    endpoint: endpointsByProtocol.HTTPS,
    correctClockSkew: true,
  });
  const ice = await signalingChannelsClient.getIceServerConfig({ ChannelARN: channelARN }).promise();
  const iceServers = ice.IceServerList.map((s) => ({ urls: s.Uris, username: s.Username, credential: s.Password }));
  const Storage = defineWebRTCStorage();
  const storageClient = new Storage({
    region,
    ...credentials,
    endpoint: endpointsByProtocol.WEBRTC,
    maxRetries: 0,
    httpOptions: { timeout: joinIntervalMs },
    correctClockSkew: true,
  });
  return { kinesisVideoClient, channelARN, endpointsByProtocol, iceServers, storageClient };
}

// The join loop of the SDK example (callJoinStorageSessionUntilSDPOfferReceived):
// call join() until an SDP offer arrives (state.offerReceived), the run
// changes (state.runId) or signaling closes (state.wsOpen); retry only on
// ClientLimitExceeded (not "maximum number of viewers"), networking errors,
// timeouts and HTTP 500, at most 5 retries, waiting the interval plus a
// growing jitter between calls. Returns whether it ended with an offer.
async function joinStorageSessionUntilOffer(state, runId, join, intervalMs) {
  let retries = 0;
  let retry = true;
  while (retry && !state.offerReceived && state.runId === runId && state.wsOpen) {
    try {
      window.result.joins = (window.result.joins || 0) + 1;
      mark('join');
      await join();
    } catch (e) {
      window.result.joinErrors = (window.result.joinErrors || []).concat([String(e.code) + ': ' + e.message]);
      retry =
        (e.code === 'ClientLimitExceededException' &&
          !String(e.message || '').toLowerCase().includes('maximum number of viewers connected to the session')) ||
        e.code === 'NetworkingError' ||
        e.code === 'TimeoutError' ||
        e.statusCode === 500;
    }
    retry = retry && retries <= 5;
    await new Promise((r) => setTimeout(r, intervalMs + Math.min(Math.random() * Math.pow(200, retries - 1), 10000)));
    if (!state.offerReceived) retries++;
  }
  return state.offerReceived && state.runId === runId;
}

// Answers the storage session's offer the way the SDK example's Answerer
// does in ingestion mode (the SignalingClient buffers early candidates,
// enableEarlyIceCandidateBuffering): local tracks, remote description,
// drain the buffered candidates, answer, send it with remoteClientId
// undefined and a correlation id; candidates go to remoteClientId
// (undefined: the storage session), loopback ones only.
async function answerStorageOffer(signalingClient, iceServers, localStream, offer, remoteClientId, onTrack) {
  const pc = new RTCPeerConnection({ iceServers });
  const onCandidate = (candidate, from) => {
    if (from !== remoteClientId || pc.signalingState === 'closed') return;
    pc.addIceCandidate(candidate).catch((e) => mark('bad-candidate ' + e));
  };
  signalingClient.on('iceCandidate', onCandidate);
  pc.addEventListener('icecandidate', ({ candidate }) => {
    if (candidate && candidate.candidate && loopbackCandidate(candidate)) {
      signalingClient.sendIceCandidate(candidate, remoteClientId);
    }
  });
  if (onTrack) pc.addEventListener('track', onTrack);
  if (localStream) localStream.getTracks().forEach((track) => pc.addTrack(track, localStream));
  await pc.setRemoteDescription(offer);
  signalingClient.drainPendingIceCandidates(remoteClientId);
  await pc.setLocalDescription(await pc.createAnswer({ offerToReceiveAudio: true, offerToReceiveVideo: true }));
  signalingClient.sendSdpAnswer(pc.localDescription, remoteClientId, Date.now().toString(36) + Math.random().toString(36).substring(2));
  const close = () => {
    signalingClient.removeListener('iceCandidate', onCandidate);
    pc.close();
  };
  return { pc, close };
}

// Sums a peer connection's RTP stats of type ('outbound-rtp' or
// 'inbound-rtp') by kind: {video: {bytes, packets, frames}, audio: {...}}.
async function rtpTotals(pc, type) {
  const out = { video: { bytes: 0, packets: 0, frames: 0 }, audio: { bytes: 0, packets: 0, frames: 0 } };
  if (!pc) return out;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type !== type || !out[s.kind]) return;
    const o = out[s.kind];
    o.bytes += (type === 'outbound-rtp' ? s.bytesSent : s.bytesReceived) || 0;
    o.packets += (type === 'outbound-rtp' ? s.packetsSent : s.packetsReceived) || 0;
    o.frames += (type === 'outbound-rtp' ? s.framesEncoded : s.framesDecoded) || 0;
  });
  return out;
}
