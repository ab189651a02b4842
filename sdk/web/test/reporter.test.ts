import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reporter, backoff, defaultPlan, type Env } from '../src/reporter';

// A fake page: timers run when the test says, fetch answers from a script.
function fakeEnv(answers: Array<number | 'throw'>) {
  const timers: Array<{ f: () => void; ms: number; id: number }> = [];
  const posts: Array<{ url: string; body: unknown[] }> = [];
  const beacons: Array<{ url: string; body: string }> = [];
  let id = 0;
  const env: Env = {
    fetch: async (url, init) => {
      posts.push({ url, body: JSON.parse(String(init.body)) });
      const a = answers.shift() ?? 200;
      if (a === 'throw') throw new TypeError('Failed to fetch');
      return { status: a, headers: { get: (n: string) => (a === 429 && n === 'Retry-After' ? '7' : null) } };
    },
    sendBeacon: (url, data) => { void data.text().then((t) => beacons.push({ url, body: t })); return true; },
    setTimeout: (f, ms) => { timers.push({ f, ms, id: ++id }); return id; },
    clearTimeout: (t) => { const i = timers.findIndex((x) => x.id === t); if (i >= 0) timers.splice(i, 1); },
  };
  const tick = async () => {
    const t = timers.shift();
    assert.ok(t, 'a timer is set');
    t.f();
    await new Promise((r) => setImmediate(r));
    return t.ms;
  };
  return { env, posts, beacons, timers, tick };
}

const ev = (n: number) => ({ log_type: 'heartbeat', ts: n, session_id: 's', event_id: `s-${n}` });

test('batches: maxBatch at once, the rest after flushMs', async () => {
  const f = fakeEnv([]);
  const r = new Reporter({ endpoint: 'http://c', appKey: 'k', env: f.env, plan: { maxBatch: 3, flushMs: 5000 } });
  for (let i = 1; i <= 4; i++) r.add(ev(i));
  assert.equal(await f.tick(), 0);
  assert.deepEqual(f.posts[0].body.map((e: any) => e.ts), [1, 2, 3]);
  assert.equal(f.posts[0].url, 'http://c/v1/events');
  assert.equal(await f.tick(), 5000);
  assert.deepEqual(f.posts[1].body.map((e: any) => e.ts), [4]);
  assert.equal(r.pending, 0);
});

test('retries with doubling backoff on network error and 5xx, Retry-After on 429, in order', async () => {
  const f = fakeEnv(['throw', 503, 429, 200]);
  const r = new Reporter({ endpoint: 'http://c', appKey: 'k', env: f.env, plan: { maxBatch: 2, backoffMs: 1000 } });
  r.add(ev(1)); r.add(ev(2));
  assert.equal(await f.tick(), 0);
  assert.equal(await f.tick(), 1000); // after 1 failure
  assert.equal(await f.tick(), 2000); // after 2
  r.add(ev(3));
  assert.equal(await f.tick(), 7000); // Retry-After 7 s beats the 4 s backoff
  assert.equal(f.posts.length, 4);
  for (const p of f.posts) assert.deepEqual(p.body.map((e: any) => e.ts), [1, 2]);
  assert.equal(r.pending, 1);
});

test('a 400 is not retried; giving up after maxTries drops the batch', async () => {
  const f = fakeEnv([400, 500, 500]);
  const r = new Reporter({ endpoint: 'http://c', appKey: 'k', env: f.env, plan: { maxBatch: 1, maxTries: 2 } });
  r.add(ev(1));
  await f.tick();
  assert.equal(r.pending, 0);
  r.add(ev(2));
  await f.tick();
  await f.tick();
  assert.equal(f.posts.length, 3);
  assert.equal(r.pending, 0);
  assert.equal(f.timers.length, 0);
});

test('backoff doubles up to the cap', () => {
  const p = { ...defaultPlan, backoffMs: 1000, maxBackoffMs: 5000 };
  assert.deepEqual([1, 2, 3, 4].map((n) => backoff(p, n)), [1000, 2000, 4000, 5000]);
});

test('beacon sends everything unacknowledged as NDJSON with the key in the query', async () => {
  const f = fakeEnv([]);
  const r = new Reporter({ endpoint: 'http://c', appKey: 'k y', env: f.env });
  r.add(ev(1)); r.add(ev(2));
  assert.equal(r.beacon(), true);
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(f.beacons.length, 1);
  assert.equal(f.beacons[0].url, 'http://c/v1/events?key=k%20y');
  assert.deepEqual(f.beacons[0].body.split('\n').map((l) => JSON.parse(l).ts), [1, 2]);
  assert.equal(r.pending, 0);
});

test('sampling: a session the config drops sends no heartbeat but its failure', async () => {
  const f = fakeEnv([]);
  const r = new Reporter({ endpoint: 'http://c', appKey: 'k', env: f.env, plan: { maxBatch: 1 } });
  r.setSampling({ seed: 11, default_rate: 1, rates: { heartbeat: 0, play_stop: 0 } });
  r.add(ev(1));
  r.add({ log_type: 'play_stop', ts: 2, session_id: 's', code: 0 });
  assert.equal(r.pending, 0);
  r.add({ log_type: 'play_stop', ts: 3, session_id: 's', code: 2001 });
  assert.equal(r.pending, 1);
});
