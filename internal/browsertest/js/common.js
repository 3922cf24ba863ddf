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
