// kvsrtc web player: the DOM of one camera tile.

/** Builds a tile for a channel inside parent and returns its element. Its
 * parts carry CSS part names (tile, video, status, failure, failure-title,
 * failure-message, failure-advice, failure-cause, retry, stats, bar,
 * label, unmute, stats-toggle; with two-way, twoway.js adds talk,
 * data-toggle, console, console-log, console-input and notice) for pages
 * that theme a <kvs-viewer>. */
function view(parent, channel) {
  const part = (e, name) => {
    e.setAttribute('part', name);
    return e;
  };
  const el = part(document.createElement('div'), 'tile');
  el.className = 'player';
  el.dataset.channel = channel;
  const video = part(document.createElement('video'), 'video');
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  el.append(video);

  const status = part(document.createElement('div'), 'status');
  status.className = 'status';
  status.setAttribute('role', 'status');
  const spin = document.createElement('span');
  spin.className = 'spinner';
  const text = document.createElement('span');
  text.className = 'status-text';
  status.append(spin, text);
  el.append(status);

  const failure = part(document.createElement('div'), 'failure');
  failure.className = 'failure';
  failure.setAttribute('role', 'alert');
  failure.hidden = true;
  for (const [tag, cls] of [['h2', 'failure-title'], ['p', 'failure-message'], ['p', 'failure-advice'], ['p', 'failure-cause']]) {
    const e = part(document.createElement(tag), cls);
    e.className = cls;
    failure.append(e);
  }
  const retry = part(document.createElement('button'), 'retry');
  retry.className = 'retry';
  retry.type = 'button';
  retry.textContent = 'Retry';
  failure.append(retry);
  el.append(failure);

  const stats = part(document.createElement('div'), 'stats');
  stats.className = 'stats';
  stats.hidden = true;
  stats.append(document.createElement('pre'));
  el.append(stats);

  const bar = part(document.createElement('div'), 'bar');
  bar.className = 'bar';
  const label = part(document.createElement('span'), 'label');
  label.className = 'label';
  label.textContent = channel;
  const unmute = part(document.createElement('button'), 'unmute');
  unmute.className = 'unmute';
  unmute.type = 'button';
  unmute.textContent = 'Sound on';
  unmute.hidden = true;
  const st = part(document.createElement('button'), 'stats-toggle');
  st.className = 'stats-toggle';
  st.type = 'button';
  st.textContent = 'Stats';
  bar.append(label, unmute, st);
  el.append(bar);
  parent.append(el);
  return el;
}
