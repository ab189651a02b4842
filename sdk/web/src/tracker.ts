// PlayTracker is the play's state machine: it turns what a player reports
// (start, first frame, buffer empty, playing again, stop) into catalog events.
// It keeps no timers of its own; the caller passes the time, so tests drive it.

export type State = 'idle' | 'starting' | 'playing' | 'stalled' | 'paused' | 'stopped';

export interface FirstFramePhases {
  dns_ms?: number;
  tcp_connect_ms?: number;
  tcp_first_packet_ms?: number;
  video_first_packet_ms?: number;
  first_decode_ms?: number;
  first_render_ms?: number;
  server_ip?: string;
  edge_cached?: boolean;
}

export type Emit = (logType: string, ts: number, fields: Record<string, unknown>) => void;

export class PlayTracker {
  state: State = 'idle';
  startAt = 0;
  firstFrameAt = 0;
  stallCount = 0;
  stallTotalMs = 0;
  bytes = 0;
  private stallAt = 0;
  private bufferBeforeStall: number | undefined;
  private hb = { at: 0, stallCount: 0, stallMs: 0, bytes: 0 };

  constructor(private readonly emit: Emit) {}

  /** start: the user asked to play (play_start). Repeated calls are ignored. */
  start(now: number, fields: Record<string, unknown> = {}): void {
    if (this.state !== 'idle') return;
    this.state = 'starting';
    this.startAt = now;
    this.hb.at = now;
    this.emit('play_start', now, fields);
  }

  /** firstFrame: the first frame was shown; total_ms runs from start. */
  firstFrame(now: number, phases: FirstFramePhases = {}): void {
    if (this.state !== 'starting') return;
    this.state = 'playing';
    this.firstFrameAt = now;
    this.emit('first_frame', now, { total_ms: Math.max(0, now - this.startAt), ...phases });
  }

  /**
   * waiting: playback stopped for want of data. Before the first frame it is
   * startup, not a stall; while paused or seeking the caller does not call.
   */
  waiting(now: number, bufferMs?: number): void {
    if (this.state !== 'playing') return;
    this.state = 'stalled';
    this.stallAt = now;
    this.bufferBeforeStall = bufferMs;
  }

  /** resumed: frames advance again; a stall ends here and is reported. */
  resumed(now: number): void {
    if (this.state === 'paused') { this.state = 'playing'; return; }
    if (this.state !== 'stalled') return;
    this.state = 'playing';
    const d = Math.max(0, now - this.stallAt);
    // `waiting` then `playing` in the same millisecond: nothing a viewer saw.
    if (d === 0) return;
    this.stallCount++;
    this.stallTotalMs += d;
    const f: Record<string, unknown> = { duration_ms: d };
    if (this.bufferBeforeStall !== undefined) f.buffer_ms_before = this.bufferBeforeStall;
    this.emit('stall', now, f);
  }

  pause(): void { if (this.state === 'playing') this.state = 'paused'; }

  addBytes(n: number): void { if (n > 0) this.bytes += n; }

  /** heartbeat while a play is on: counters since the previous one. */
  heartbeat(now: number, fields: Record<string, unknown> = {}): void {
    if (this.state === 'idle' || this.state === 'stopped') return;
    const openStall = this.state === 'stalled' ? now - this.stallAt : 0;
    const state = this.state === 'starting' ? '' : this.state;
    this.emit('heartbeat', now, {
      interval_ms: Math.max(0, now - this.hb.at),
      stall_count: this.stallCount - this.hb.stallCount,
      stall_ms: Math.max(0, this.stallTotalMs + openStall - this.hb.stallMs),
      bytes: this.bytes - this.hb.bytes,
      state,
      ...fields,
    });
    this.hb = { at: now, stallCount: this.stallCount, stallMs: this.stallTotalMs + openStall, bytes: this.bytes };
  }

  /**
   * stop ends the play: code 0 is a normal stop. A stall still open is
   * reported first, so its time is not lost.
   */
  stop(now: number, code = 0, reason = '', fields: Record<string, unknown> = {}): void {
    if (this.state === 'idle' || this.state === 'stopped') return;
    if (this.state === 'stalled') this.resumed(now);
    const f: Record<string, unknown> = {
      code, play_duration_ms: Math.max(0, now - this.startAt),
      stall_count: this.stallCount, stall_total_ms: this.stallTotalMs, bytes: this.bytes, ...fields,
    };
    if (reason) f.reason = reason.slice(0, 256);
    this.state = 'stopped';
    this.emit('play_stop', now, f);
  }
}
