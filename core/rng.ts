/**
 * Counter-based random numbers (Threefry-2x32, 20 rounds).
 *
 * Randomness in this library is an explicit argument: a {@link RandomKey} that
 * is split or folded, never a hidden global. The generator is counter based,
 * so element `i` of a stream depends only on the key and `i`; the same
 * stream is produced by this TypeScript code, the AssemblyScript kernel
 * (`asm/src/rng.ts`) and the WGSL kernel (`gpu/kernels/rng.ts`), bit for bit.
 *
 * Stream layout: element `i` of the stream of key `k` is word `i & 1` of
 * `threefry2x32(k, [i >>> 1, 0])`. Uniforms are `((bits >>> 9) + 0.5) / 2^23`,
 * which are exact float32 values strictly inside (0, 1).
 *
 * @module
 */

/** A generator key: two unsigned 32-bit words. Immutable by convention. */
export type RandomKey = readonly [number, number];

const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24] as const;
const KEY_PARITY = 0x1bd11bda;

/**
 * The Threefry-2x32 block function with 20 rounds (Salmon et al., SC 2011).
 *
 * @param key The two key words.
 * @param counter0 First counter word (unsigned 32-bit).
 * @param counter1 Second counter word (unsigned 32-bit).
 * @returns The two output words as unsigned 32-bit integers.
 *
 * @example
 * ```ts
 * import { threefry2x32 } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = threefry2x32([0, 0], 0, 0);
 * assert.equal(a, 0x6b200159);
 * assert.equal(b, 0x99ba4efe);
 * ```
 */
export function threefry2x32(
  key: RandomKey,
  counter0: number,
  counter1: number,
): [number, number] {
  const k0 = key[0] >>> 0;
  const k1 = key[1] >>> 0;
  const ks = [k0, k1, (k0 ^ k1 ^ KEY_PARITY) >>> 0];
  let x0 = (counter0 + k0) >>> 0;
  let x1 = (counter1 + k1) >>> 0;
  for (let round = 0; round < 20; round++) {
    const r = ROTATIONS[round & 7];
    x0 = (x0 + x1) >>> 0;
    x1 = ((x1 << r) | (x1 >>> (32 - r))) >>> 0;
    x1 = (x1 ^ x0) >>> 0;
    if ((round & 3) === 3) {
      const injection = (round + 1) >>> 2;
      x0 = (x0 + ks[injection % 3]) >>> 0;
      x1 = (x1 + ks[(injection + 1) % 3] + injection) >>> 0;
    }
  }
  return [x0, x1];
}

/**
 * Checks that a value is a {@link RandomKey}: two unsigned 32-bit integers.
 *
 * @param key The value to check.
 * @throws {TypeError} Naming the value, if it is not a key.
 *
 * @example
 * ```ts
 * import { assertRandomKey } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assertRandomKey([0, 42]);
 * assert.throws(() => assertRandomKey([1, 2, 3] as unknown as [number, number]), TypeError);
 * ```
 */
export function assertRandomKey(key: RandomKey): void {
  if (
    !Array.isArray(key) || key.length !== 2 ||
    !key.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)
  ) {
    throw new TypeError(
      `Invalid random key ${
        JSON.stringify(key)
      }: expected two unsigned 32-bit integers`,
    );
  }
}

/**
 * Makes a key from an integer seed.
 *
 * @param seed A non-negative safe integer.
 * @returns The key `[high 32 bits, low 32 bits]` of the seed.
 * @throws {RangeError} If `seed` is not a non-negative safe integer.
 *
 * @example
 * ```ts
 * import { randomKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(randomKey(42), [0, 42]);
 * ```
 */
export function randomKey(seed: number): RandomKey {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(
      `Cannot make a random key from seed ${seed}: the seed must be a non-negative safe integer`,
    );
  }
  return [Math.floor(seed / 2 ** 32) >>> 0, seed >>> 0];
}

