/** Shared test utilities: seeded test data and tolerance checks. */

import assert from "node:assert/strict";
import { type Dataset, makeDataset } from "../core/data.ts";
import type { Device } from "../core/device.ts";
import type { ModelGraph } from "../core/graph.ts";
import { referenceDevice } from "../core/reference/device.ts";
import { randomKey, uniform } from "../core/rng.ts";
import type { Shape, Tensor } from "../core/tensor.ts";

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

/**
 * Random values in [-8, 8) with awkward ones mixed in: every 7th rounded to
 * an integer (ties in pools, 0 and 6 exactly), and when `special` a `-0`
 * every 29th, a 6 every 31st and a NaN second to last.
 */
export function awkwardValues(
  seed: number,
  count: number,
  special = true,
): Float32Array {
  const x = randomValues(seed, count, -8, 8);
  for (let i = 0; i < count; i++) {
    if (i % 7 === 3) x[i] = Math.round(x[i]);
    if (special && i % 29 === 5) x[i] = -0;
    if (special && i % 31 === 11) x[i] = 6;
  }
  if (special && count > 4) x[count - 2] = NaN;
  return x;
}

/** A tensor of `shape` with {@link randomValues} in [lo, hi), on `device`. */
export function randomTensor(
  seed: number,
  shape: Shape,
  lo = -1,
  hi = 1,
  device: Device = referenceDevice,
): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  return device.upload(randomValues(seed, count, lo, hi), shape);
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

/** Asserts two arrays agree to `atol + rtol * |expected|` element for element. */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  rtol = 1e-6,
  atol = 1e-7,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assertClose(actual[i], expected[i], rtol, atol, `${what}[${i}]`);
  }
}

/** A tiny model on 3x3 images: flatten, dense 9 -> 6 with a ReLU, dense 6 -> 3. */
export const TINY_3X3: ModelGraph = {
  name: "tiny",
  inputShape: [1, 3, 3],
  nodes: [
    { op: "flatten", name: "f", input: "input" },
    {
      op: "dense",
      name: "fc1",
      input: "f",
      outFeatures: 6,
      activation: "relu",
    },
    { op: "dense", name: "fc2", input: "fc1", outFeatures: 3 },
  ],
};

/**
 * A learnable synthetic 3-class problem on 3x3 images with pixels in
 * [-1, 1): the class is the row with the largest sum (ties to the later row).
 */
export function rowSumData(count: number, seed: number): Dataset {
  const images = uniform(randomKey(seed), count * 9).map((u) => 2 * u - 1);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const row = images.subarray(i * 9, i * 9 + 9);
    const a = row[0] + row[1] + row[2];
    const b = row[3] + row[4] + row[5];
    const c = row[6] + row[7] + row[8];
    labels[i] = a > b && a > c ? 0 : b > c ? 1 : 2;
  }
  return makeDataset(images, labels, [1, 3, 3]);
}

/** The first `n` images of a dataset as one batch `[n, ...shape]` on `device`. */
export function firstImages(
  data: Dataset,
  n: number,
  device: Device = referenceDevice,
): Tensor {
  const size = data.shape.reduce((a, b) => a * b, 1);
  return device.upload(data.images.slice(0, n * size), [n, ...data.shape]);
}

/**
 * Asserts two parameter records have the same names, shapes and elements,
 * bit for bit (on any device).
 */
export async function assertParamsBitwise(
  actual: Readonly<Record<string, Tensor>>,
  expected: Readonly<Record<string, Tensor>>,
  what = "parameters",
): Promise<void> {
  assert.deepEqual(
    Object.keys(actual).sort(),
    Object.keys(expected).sort(),
    `${what}: names`,
  );
  for (const name of Object.keys(expected)) {
    assert.deepEqual(
      actual[name].shape,
      expected[name].shape,
      `${what}: ${name}`,
    );
    assertBitwise(
      await actual[name].read(),
      await expected[name].read(),
      `${what}: ${name}`,
    );
  }
}
