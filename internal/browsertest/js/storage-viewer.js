// The viewer flow of the KVS WebRTC JS SDK's examples in WebRTC ingestion
// mode (Multiviewer): the example runs a VIEWER with ingestion through the
// same code as the master (master.js with ROLE VIEWER): the channel steps
// of ChannelHelper, SignalingClient as VIEWER (clientId) with early ICE
// candidate buffering, on 'open' JoinStorageSessionAsViewer until the
// storage session's SDP offer arrives, answered as examples/answerer.js
// does (no video sent; the microphone when ?audio=1). The remote video
// plays in the page.
//
// window.result: firstFrameMs, frames, width, height (common.js), offers,
// joins, state, states, maxGapMs (since window.resetGap()), received and
// sent (window.refresh()).
(async () => {
  try {
    const { region, endpoint, channelName, credentials } = params();
    const q = new URLSearchParams(location.search);
    const joinIntervalMs = Number(q.get('joinIntervalMs') || 6000);
    const video = document.getElementById('remote');
    watchFirstFrame(video);
    // The longest pause between presented frames since window.resetGap().
    window.result.maxGapMs = 0;
    let lastFrame = null;
    const gaps = (now) => {
      if (lastFrame !== null) window.result.maxGapMs = Math.max(window.result.maxGapMs, Math.round(now - lastFrame));
      lastFrame = now;
      video.requestVideoFrameCallback(gaps);
    };
    video.requestVideoFrameCallback(gaps);
    window.resetGap = () => {
      window.result.maxGapMs = 0;
    };
    mark('start');
    let localStream = null;
    if (q.get('audio') === '1') {
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      mark('microphone');
    }

    const { kinesisVideoClient, channelARN, endpointsByProtocol, iceServers, storageClient } = await openStorageChannel(
      { region, endpoint, channelName, credentials },
      KVSWebRTC.Role.VIEWER,
      joinIntervalMs,
    );
    const clientId = q.get('clientId') || Date.now().toString(36) + '-' + Math.random().toString(36).substring(2);
    const signalingClient = new KVSWebRTC.SignalingClient({
      channelARN,
      channelEndpoint: endpointsByProtocol.WSS,
      clientId,
      role: KVSWebRTC.Role.VIEWER,
      region,
      credentials,
      enableEarlyIceCandidateBuffering: true,
      systemClockOffset: kinesisVideoClient.config.systemClockOffset,
    });
    const state = { runId: 0, wsOpen: false, offerReceived: false };
    let answerer = null;
    Object.assign(window.result, { clientId, offers: 0, joins: 0, state: 'none', states: [] });

    signalingClient.on('open', async () => {
      const runId = ++state.runId;
      state.wsOpen = true;
      mark('ws-open');
      const ok = await joinStorageSessionUntilOffer(
        state,
        runId,
        () => storageClient.joinStorageSessionAsViewer({ channelArn: channelARN, clientId }).promise(),
        joinIntervalMs,
      );
      mark(ok ? 'joined' : 'join-gave-up');
    });
    signalingClient.on('sdpOffer', async (offer, remoteClientId) => {
      state.offerReceived = true;
      window.result.offers++;
      window.result.offerSDP = offer.sdp;
      mark('offer');
      if (answerer) answerer.close();
      answerer = null;
      window.result.state = 'answering';
      try {
        const a = await answerStorageOffer(signalingClient, iceServers, localStream, offer, remoteClientId, (ev) => {
          if (ev.track.kind !== 'video') return;
          video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
        });
        answerer = a;
        window.result.state = a.pc.connectionState;
        a.pc.addEventListener('connectionstatechange', () => {
          if (answerer !== a) return;
          window.result.state = a.pc.connectionState;
          window.result.states.push([a.pc.connectionState, Math.round(performance.now())]);
          if (a.pc.connectionState === 'connected') mark('connected');
        });
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
    window.refresh = async () => {
      window.result.received = await rtpTotals(answerer && answerer.pc, 'inbound-rtp');
      window.result.sent = await rtpTotals(answerer && answerer.pc, 'outbound-rtp');
      return window.result;
    };
    signalingClient.open();
  } catch (e) {
    fail(e);
  }
})();
