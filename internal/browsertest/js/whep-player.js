// Plays a WHEP endpoint with the unmodified @eyevinn/webrtc-player npm
// package. The package is CommonJS without a browser bundle, so this page
// runs it through a small CommonJS loader: each require() asks the test
// server (GET /require) to resolve the name as Node does and returns the
// file, evaluated once with module, exports and require.
//
// Query: url (the WHEP endpoint), auth (the Authorization header value).
// window.state reports what happened; window.player is the player.
'use strict';

const modules = {};

function requireFrom(from, name) {
  const q = new URLSearchParams({ from, name });
  const x = new XMLHttpRequest();
  x.open('GET', '/require?' + q, false); // synchronous, as require is
  x.send();
  if (x.status !== 200) {
    throw new Error('require(' + JSON.stringify(name) + ') from ' + from + ': ' + x.responseText);
  }
  const path = x.getResponseHeader('X-Module-Path');
  if (modules[path]) {
    return modules[path].exports;
  }
  const module = { exports: {} };
  modules[path] = module;
  if (path.endsWith('.json')) {
    module.exports = JSON.parse(x.responseText);
    return module.exports;
  }
  const fn = new Function('module', 'exports', 'require', 'process', 'global',
    x.responseText + '\n//# sourceURL=' + path);
  fn.call(module.exports, module, module.exports, (n) => requireFrom(path, n),
    { env: { NODE_ENV: 'production' } }, globalThis);
  return module.exports;
}

window.state = { events: [], errors: [] };

(async () => {
  const params = new URLSearchParams(location.search);
  try {
    const { WebRTCPlayer } = requireFrom('', '@eyevinn/webrtc-player');
    const video = document.getElementById('video');
    const player = new WebRTCPlayer({
      video,
      type: 'whep',
      iceServers: [], // loopback only: no public STUN server
      statsTypeFilter: '^inbound-rtp',
    });
    window.player = player;
    for (const ev of ['no-media', 'media-recovered', 'peer-connection-failed', 'initial-connection-failed', 'connect-error']) {
      player.on(ev, () => window.state.events.push(ev));
    }
    player.on('stats:inbound-rtp', (r) => {
      if (r.kind === 'video') {
        window.state.framesDecoded = r.framesDecoded;
      }
    });
    await player.load(new URL(params.get('url')), params.get('auth') || undefined);
    window.state.loaded = true;
  } catch (e) {
    window.state.errors.push(String(e && e.stack || e));
  }
})();
