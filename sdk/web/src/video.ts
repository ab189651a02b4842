// hookVideo follows an HTMLVideoElement's media events into a PlayTracker.

import type { PlayTracker } from './tracker';
import { phasesFrom, mediaURL, type TimingEntry } from './timing';

export interface VideoHookOptions {
  /** heartbeat period (ms); 0 turns heartbeats off. */
  heartbeatMs: number;
  /** extra heartbeat fields (bitrate, latency) from an adapter. */
  heartbeatFields?: () => Record<string, unknown>;
  /** which Resource Timing entries are the stream's (default: by extension). */
  matchURL?: (url: string) => boolean;
}

/** bufferMs is the media buffered ahead of the play head. */
export function bufferMs(v: HTMLVideoElement): number {
  const b = v.buffered;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= v.currentTime + 0.1 && v.currentTime <= b.end(i)) {
      return Math.round((b.end(i) - v.currentTime) * 1000);
    }
  }
  return 0;
}

/**
 * hookVideo returns the function that removes the hook. Time is wall-clock
 * ms (Date.now()) for events and performance.now() for Resource Timing.
 */
export function hookVideo(v: HTMLVideoElement, t: PlayTracker, o: VideoHookOptions): () => void {
  let perfStart = 0;
  let lastTime = -1;
  let seeking = false;
  const on: Record<string, () => void> = {
    play: () => {
      if (t.state === 'idle') {
        perfStart = performance.now();
        t.start(Date.now());
        // The first presented frame, where the browser says so; timeupdate
        // (the play head moved) is the fallback and may come up to 250 ms later.
        v.requestVideoFrameCallback?.(() => { if (t.state === 'starting') firstFrame(Date.now()); });
      } else t.resumed(Date.now()); // un-pause
    },
    // Before the first frame `playing` fires on buffering too: the frame is
    // shown once the play head moves (or a video frame callback says so).
    timeupdate: () => {
      const now = Date.now();
      if (v.currentTime !== lastTime && lastTime >= 0 && !v.paused) {
        if (t.state === 'starting') firstFrame(now);
        else if (t.state === 'stalled' && !seeking) t.resumed(now);
      }
      lastTime = v.currentTime;
    },
    playing: () => { if (t.state === 'stalled' && !seeking) t.resumed(Date.now()); },
    waiting: () => { if (!seeking && t.state === 'playing') t.waiting(Date.now(), bufferMs(v)); },
    pause: () => { if (!v.ended) t.pause(); },
    seeking: () => { seeking = true; },
    seeked: () => { seeking = false; },
    ended: () => t.stop(Date.now(), 0, 'ended'),
    error: () => {
      const e = v.error;
      t.stop(Date.now(), e ? 1000 + e.code : 1000, e?.message || 'media error');
    },
  };
  const firstFrame = (now: number) => {
    const entries = (performance.getEntriesByType('resource') as unknown as TimingEntry[]);
    const phases = phasesFrom(entries, perfStart, performance.now(), o.matchURL ?? mediaURL);
    t.firstFrame(now, phases);
  };
  for (const [ev, f] of Object.entries(on)) v.addEventListener(ev, f);
  if (!v.paused && t.state === 'idle') on.play();
  const hb = o.heartbeatMs > 0 ? setInterval(() => {
    t.heartbeat(Date.now(), { buffer_ms: bufferMs(v), ...(o.heartbeatFields?.() ?? {}) });
  }, o.heartbeatMs) : undefined;
  return () => {
    for (const [ev, f] of Object.entries(on)) v.removeEventListener(ev, f);
    if (hb !== undefined) clearInterval(hb);
  };
}
