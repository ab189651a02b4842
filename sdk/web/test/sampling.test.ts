import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xxh64, unitDraw, keep } from '../src/sampling';

// Known XXH64 (seed 0) values from the reference implementation.
test('xxh64 matches the reference', () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  assert.equal(xxh64(enc('')), 0xef46db3751d8e999n);
  assert.equal(xxh64(enc('a')), 0xd24ec4f1a98c6e5bn);
  assert.equal(xxh64(enc('abc')), 0x44bc2cf5ad770999n);
});

// Draws printed by the collector's GET /v1/config "check" under seed 11
// (sampling.Unit in Go), for ids of every length class of the hash.
test('unitDraw decides as the collector', async () => {
  const { readFileSync } = await import('node:fs');
  const check = JSON.parse(readFileSync(new URL('../test/check-seed11.json', import.meta.url), 'utf8'));
  for (const [id, u] of Object.entries(check)) {
    assert.equal(unitDraw(11, id), u, `id ${JSON.stringify(id)}`);
  }
});

test('keep: rate 1 keeps, rate 0 drops, failures always kept', () => {
  const cfg = { seed: 11, default_rate: 1, rates: { heartbeat: 0, first_frame: 0.5 } };
  assert.equal(keep(cfg, 'play_start', 's', false), true);
  assert.equal(keep(cfg, 'heartbeat', 's', false), false);
  assert.equal(keep(cfg, 'heartbeat', 's', true), true);
  assert.equal(keep(undefined, 'heartbeat', 's', false), true);
  const u = unitDraw(11, 'session-1');
  assert.equal(keep(cfg, 'first_frame', 'session-1', false), u < 0.5);
});
