// Reporter batches events and posts them to the collector's POST /v1/events,
// retrying with backoff; on page hide it hands what is left to sendBeacon.

import { keep, type SamplingConfig } from './sampling';

export type LEvent = Record<string, unknown> & { log_type: string; ts: number };

/** How the reporter batches and retries: one visible plan. */
export interface ReportPlan {
  /** Send once this many events wait. */
  maxBatch: number;
  /** Send what waits at least this often (ms). */
  flushMs: number;
  /** First retry delay (ms); doubled each failure up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** Give a batch up after this many failed tries. */
  maxTries: number;
  /** Drop the oldest events beyond this many waiting (a long outage). */
  maxQueue: number;
}

export const defaultPlan: ReportPlan = {
  maxBatch: 50, flushMs: 5000, backoffMs: 1000, maxBackoffMs: 30000, maxTries: 8, maxQueue: 2000,
};

/** What the reporter needs from the page; tests pass fakes. */
export interface Env {
  fetch: (url: string, init: RequestInit) => Promise<{ status: number; headers: { get(n: string): string | null } }>;
  sendBeacon?: (url: string, data: Blob) => boolean;
  setTimeout: (f: () => void, ms: number) => unknown;
  clearTimeout: (t: unknown) => void;
}

export interface ReporterOptions {
  /** Collector base URL, e.g. https://collector.example.com */
  endpoint: string;
  appKey: string;
  plan?: Partial<ReportPlan>;
  env?: Env;
  /** Called with each answer or error, for debugging. */
  onResult?: (r: { status?: number; sent: number; error?: unknown; dropped?: number }) => void;
}

export class Reporter {
  readonly plan: ReportPlan;
  private queue: LEvent[] = [];
  private inflight: LEvent[] | null = null;
  private tries = 0;
  private timer: unknown = null;
  private timerAt = 0;
  private sampling?: SamplingConfig;
  private readonly env: Env;
  private closed = false;

  constructor(private readonly opts: ReporterOptions) {
    this.plan = { ...defaultPlan, ...opts.plan };
    this.env = opts.env ?? browserEnv();
  }

  /** setSampling applies the collector's GET /v1/config. */
  setSampling(cfg: SamplingConfig | undefined): void { this.sampling = cfg; }

  /** loadSampling fetches GET /v1/config; without it every event is sent. */
  async loadSampling(): Promise<void> {
    try {
      const r = await this.env.fetch(this.opts.endpoint + '/v1/config', { method: 'GET' }) as unknown as Response;
      if (r.status === 200 && typeof r.json === 'function') this.sampling = await r.json() as SamplingConfig;
    } catch { /* the collector samples anyway */ }
  }

  /** pending is the number of events not yet acknowledged. */
  get pending(): number { return this.queue.length + (this.inflight?.length ?? 0); }

  add(ev: LEvent): void {
    const sid = String(ev.session_id ?? ev.device_id ?? '');
    const failure = ev.log_type === 'play_stop' && Number(ev.code ?? 0) !== 0;
    if (!keep(this.sampling, ev.log_type, sid, failure)) return;
    this.queue.push(ev);
    if (this.queue.length > this.plan.maxQueue) {
      const n = this.queue.length - this.plan.maxQueue;
      this.queue.splice(0, n);
      this.opts.onResult?.({ sent: 0, dropped: n });
    }
    // While a send is out or backing off, its timer decides when the next is.
    if (this.inflight || this.tries > 0) return;
    if (this.queue.length >= this.plan.maxBatch) this.schedule(0);
    else this.schedule(this.plan.flushMs);
  }

  /** flush sends what waits now, unless a send is out or backing off. */
  flush(): void { if (!this.inflight && this.tries === 0) this.schedule(0); }

  /**
   * beacon hands every unacknowledged event to sendBeacon (page hide): the
   * page may be gone before a fetch answers. A beacon cannot carry a header,
   * so the key goes in the query and the body as text/plain NDJSON (no
   * preflight). Returns whether the browser took them.
   */
  beacon(): boolean {
    const evs = [...(this.inflight ?? []), ...this.queue];
    if (evs.length === 0) return true;
    const body = evs.map((e) => JSON.stringify(e)).join('\n');
    const url = `${this.opts.endpoint}/v1/events?key=${encodeURIComponent(this.opts.appKey)}`;
    let ok = false;
    if (this.env.sendBeacon) ok = this.env.sendBeacon(url, new Blob([body], { type: 'text/plain' }));
    if (!ok) {
      // keepalive fetch outlives the page too and carries the header.
      void this.env.fetch(this.opts.endpoint + '/v1/events', {
        method: 'POST', keepalive: true, body,
        headers: { 'Content-Type': 'application/x-ndjson', 'X-Lastmile-Key': this.opts.appKey },
      }).catch(() => undefined);
      ok = true;
    }
    this.queue = [];
    return ok;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) this.env.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    const at = Date.now() + ms;
    if (this.timer !== null) {
      if (this.timerAt <= at) return;
      this.env.clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = this.env.setTimeout(() => { this.timer = null; void this.send(); }, ms);
  }

  private async send(): Promise<void> {
    if (this.inflight || this.queue.length === 0) return;
    this.inflight = this.queue.splice(0, this.plan.maxBatch);
    const batch = this.inflight;
    let status: number | undefined;
    let retryAfter: number | undefined;
    try {
      const r = await this.env.fetch(this.opts.endpoint + '/v1/events', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Lastmile-Key': this.opts.appKey },
        body: JSON.stringify(batch),
      });
      status = r.status;
      const ra = Number(r.headers.get('Retry-After'));
      if (ra > 0) retryAfter = ra * 1000;
    } catch (error) {
      this.opts.onResult?.({ sent: 0, error });
    }
    this.inflight = null;
    if (status !== undefined) this.opts.onResult?.({ status, sent: batch.length });
    if (status !== undefined && !retryable(status)) {
      // 200 (per-event rejects are final) or a 4xx that a retry cannot fix.
      this.tries = 0;
      if (this.queue.length > 0) this.schedule(this.queue.length >= this.plan.maxBatch ? 0 : this.plan.flushMs);
      return;
    }
    this.tries++;
    if (this.tries >= this.plan.maxTries) {
      this.tries = 0;
      this.opts.onResult?.({ status, sent: 0, dropped: batch.length });
      if (this.queue.length > 0) this.schedule(this.plan.flushMs);
      return;
    }
    // Back in front, in order; event_id makes a resent event a duplicate the store drops.
    this.queue.unshift(...batch);
    this.schedule(Math.max(retryAfter ?? 0, backoff(this.plan, this.tries)));
  }
}

/** retryable: the collector's answers that a later try may turn into 200. */
export function retryable(status: number): boolean {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

/** backoff before try n+1 after n failures: doubling, capped. */
export function backoff(p: ReportPlan, failures: number): number {
  return Math.min(p.maxBackoffMs, p.backoffMs * 2 ** (failures - 1));
}

function browserEnv(): Env {
  const g = globalThis as unknown as { navigator?: Navigator };
  return {
    fetch: (u, i) => fetch(u, i),
    sendBeacon: g.navigator?.sendBeacon ? (u, d) => g.navigator!.sendBeacon(u, d) : undefined,
    setTimeout: (f, ms) => setTimeout(f, ms),
    clearTimeout: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
  };
}
