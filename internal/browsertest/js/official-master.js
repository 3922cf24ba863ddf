// The master flow of the KVS WebRTC JS SDK's examples/master.js: a camera
// (Chromium's fake device), DescribeSignalingChannel,
// GetSignalingChannelEndpoint (MASTER), GetIceServerConfig, then
// SignalingClient as MASTER answering every viewer's offer with a peer
// connection of its own.
(async () => {
  try {
    const { region, endpoint, channelName, credentials } = params();
    const localView = document.getElementById('local');
    const localStream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    localView.srcObject = localStream;
    mark('camera');

    const { kinesisVideoClient, channelARN, endpointsByProtocol, iceServers } = await openChannel(
      { region, endpoint, channelName, credentials },
      KVSWebRTC.Role.MASTER,
    );

    const signalingClient = new KVSWebRTC.SignalingClient({
      channelARN,
      channelEndpoint: endpointsByProtocol.WSS,
      role: KVSWebRTC.Role.MASTER,
      region,
      credentials,
      systemClockOffset: kinesisVideoClient.config.systemClockOffset,
    });
    const peers = {};
    window.result.viewers = {};

    signalingClient.on('open', () => mark('ws-open'));
    signalingClient.on('sdpOffer', async (offer, remoteClientId) => {
      mark('offer');
      if (peers[remoteClientId]) peers[remoteClientId].close();
      const pc = new RTCPeerConnection({ iceServers });
      peers[remoteClientId] = pc;
      window.result.viewers[remoteClientId] = 'new';
      pc.addEventListener('icecandidate', ({ candidate }) => {
        if (candidate && loopbackCandidate(candidate)) signalingClient.sendIceCandidate(candidate, remoteClientId);
      });
      pc.addEventListener('connectionstatechange', () => {
        window.result.viewers[remoteClientId] = pc.connectionState;
      });
      localStream.getTracks().forEach((track) => pc.addTrack(track, localStream));
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription(await pc.createAnswer());
      signalingClient.sendSdpAnswer(pc.localDescription, remoteClientId, Date.now().toString());
      mark('answer-sent');
    });
    signalingClient.on('iceCandidate', (candidate, remoteClientId) => {
      const pc = peers[remoteClientId];
      if (pc) pc.addIceCandidate(candidate);
    });
    signalingClient.on('statusResponse', (st) => {
      if (!st.success) window.result.status = st;
    });
    signalingClient.on('error', (e) => fail(e));
    signalingClient.open();
  } catch (e) {
    fail(e);
  }
})();
