// The page's own account of the play, independent of any SDK: the test reads
// window.obs. Times are Date.now() ms.
window.obs = { errors: [], waits: [], seeks: [], startedAt: 0, firstFrameAt: 0, time: 0, waitingNow: false };
function observe(v) {
  const o = window.obs;
  let openAt = 0;
  const close = () => {
    if (!o.waitingNow) return;
    o.waitingNow = false;
    // waiting then playing in the same millisecond: nothing was seen to stop.
    if (Date.now() > openAt) o.waits.push({ at: openAt, end: Date.now(), ms: Date.now() - openAt });
  };
  // A player's seek (hls.js jumps to the live edge, nudges over a gap) makes
  // the element wait too; that wait is the seek's, not a stall.
  v.addEventListener('seeking', () => o.seeks.push(Date.now()));
  v.addEventListener('waiting', () => {
    if (!o.firstFrameAt || o.waitingNow || v.seeking) return; // startup buffering is not a stall
    o.waitingNow = true; openAt = Date.now();
  });
  v.addEventListener('playing', close);
  let last = -1;
  v.addEventListener('timeupdate', () => {
    if (last >= 0 && v.currentTime !== last) close();
    last = v.currentTime; o.time = v.currentTime;
  });
  v.addEventListener('error', () => o.errors.push('video: ' + (v.error && (v.error.code + ' ' + v.error.message))));
  o.startedAt = Date.now();
  v.requestVideoFrameCallback(() => { o.firstFrameAt = Date.now(); });
}
window.addEventListener('error', (e) => window.obs.errors.push('page: ' + e.message));
