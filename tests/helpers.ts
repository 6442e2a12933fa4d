/** Shared test utilities: a seeded test-data generator and tolerance checks. */

import assert from "node:assert/strict";
import { randomKey, uniform } from "../mod.ts";

/** `count` float32 values uniformly in [lo, hi), from a seed. */
export function randomValues(
  seed: number,
  count: number,
  lo = -1,
  hi = 1,
): Float32Array {
  const u = uniform(randomKey(seed), count);
  return u.map((v) => Math.fround(lo + (hi - lo) * v));
}

/** Asserts `|actual - expected| <= atol + rtol * |expected|`. */
export function assertClose(
  actual: number,
  expected: number,
  rtol: number,
  atol = 0,
  what = "",
): void {
  const err = Math.abs(actual - expected);
  assert.ok(
    err <= atol + rtol * Math.abs(expected),
    `${what}: got ${actual}, expected ${expected} (error ${err}, rtol ${rtol}, atol ${atol})`,
  );
}

/** Asserts two arrays are equal element for element, bit for bit (-0 differs from +0). */
export function assertBitwise(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what = "",
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`,
      );
    }
  }
}
