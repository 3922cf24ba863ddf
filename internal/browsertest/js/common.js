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
