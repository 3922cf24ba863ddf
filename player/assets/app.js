// kvsrtc web player: page entry point (single view, grid and channel list).


const config = JSON.parse(document.getElementById('kvsrtc-config').textContent);
const params = new URLSearchParams(location.search);
const app = document.getElementById('app');
const players = [];
const pageApi = apiClient('/api/');
window.kvsrtc = { config, players, snapshot: () => players.map((p) => p.snapshot()) };

function channelList() {
  const h = document.createElement('h1');
  h.textContent = 'Cameras';
  const ul = document.createElement('ul');
  ul.className = 'channels';
  for (const c of config.channels) {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = '/?channel=' + encodeURIComponent(c);
    a.textContent = c;
    li.append(a);
    ul.append(li);
  }
  const grid = document.createElement('a');
  grid.href = '/grid';
  grid.textContent = 'All cameras in a grid';
  grid.className = 'grid-link';
  app.append(h, ul, grid);
}

function play(channels, cls) {
  const box = document.createElement('div');
  box.className = cls;
  app.append(box);
  for (const c of channels) {
    const p = new Player(view(box, c), c, config.policy, config.loopbackOnly, { api: pageApi, talk: !!config.talk, data: !!config.data });
    players.push(p);
    if (params.get('stats') === '1') p.toggleStats(true);
    if (params.get('console') === '1') p.two.toggleConsole(true);
    // The clock for the time to first frame starts at navigation.
    p.start(0);
  }
}

function main() {
  if (document.body.dataset.page === 'grid') {
    let chans = params.getAll('channel').filter((c) => config.channels.includes(c));
    if (chans.length === 0) chans = config.channels;
    document.body.style.setProperty('--cols', String(Math.ceil(Math.sqrt(chans.length))));
    play(chans, 'grid');
  } else {
    const c = params.get('channel') || (config.channels.length === 1 ? config.channels[0] : '');
    if (c) {
      document.title = c + ' - kvsrtc';
      play([c], 'single');
    } else {
      channelList();
    }
  }
}

// Let the bootstrap's connections go first (to their first frame, or their
// offer on a page of several cameras; it bounds the wait), then build the
// page.
(window.kvsrtcEarlyReady || Promise.resolve()).then(main);

document.addEventListener('keydown', (ev) => {
  if (ev.key === 's' && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
    for (const p of players) p.toggleStats();
  }
});

// Leaving the page frees the camera's viewer slot at once (the peer
// connection closes with a DTLS alert) instead of after its timeouts.
addEventListener('pagehide', () => {
  for (const p of players) p.stop();
});
