// The viewer flow of the KVS WebRTC JS SDK's examples/viewer.js with its
// two-way options on: "send audio" (Chromium's fake microphone, added to
// the peer connection before the offer) and "open data channel"
// (kvsDataChannel, created before the offer; channels the master opens
// are read too). Once the channel is open it sends "msg N" every 200 ms;
// window.result.replies collects what comes back. window.hangUp() closes
// the peer connection and records how long the microphone was sent.
(async () => {
  try {
    const { region, endpoint, channelName, credentials } = params();
    const video = document.getElementById('remote');
    watchFirstFrame(video);
    mark('start');
    window.result.replies = [];
    window.result.sent = 0;

    const { kinesisVideoClient, channelARN, endpointsByProtocol, iceServers } = await openChannel(
      { region, endpoint, channelName, credentials },
      KVSWebRTC.Role.VIEWER,
    );

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
    window.viewer = { peerConnection, signalingClient, clientId };
    window.result.clientId = clientId;

    const dataChannel = peerConnection.createDataChannel('kvsDataChannel');
    const onReply = (m) => window.result.replies.push(m.data);
    dataChannel.addEventListener('message', onReply);
    peerConnection.addEventListener('datachannel', (event) => event.channel.addEventListener('message', onReply));
    dataChannel.addEventListener('open', () => {
      mark('data-open');
      const timer = setInterval(() => {
        if (dataChannel.readyState !== 'open' || window.result.sent >= 10) {
          clearInterval(timer);
          return;
        }
        dataChannel.send('msg ' + window.result.sent);
        window.result.sent++;
      }, 200);
    });

    const localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    localStream.getTracks().forEach((track) => peerConnection.addTrack(track, localStream));
    mark('microphone');

    window.hangUp = () => {
      if (window.result.connectedAt) window.result.talkMs = performance.now() - window.result.connectedAt;
      peerConnection.close();
      signalingClient.close();
      mark('hung-up');
    };

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
    peerConnection.addEventListener('connectionstatechange', () => {
      mark('pc-' + peerConnection.connectionState);
      if (peerConnection.connectionState === 'connected' && !window.result.connectedAt) window.result.connectedAt = performance.now();
    });
    peerConnection.addEventListener('track', (event) => {
      if (event.track.kind !== 'video' || video.srcObject) return;
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
    });
    signalingClient.open();
  } catch (e) {
    fail(e);
  }
})();
