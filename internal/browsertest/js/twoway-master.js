// The master flow of the KVS WebRTC JS SDK's examples/master.js with its
// two-way options on: a camera and a microphone (Chromium's fake devices),
// "open data channel" (the master creates its own kvsDataChannel for each
// viewer and reads the viewer's), and the viewer's audio played. Each
// message from a viewer is answered with "echo:" + message on the
// master's channel. window.result.audio() returns the inbound audio
// statistics of every viewer's peer connection.
(async () => {
  try {
    const { region, endpoint, channelName, credentials } = params();
    const localView = document.getElementById('local');
    const remoteAudio = document.getElementById('remote-audio');
    const localStream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
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
    window.result.messages = [];
    window.result.audio = async () => {
      const out = [];
      for (const [id, pc] of Object.entries(peers)) {
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            out.push({ viewer: id, bytesReceived: s.bytesReceived, packetsReceived: s.packetsReceived, totalSamplesReceived: s.totalSamplesReceived });
          }
        });
      }
      return out;
    };

    signalingClient.on('open', () => mark('ws-open'));
    signalingClient.on('sdpOffer', async (offer, remoteClientId) => {
      mark('offer');
      if (peers[remoteClientId]) peers[remoteClientId].close();
      const pc = new RTCPeerConnection({ iceServers });
      peers[remoteClientId] = pc;
      window.result.viewers[remoteClientId] = 'new';
      // As the sample's "open data channel": its own channel to send on,
      // and the viewer's to read.
      const dataChannel = pc.createDataChannel('kvsDataChannel');
      pc.addEventListener('datachannel', (event) => {
        event.channel.addEventListener('message', (m) => {
          window.result.messages.push(m.data);
          if (dataChannel.readyState === 'open') dataChannel.send('echo:' + m.data);
        });
      });
      pc.addEventListener('icecandidate', ({ candidate }) => {
        if (candidate && loopbackCandidate(candidate)) signalingClient.sendIceCandidate(candidate, remoteClientId);
      });
      pc.addEventListener('connectionstatechange', () => {
        window.result.viewers[remoteClientId] = pc.connectionState;
      });
      pc.addEventListener('track', (event) => {
        if (event.track.kind === 'audio') {
          remoteAudio.srcObject = event.streams[0] || new MediaStream([event.track]);
          mark('viewer-audio');
        }
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
