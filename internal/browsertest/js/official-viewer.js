// The viewer flow of the KVS WebRTC JS SDK's README and examples/viewer.js:
// DescribeSignalingChannel, GetSignalingChannelEndpoint (VIEWER),
// GetIceServerConfig, then SignalingClient as VIEWER with trickle ICE.
(async () => {
  try {
    const { region, endpoint, channelName, credentials } = params();
    const video = document.getElementById('remote');
    watchFirstFrame(video);
    mark('start');

    const { kinesisVideoClient, channelARN, endpointsByProtocol, iceServers } = await openChannel(
      { region, endpoint, channelName, credentials },
      KVSWebRTC.Role.VIEWER,
    );
    mark('ice-servers');

    const peerConnection = new RTCPeerConnection({ iceServers });
    const clientId = Date.now().toString(36) + '-' + Math.random().toString(36).substring(2);
    const signalingClient = new KVSWebRTC.SignalingClient({
      channelARN,
      channelEndpoint: endpointsByProtocol.WSS,
      clientId,
      role: KVSWebRTC.Role.VIEWER,
      region,
      credentials,
      systemClockOffset: kinesisVideoClient.config.systemClockOffset,
    });
    window.viewer = { peerConnection, signalingClient };

    signalingClient.on('open', async () => {
      mark('ws-open');
      const offer = await peerConnection.createOffer({ offerToReceiveAudio: true, offerToReceiveVideo: true });
      await peerConnection.setLocalDescription(offer);
      signalingClient.sendSdpOffer(peerConnection.localDescription);
      mark('offer-sent');
    });
    signalingClient.on('sdpAnswer', async (answer) => {
      mark('answer');
      await peerConnection.setRemoteDescription(answer);
    });
    signalingClient.on('iceCandidate', (candidate) => peerConnection.addIceCandidate(candidate));
    signalingClient.on('error', (e) => fail(e));
    peerConnection.addEventListener('icecandidate', ({ candidate }) => {
      if (candidate && loopbackCandidate(candidate)) signalingClient.sendIceCandidate(candidate);
    });
    peerConnection.addEventListener('connectionstatechange', () => mark('pc-' + peerConnection.connectionState));
    peerConnection.addEventListener('track', (event) => {
      if (video.srcObject) return;
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
    });
    signalingClient.open();
  } catch (e) {
    fail(e);
  }
})();
