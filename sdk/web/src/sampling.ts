// The collector's sampling decision (GET /v1/config), ported so that the SDK
// spares the upload of events the collector would drop. The config's `check`
// draws let a test prove the port decides as the collector does.

const M64 = (1n << 64n) - 1n;
const P1 = 11400714785074694791n;
const P2 = 14029467366897019727n;
const P3 = 1609587929392839161n;
const P4 = 9650029242287828579n;
const P5 = 2870177450012600261n;

const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M64;
const mul = (a: bigint, b: bigint): bigint => (a * b) & M64;

function u64(b: Uint8Array, i: number): bigint {
  let v = 0n;
  for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(b[i + k]);
  return v;
}

function u32(b: Uint8Array, i: number): bigint {
  return BigInt((b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0);
}

function round(acc: bigint, input: bigint): bigint {
  return mul(rotl((acc + mul(input, P2)) & M64, 31n), P1);
}

function merge(acc: bigint, v: bigint): bigint {
  return ((mul(acc ^ round(0n, v), P1)) + P4) & M64;
}

/** XXH64 with seed 0, as the collector hashes ids. */
export function xxh64(b: Uint8Array): bigint {
  const n = b.length;
  let i = 0;
  let h: bigint;
  if (n >= 32) {
    let v1 = (P1 + P2) & M64, v2 = P2, v3 = 0n, v4 = (M64 + 1n - P1) & M64;
    for (; i + 32 <= n; i += 32) {
      v1 = round(v1, u64(b, i));
      v2 = round(v2, u64(b, i + 8));
      v3 = round(v3, u64(b, i + 16));
      v4 = round(v4, u64(b, i + 24));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M64;
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = P5;
  }
  h = (h + BigInt(n)) & M64;
  for (; i + 8 <= n; i += 8) h = (mul(rotl(h ^ round(0n, u64(b, i)), 27n), P1) + P4) & M64;
  if (i + 4 <= n) {
    h = (mul(rotl(h ^ mul(u32(b, i), P1), 23n), P2) + P3) & M64;
    i += 4;
  }
  for (; i < n; i++) h = mul(rotl(h ^ mul(BigInt(b[i]), P5), 11n), P1);
  h = mul(h ^ (h >> 33n), P2);
  h = mul(h ^ (h >> 29n), P3);
  return h ^ (h >> 32n);
}

function splitmix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & M64;
  z = mul(z ^ (z >> 30n), 0xbf58476d1ce4e5b9n);
  z = mul(z ^ (z >> 27n), 0x94d049bb133111ebn);
  return z ^ (z >> 31n);
}

/** The unit's draw u in [0, 1): kept at rate r exactly when u < r. */
export function unitDraw(seed: number | bigint, id: string): number {
  const h = splitmix64(xxh64(new TextEncoder().encode(id)) ^ splitmix64(BigInt(seed) & M64));
  return Number(h >> 11n) / 2 ** 53;
}

/** The part of GET /v1/config the SDK uses. */
export interface SamplingConfig {
  seed: number;
  default_rate: number;
  rates: Record<string, number>;
}

/**
 * keep reports whether the collector would keep an event of logType of the
 * session: failures (play_stop with code != 0) are always kept.
 */
export function keep(cfg: SamplingConfig | undefined, logType: string, sessionId: string, failure: boolean): boolean {
  if (!cfg) return true; // no config yet: the collector decides
  const rate = cfg.rates?.[logType] ?? cfg.default_rate ?? 1;
  if (rate >= 1 || failure) return true;
  if (rate <= 0) return false;
  return unitDraw(cfg.seed, sessionId) < rate;
}
