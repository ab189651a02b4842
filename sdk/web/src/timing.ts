// First-frame phases from Resource Timing: the first media request of the
// play (playlist, segment or FLV stream) after its start. Cross-origin
// entries carry the phases only when the edge sends Timing-Allow-Origin;
// without it they are zero and left out rather than reported as 0 ms.

import type { FirstFramePhases } from './tracker';

export interface TimingEntry {
  name: string;
  startTime: number;
  domainLookupStart: number;
  domainLookupEnd: number;
  connectStart: number;
  connectEnd: number;
  requestStart: number;
  responseStart: number;
  initiatorType?: string;
}

/**
 * phasesFrom picks the first entry at or after startedAt (performance.now()
 * time) whose URL the match accepts and reads its phases; firstFrameAt
 * bounds video_first_packet + first_render from its response to the frame.
 */
export function phasesFrom(entries: TimingEntry[], startedAt: number, firstFrameAt: number,
  match: (url: string) => boolean): FirstFramePhases {
  const e = entries.filter((x) => x.startTime >= startedAt - 1 && match(x.name))
    .sort((a, b) => a.startTime - b.startTime)[0];
  if (!e) return {};
  const p: FirstFramePhases = {};
  if (e.domainLookupEnd > 0 && e.domainLookupStart > 0) p.dns_ms = Math.round(e.domainLookupEnd - e.domainLookupStart);
  if (e.connectEnd > 0 && e.connectStart > 0) p.tcp_connect_ms = Math.round(e.connectEnd - e.connectStart);
  if (e.responseStart > 0 && e.requestStart > 0) p.tcp_first_packet_ms = Math.round(e.responseStart - e.requestStart);
  if (e.responseStart > 0 && firstFrameAt >= e.responseStart) p.first_render_ms = Math.round(firstFrameAt - e.responseStart);
  return p;
}

/** mediaURL accepts the requests a player makes for a stream. */
export function mediaURL(url: string): boolean {
  return /\.(m3u8|ts|m4s|mp4|flv|mpd)(\?|$)/.test(url) || url.includes('.flv');
}
