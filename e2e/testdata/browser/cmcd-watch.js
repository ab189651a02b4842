// Records each POST of the page to a /v1/cmcd URL and the collector's answer,
// whatever the player sends it with (fetch: hls.js; XMLHttpRequest: dash.js).
// The test reads window.cmcdPosts: [{body, status, answer, error}].
window.cmcdPosts = [];
(() => {
  const isCMCD = (u) => String(u).includes('/v1/cmcd');
  const ofetch = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === 'string' ? input : (input && input.url) || String(input);
    const p = ofetch.apply(this, arguments);
    if (!isCMCD(url) || !init || init.method !== 'POST') return p;
    const rec = { body: String(init.body || ''), status: 0, answer: '', error: '' };
    window.cmcdPosts.push(rec);
    return p.then((r) => {
      rec.status = r.status;
      r.clone().text().then((t) => { rec.answer = t; });
      return r;
    }, (e) => { rec.error = String(e); throw e; });
  };
  const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.cmcdURL = method === 'POST' && isCMCD(url);
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function (body) {
    if (this.cmcdURL) {
      const rec = { body: String(body || ''), status: 0, answer: '', error: '' };
      window.cmcdPosts.push(rec);
      this.addEventListener('loadend', () => {
        rec.status = this.status;
        const r = this.response; // dash.js asks for an arraybuffer
        rec.answer = r instanceof ArrayBuffer ? new TextDecoder().decode(r) : String(r || '');
      });
      this.addEventListener('error', () => { rec.error = 'network error'; });
    }
    return send.apply(this, arguments);
  };
})();
