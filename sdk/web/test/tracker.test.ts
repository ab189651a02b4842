import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlayTracker } from '../src/tracker';

function rec() {
  const out: Array<{ t: string; ts: number; f: Record<string, unknown> }> = [];
  return { out, tr: new PlayTracker((t, ts, f) => out.push({ t, ts, f })) };
}

test('a play: start, first frame, two stalls, heartbeats, stop', () => {
  const { out, tr } = rec();
  tr.start(1000);
  tr.waiting(1100); // startup buffering is not a stall
  tr.firstFrame(1450, { tcp_first_packet_ms: 40 });
  tr.heartbeat(2000, { buffer_ms: 3000 });
  tr.waiting(3000, 120);
  tr.resumed(3800);
  tr.waiting(5000);
  tr.heartbeat(5500);
  tr.resumed(5700);
  tr.heartbeat(6000);
  tr.stop(9000);
  assert.deepEqual(out.map((e) => e.t),
    ['play_start', 'first_frame', 'heartbeat', 'stall', 'heartbeat', 'stall', 'heartbeat', 'play_stop']);
  assert.deepEqual(out[1].f, { total_ms: 450, tcp_first_packet_ms: 40 });
  assert.deepEqual(out[3].f, { duration_ms: 800, buffer_ms_before: 120 });
  assert.deepEqual(out[2].f, { interval_ms: 1000, stall_count: 0, stall_ms: 0, bytes: 0, state: 'playing', buffer_ms: 3000 });
  // The open stall counts its time so far; the next heartbeat only the rest.
  assert.equal(out[4].f.stall_ms, 800 + 500);
  assert.equal(out[4].f.state, 'stalled');
  assert.equal(out[6].f.stall_ms, 200);
  assert.equal(out[6].f.stall_count, 1);
  assert.equal(out[5].f.duration_ms, 700);
  assert.deepEqual(out[7].f, { code: 0, play_duration_ms: 8000, stall_count: 2, stall_total_ms: 1500, bytes: 0 });
});

test('stop during a stall reports the stall first; events after stop are ignored', () => {
  const { out, tr } = rec();
  tr.start(0);
  tr.firstFrame(100);
  tr.waiting(200);
  tr.stop(700, 2001, 'hls.js networkError: fragLoadError');
  tr.heartbeat(800);
  tr.start(900);
  assert.deepEqual(out.map((e) => e.t), ['play_start', 'first_frame', 'stall', 'play_stop']);
  assert.equal(out[2].f.duration_ms, 500);
  assert.equal(out[3].f.code, 2001);
  assert.equal(out[3].f.reason, 'hls.js networkError: fragLoadError');
  assert.equal(out[3].f.stall_total_ms, 500);
});

test('a waiting that ends in the same millisecond is not a stall', () => {
  const { out, tr } = rec();
  tr.start(0);
  tr.firstFrame(100);
  tr.waiting(150);
  tr.resumed(150);
  tr.stop(1000);
  assert.deepEqual(out.map((e) => e.t), ['play_start', 'first_frame', 'play_stop']);
  assert.equal(out[2].f.stall_count, 0);
});

test('pause is not a stall', () => {
  const { out, tr } = rec();
  tr.start(0);
  tr.firstFrame(100);
  tr.pause();
  tr.waiting(200);
  tr.resumed(5000);
  tr.stop(6000);
  assert.deepEqual(out.map((e) => e.t), ['play_start', 'first_frame', 'play_stop']);
  assert.equal(out[2].f.stall_count, 0);
});
