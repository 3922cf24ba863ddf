// The app's own script: it listens to each <kvs-viewer>'s events and shows
// them in the caption (a strict CSP allows this file: it is 'self').
for (const el of document.querySelectorAll('kvs-viewer')) {
  const state = el.closest('figure').querySelector('.state');
  el.addEventListener('state', (e) => (state.textContent = e.detail.state));
  el.addEventListener('first-frame', (e) => (state.textContent = `playing (first frame after ${Math.round(e.detail.ms)} ms)`));
  el.addEventListener('failed', (e) => (state.textContent = `${e.detail.title}: ${e.detail.advice}`));
}
