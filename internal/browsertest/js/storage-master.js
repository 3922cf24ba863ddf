// The master flow of the KVS WebRTC JS SDK's examples/master.js in WebRTC
// ingestion mode: a camera and microphone (Chromium's fake devices), the
// channel steps of ChannelHelper (DescribeMediaStorageConfiguration must be
// ENABLED; GetSignalingChannelEndpoint with WEBRTC), SignalingClient as
// MASTER with early ICE candidate buffering, and on every signaling 'open'
// JoinStorageSession until the storage session's SDP offer arrives; the
// offer (no senderClientId) is answered as examples/answerer.js does.
//
// window.result: offers, joins, joinErrors, state (the storage peer
// connection's), states (every change), sent (outbound RTP totals, see
// window.refresh()). window.reconnectSignaling() closes signaling and opens
// it again (no new join); window.renew() does the same and joins anew, as
// after a lost storage connection.
(async () => {
  try {
    const { region, endpoint, channelName, credentials } = params();
    const q = new URLSearchParams(location.search);
    const joinIntervalMs = Number(q.get('joinIntervalMs') || 6000);
    const localView = document.getElementById('local');
    const localStream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    localView.srcObject = localStream;
    mark('camera');

    const { kinesisVideoClient, channelARN, endpointsByProtocol, iceServers, storageClient } = await openStorageChannel(
      { region, endpoint, channelName, credentials },
      KVSWebRTC.Role.MASTER,
      joinIntervalMs,
    );

    const signalingClient = new KVSWebRTC.SignalingClient({
      channelARN,
      channelEndpoint: endpointsByProtocol.WSS,
      role: KVSWebRTC.Role.MASTER,
      region,
      credentials,
      enableEarlyIceCandidateBuffering: true,
      systemClockOffset: kinesisVideoClient.config.systemClockOffset,
    });
    const state = { runId: 0, wsOpen: false, offerReceived: false };
    let answerer = null;
    Object.assign(window.result, { offers: 0, joins: 0, opens: 0, state: 'none', states: [], talkback: 0 });

    signalingClient.on('open', async () => {
      const runId = ++state.runId;
      state.wsOpen = true;
      window.result.opens++;
      mark('ws-open');
      const ok = await joinStorageSessionUntilOffer(
        state,
        runId,
        () => storageClient.joinStorageSession({ channelArn: channelARN }).promise(),
        joinIntervalMs,
      );
      mark(ok ? 'joined' : 'join-gave-up');
    });
    signalingClient.on('sdpOffer', async (offer, remoteClientId) => {
      state.offerReceived = true;
      window.result.offers++;
      window.result.offerFrom = remoteClientId === undefined ? null : remoteClientId;
      window.result.offerSDP = offer.sdp;
      mark('offer');
      if (answerer) answerer.close(); // a re-join's offer replaces the storage peer connection
      answerer = null;
      window.result.state = 'answering';
      try {
        const a = await answerStorageOffer(signalingClient, iceServers, localStream, offer, remoteClientId, (ev) => {
          if (ev.track.kind === 'audio') window.result.talkback++;
        });
        answerer = a;
        window.storagePC = a.pc;
        window.result.state = a.pc.connectionState;
        a.pc.addEventListener('connectionstatechange', () => {
          if (answerer !== a) return;
          window.result.state = a.pc.connectionState;
          window.result.states.push([a.pc.connectionState, Math.round(performance.now())]);
          if (a.pc.connectionState === 'connected') mark('connected');
        });
        window.result.answerSDP = a.pc.localDescription.sdp;
        mark('answer-sent');
      } catch (e) {
        fail(e);
      }
    });
    signalingClient.on('statusResponse', (st) => {
      if (!st.success) window.result.status = st;
    });
    signalingClient.on('close', () => {
      state.wsOpen = false;
      state.runId++;
      mark('ws-close');
    });
    signalingClient.on('error', (e) => mark('ws-error ' + ((e && e.message) || e)));

    // The storage connection is renewed as the example does after a lost
    // connection: no offer yet (a new join is due), signaling reopened.
    window.renew = () => {
      state.offerReceived = false;
      signalingClient.resetIceCandidateState(undefined);
      signalingClient.close();
      setTimeout(() => signalingClient.open(), 200);
    };
    // A signaling renewal alone: as in the example, the 'open' handler
    // finds the offer already received and does not join again; the
    // storage peer connection lives on.
    window.reconnectSignaling = () => {
      signalingClient.close();
      setTimeout(() => signalingClient.open(), 200);
    };
    window.refresh = async () => {
      window.result.sent = await rtpTotals(answerer && answerer.pc, 'outbound-rtp');
      window.result.received = await rtpTotals(answerer && answerer.pc, 'inbound-rtp');
      return window.result;
    };
    signalingClient.open();
  } catch (e) {
    fail(e);
  }
})();
