// Plays ?src= (an HLS master playlist URL of kvsrtc local's archived-media
// API) with hls.js, and records what happens in window.state and
// window.hlsErrors for the test (internal/browsertest/hls_test.go).
(function () {
  'use strict';
  const src = new URLSearchParams(location.search).get('src');
  const video = document.getElementById('video');
  window.state = 'starting';
  window.hlsErrors = [];
  if (!window.Hls || !window.Hls.isSupported()) {
    window.state = 'unsupported';
    return;
  }
  const hls = new window.Hls({ lowLatencyMode: false });
  window.hls = hls;
  hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
    window.state = 'manifest';
    video.play().catch((e) => window.hlsErrors.push('play: ' + e));
  });
  hls.on(window.Hls.Events.ERROR, (_, data) => {
    window.hlsErrors.push(data.type + '/' + data.details + (data.fatal ? ' (fatal)' : '') +
      (data.response ? ' HTTP ' + data.response.code : ''));
    if (data.fatal) {
      window.state = 'failed';
    }
  });
  video.addEventListener('playing', () => {
    window.state = 'playing';
    if (window.firstPlayingTime === undefined) {
      window.firstPlayingTime = video.currentTime;
    }
  });
  hls.loadSource(src);
  hls.attachMedia(video);
})();