/**
 * Splits a key into `count` independent keys.
 *
 * @param key The parent key.
 * @param count How many keys to make (default 2).
 * @returns `count` new keys; the parent should not be used again.
 *
 * @example
 * ```ts
 * import { randomKey, splitKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = splitKey(randomKey(0));
 * assert.notDeepEqual(a, b);
 * ```
 */
export function splitKey(key: RandomKey, count = 2): RandomKey[] {
  assertRandomKey(key);
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`Cannot split a key into ${count} keys`);
  }
  const keys: RandomKey[] = [];
  for (let i = 0; i < count; i++) keys.push(threefry2x32(key, i, 1));
  return keys;
}

/**
 * Derives a new key from a key and an integer, e.g. a training step.
 *
 * @param key The parent key.
 * @param data An unsigned 32-bit integer.
 * @returns A key that depends on both.
 *
 * @example
 * ```ts
 * import { randomKey } from "@bbits/core";
 * import { foldIn } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.notDeepEqual(foldIn(randomKey(1), 0), foldIn(randomKey(1), 1));
 * ```
 */
export function foldIn(key: RandomKey, data: number): RandomKey {
  assertRandomKey(key);
  if (!Number.isInteger(data) || data < 0 || data > 0xffffffff) {
    throw new RangeError(
      `Cannot fold ${data} into a key: expected an unsigned 32-bit integer`,
    );
  }
  return threefry2x32(key, data, 2);
}

/**
 * Element `index` of the raw 32-bit stream of `key`.
 *
 * @param key The key.
 * @param index Position in the stream, `0 <= index < 2^33`.
 * @returns An unsigned 32-bit integer.
 *
 * @example
 * ```ts
 * import { randomBits, threefry2x32 } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(randomBits([0, 0], 1), threefry2x32([0, 0], 0, 0)[1]);
 * ```
 */
export function randomBits(key: RandomKey, index: number): number {
  const block = Math.floor(index / 2);
  return threefry2x32(key, block >>> 0, 0)[index & 1];
}

/**
 * Converts 32 random bits into a float32-exact uniform in (0, 1).
 *
 * @param bits An unsigned 32-bit integer.
 * @returns `((bits >>> 9) + 0.5) / 2^23`.
 *
 * @example
 * ```ts
 * import { bitsToUniform } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(bitsToUniform(0), 2 ** -24);
 * assert.equal(bitsToUniform(0xffffffff), 1 - 2 ** -24);
 * ```
 */
export function bitsToUniform(bits: number): number {
  return ((bits >>> 9) + 0.5) * 2 ** -23;
}

/**
 * Checks the arguments of a draw from a key's uniform stream, as every
 * device's generator does before drawing.
 *
 * @param key The key.
 * @param count Uniforms to draw (a non-negative integer).
 * @param offset Stream position of the first (a non-negative integer; the
 *   draw must end within 2^33).
 * @throws {RangeError} On a bad key, count or offset.
 */
export function checkUniformDraw(
  key: RandomKey,
  count: number,
  offset: number,
): void {
  assertRandomKey(key);
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(
      `Cannot draw ${count} uniforms: count must be a non-negative integer`,
    );
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + count > 2 ** 33) {
    throw new RangeError(
      `Cannot draw from stream offset ${offset}: out of range`,
    );
  }
}

/**
 * Fills a new array with uniforms in (0, 1) from elements `offset ..
 * offset + count - 1` of the stream of `key`.
 *
 * @param key The key.
 * @param count How many numbers.
 * @param offset First stream position (default 0).
 * @returns A new Float32Array of `count` uniforms.
 * @throws {RangeError} On a bad count or offset.
 *
 * @example
 * ```ts
 * import { randomKey } from "@bbits/core";
 * import { uniform } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const u = uniform(randomKey(7), 1000);
 * assert.ok(u.every((v) => v > 0 && v < 1));
 * ```
 */
export function uniform(
  key: RandomKey,
  count: number,
  offset = 0,
): Float32Array {
  checkUniformDraw(key, count, offset);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = bitsToUniform(randomBits(key, offset + i));
  }
  return out;
}
