// lastmile browser SDK: one Session per play. See docs/players.md.

import { Reporter, type ReportPlan, type Env, type LEvent } from './reporter';
import { PlayTracker } from './tracker';
import { hookVideo } from './video';
import { hookHls, hookMpegts, codes, type HlsLike, type MpegtsLike } from './adapters';

export { Reporter, PlayTracker, hookVideo, hookHls, hookMpegts, codes };
export { unitDraw, keep } from './sampling';

export interface SessionOptions {
  /** Collector base URL (its POST /v1/events and GET /v1/config). */
  endpoint: string;
  appKey: string;
  /** The play's session id; default a random UUID. Give the same to CMCD (`sid`). */
  sessionId?: string;
  /** Default: a random id kept in localStorage. */
  deviceId?: string;
  /** Dimensions and ids sent with every event: room_id, stream_id, protocol, cdn, ... */
  fields?: Record<string, string>;
  heartbeatMs?: number;
  plan?: Partial<ReportPlan>;
  /** Fetch GET /v1/config and sample as the collector (default true). */
  sampling?: boolean;
  env?: Env;
  onEvent?: (e: LEvent) => void;
}

export class Session {
  readonly sessionId: string;
  readonly deviceId: string;
  readonly reporter: Reporter;
  readonly tracker: PlayTracker;
  private seq = 0;
  private detach: Array<() => void> = [];
  private extra: Array<() => Record<string, unknown>> = [];

  constructor(private readonly o: SessionOptions) {
    this.sessionId = o.sessionId ?? randomId();
    this.deviceId = o.deviceId ?? storedDeviceId();
    this.reporter = new Reporter({ endpoint: o.endpoint.replace(/\/$/, ''), appKey: o.appKey, plan: o.plan, env: o.env });
    if (o.sampling !== false) void this.reporter.loadSampling();
    this.tracker = new PlayTracker((logType, ts, f) => this.send(logType, ts, f));
    const hide = () => this.pageHidden();
    if (typeof addEventListener === 'function') {
      addEventListener('pagehide', hide);
      this.detach.push(() => removeEventListener('pagehide', hide));
    }
  }

  /**
   * cmcd is what to spread into hls.js's `cmcd` config (or dash.js's), so the
   * player's CMCD `sid` and `cid` are this session's.
   */
  cmcd(): { sessionId: string; contentId?: string } {
    return { sessionId: this.sessionId, contentId: this.o.fields?.room_id };
  }

  video(v: HTMLVideoElement): this {
    this.detach.push(hookVideo(v, this.tracker, {
      heartbeatMs: this.o.heartbeatMs ?? 10000,
      heartbeatFields: () => Object.assign({}, ...this.extra.map((f) => f())),
    }));
    return this;
  }

  hls(h: HlsLike): this { return this.adapter(hookHls(h, this.tracker)); }

  mpegts(p: MpegtsLike): this { return this.adapter(hookMpegts(p, this.tracker)); }

  /** stop ends the play (code 0: normal) and sends what waits. */
  stop(code = 0, reason = 'user_exit'): void {
    this.tracker.stop(Date.now(), code, reason);
    this.reporter.flush();
  }

  /** close stops the play and removes every hook. */
  close(): void {
    this.stop();
    for (const d of this.detach.splice(0)) d();
  }

  private adapter(a: { detach: () => void; fields: () => Record<string, unknown> }): this {
    this.detach.push(a.detach);
    this.extra.push(a.fields);
    return this;
  }

  private pageHidden(): void {
    this.tracker.stop(Date.now(), 0, 'pagehide');
    this.reporter.beacon();
  }

  private send(logType: string, ts: number, f: Record<string, unknown>): void {
    const e: LEvent = {
      ...this.o.fields, ...f, log_type: logType, ts,
      event_id: `${this.sessionId}-${++this.seq}`, session_id: this.sessionId, device_id: this.deviceId,
    };
    this.o.onEvent?.(e);
    this.reporter.add(e);
    // The start and the end of a play are worth a request of their own.
    if (logType === 'first_frame' || logType === 'play_stop') this.reporter.flush();
  }
}

export function createSession(o: SessionOptions): Session { return new Session(o); }

function randomId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return 'xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx'.replace(/x/g, () => Math.floor(Math.random() * 16).toString(16));
}

function storedDeviceId(): string {
  try {
    const k = 'lastmile.device_id';
    let id = localStorage.getItem(k);
    if (!id) { id = randomId(); localStorage.setItem(k, id); }
    return id;
  } catch {
    return randomId(); // storage blocked: one device per page load
  }
}
