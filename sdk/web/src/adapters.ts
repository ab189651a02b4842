// Thin adapters: what hls.js and mpegts.js know that the <video> element does
// not (bytes, bitrate, fatal errors with their names). Structural types keep
// the SDK free of both libraries.

import type { PlayTracker } from './tracker';

export interface HlsLike {
  on(event: string, f: (event: string, data: any) => void): void;
  off?(event: string, f: (event: string, data: any) => void): void;
  levels?: Array<{ bitrate?: number }>;
  currentLevel?: number;
  latency?: number;
}

/** Error codes of play_stop: 1000+MediaError.code for the element, these for players. */
export const codes = { hlsFatal: 2001, mpegtsError: 2101 } as const;

export function hookHls(hls: HlsLike, t: PlayTracker): { detach: () => void; fields: () => Record<string, unknown> } {
  const onFrag = (_: string, d: any) => t.addBytes(Number(d?.frag?.stats?.loaded ?? d?.payload?.byteLength ?? 0));
  const onError = (_: string, d: any) => {
    if (d?.fatal) t.stop(Date.now(), codes.hlsFatal, `hls.js ${d.type}: ${d.details}`);
  };
  hls.on('hlsFragLoaded', onFrag);
  hls.on('hlsError', onError);
  return {
    detach: () => { hls.off?.('hlsFragLoaded', onFrag); hls.off?.('hlsError', onError); },
    fields: () => {
      const f: Record<string, unknown> = {};
      const lv = hls.levels?.[hls.currentLevel ?? -1];
      if (lv?.bitrate) f.bitrate_kbps = lv.bitrate / 1000;
      if (typeof hls.latency === 'number' && hls.latency > 0) f.latency_ms = Math.round(hls.latency * 1000);
      return f;
    },
  };
}

export interface MpegtsLike {
  on(event: string, f: (...a: any[]) => void): void;
  off?(event: string, f: (...a: any[]) => void): void;
}

export function hookMpegts(p: MpegtsLike, t: PlayTracker): { detach: () => void; fields: () => Record<string, unknown> } {
  let kbps = 0;
  let lastAt = 0;
  const onStats = (s: any) => {
    const now = Date.now();
    const speed = Number(s?.speed ?? 0); // KB/s over the last second
    if (lastAt > 0 && speed > 0) t.addBytes(Math.round(speed * 1024 * (now - lastAt) / 1000));
    lastAt = now;
    kbps = speed * 8 * 1.024;
  };
  const onError = (type: string, detail: string, info?: any) => {
    t.stop(Date.now(), codes.mpegtsError, `mpegts.js ${type}: ${detail}${info?.msg ? ` (${info.msg})` : ''}`);
  };
  p.on('statistics_info', onStats);
  p.on('error', onError);
  return {
    detach: () => { p.off?.('statistics_info', onStats); p.off?.('error', onError); },
    fields: () => (kbps > 0 ? { bitrate_kbps: Math.round(kbps) } : {}),
  };
}
