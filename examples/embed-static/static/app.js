// The page's own script: each <kvs-viewer> gets its bearer token from the
// app's backend (short-lived, renewed before it runs out), then connects.
let cached = null;

async function kvsToken() {
  if (cached && cached.expires * 1000 - Date.now() > 30000) return cached.token;
  const r = await fetch('/app/kvs-token', { credentials: 'same-origin', cache: 'no-store' });
  if (!r.ok) return ''; // signed out: the API then says so, and the element shows it
  cached = await r.json();
  return cached.token;
}

await customElements.whenDefined('kvs-viewer');
for (const el of document.querySelectorAll('kvs-viewer')) {
  const state = el.closest('figure').querySelector('.state');
  el.addEventListener('state', (e) => (state.textContent = e.detail.state));
  el.addEventListener('failed', (e) => (state.textContent = `${e.detail.title}: ${e.detail.advice}`));
  el.getToken = kvsToken;
  el.connect();
}
