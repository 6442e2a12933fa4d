/**
 * Image-classification datasets in memory: pixel normalisation, seeded
 * shuffling and mini-batches.
 *
 * A {@link Dataset} holds `count` images of shape `[C, H, W]` as one
 * Float32Array, image after image, each image channel-major (NCHW, the
 * layout of PyTorch), and one integer label per image.
 *
 * Randomness is an explicit {@link RandomKey}: the same key gives the same
 * order on every machine.
 *
 * @module
 */

import { assertRandomKey, randomBits, type RandomKey } from "./rng.ts";

/**
 * How raw 8-bit pixels `x` in 0..255 become network inputs.
 *
 * - `"mnist-standard"` (the default): `(x / 255 - 0.1307) / 0.3081`, the
 *   MNIST training-set mean and standard deviation. This is the
 *   preprocessing of the PyTorch MNIST reference pipelines that quantization
 *   papers (Bayesian Bits' LeNet-5 experiments among them) train with, so
 *   their learning rates and initialisations carry over; inputs have mean
 *   about 0 and standard deviation about 1, in [-0.4242, 2.8215].
 * - `"unit"`: `x / 255`, in [0, 1]: non-negative inputs, e.g. for an
 *   unsigned input quantizer.
 * - `{ mean, std }`: `(x / 255 - mean) / std`, a data set's own statistics
 *   on the 0..1 scale (e.g. Fashion-MNIST's, see {@link pixelStatistics}).
 */
export type Normalization =
  | "mnist-standard"
  | "unit"
  | { readonly mean: number; readonly std: number };

/** The MNIST training-set pixel mean, on the 0..1 scale. */
export const MNIST_MEAN = 0.1307;

/** The MNIST training-set pixel standard deviation, on the 0..1 scale. */
export const MNIST_STD = 0.3081;

/** The normalisation used when none is named: `"mnist-standard"`. */
export const DEFAULT_NORMALIZATION: Normalization = "mnist-standard";

/** The shape of one image: `[channels, height, width]`. */
export type ImageShape = readonly [number, number, number];

/** Images and their labels. Treat it as immutable. */
export interface Dataset {
  /** `count * C * H * W` values, image after image, each `[C, H, W]` row-major. */
  readonly images: Float32Array;
  /** One class label per image. */
  readonly labels: Int32Array;
  /** The shape of one image, `[C, H, W]`. */
  readonly shape: ImageShape;
  /** The number of images. */
  readonly count: number;
}

/** A mini-batch: copies of some images and labels of a dataset. */
export interface Batch {
  /** `size * C * H * W` values, in the layout of {@link Dataset.images}. */
  readonly images: Float32Array;
  /** `size` labels. */
  readonly labels: Int32Array;
  /** The dataset index of each image of the batch. */
  readonly indices: Int32Array;
  /** The number of images in the batch. */
  readonly size: number;
}

/** Options of {@link batches}. */
export interface BatchOptions {
  /** Shuffle with {@link shuffledIndices} of this key; in order when absent. */
  readonly key?: RandomKey;
  /** Drop a last batch smaller than `batchSize` (default false: keep it). */
  readonly dropLast?: boolean;
}

function lookupTable(normalization: Normalization): Float32Array {
  const { mean, std } = typeof normalization === "object"
    ? normalization
    : { mean: MNIST_MEAN, std: MNIST_STD };
  const table = new Float32Array(256);
  for (let x = 0; x < 256; x++) {
    table[x] = normalization === "unit" ? x / 255 : (x / 255 - mean) / std;
  }
  return table;
}

/**
 * The mean and standard deviation of raw 8-bit pixels on the 0..1 scale
 * (population statistics, in float64): a data set's own normalisation.
 *
 * @param pixels Raw pixels, 0..255 (e.g. every training image).
 * @returns `{ mean, std }`.
 * @throws {RangeError} On no pixels, or pixels that are all equal.
 *
 * @example
 * ```ts
 * import { pixelStatistics } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(pixelStatistics(new Uint8Array([0, 255])), { mean: 0.5, std: 0.5 });
 * ```
 */
export function pixelStatistics(
  pixels: Uint8Array,
): { mean: number; std: number } {
  const counts = new Float64Array(256);
  for (let i = 0; i < pixels.length; i++) counts[pixels[i]]++;
  let sum = 0;
  for (let x = 0; x < 256; x++) sum += counts[x] * x;
  const mean = sum / pixels.length;
  let squares = 0;
  for (let x = 0; x < 256; x++) squares += counts[x] * (x - mean) ** 2;
  const std = Math.sqrt(squares / pixels.length);
  if (!(std > 0)) {
    throw new RangeError(
      `Cannot normalise by ${pixels.length} pixels' statistics: their standard deviation is ${std}`,
    );
  }
  return { mean: mean / 255, std: std / 255 };
}

/**
 * Converts raw 8-bit pixels to network inputs.
 *
 * Each value is computed in float64 and rounded once to float32.
 *
 * @param pixels Raw pixels, 0..255.
 * @param normalization See {@link Normalization}; default `"mnist-standard"`.
 * @returns A new Float32Array of the same length.
 * @throws {TypeError} If `pixels` is not a Uint8Array.
 * @throws {RangeError} On an unknown normalisation.
 *
 * @example
 * ```ts
 * import { normalizePixels } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const pixels = new Uint8Array([0, 51, 255]);
 * assert.deepEqual([...normalizePixels(pixels, "unit")], [0, Math.fround(0.2), 1]);
 * const standard = normalizePixels(pixels); // "mnist-standard"
 * assert.equal(standard[0], Math.fround(-0.1307 / 0.3081));
 * ```
 */
export function normalizePixels(
  pixels: Uint8Array,
  normalization: Normalization = DEFAULT_NORMALIZATION,
): Float32Array {
  if (!(pixels instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot normalise pixels: expected a Uint8Array, got ${
        Object.prototype.toString.call(pixels)
      }`,
    );
  }
  if (typeof normalization === "object" && normalization !== null) {
    const { mean, std } = normalization;
    if (!(Number.isFinite(mean) && Number.isFinite(std) && std > 0)) {
      throw new RangeError(
        `Invalid normalization { mean: ${mean}, std: ${std} }: a finite mean and a positive std`,
      );
    }
  } else if (normalization !== "unit" && normalization !== "mnist-standard") {
    throw new RangeError(
      `Unknown normalization ${
        JSON.stringify(normalization)
      }: expected "mnist-standard", "unit" or { mean, std }`,
    );
  }
  const table = lookupTable(normalization);
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = table[pixels[i]];
  return out;
}

/**
 * Makes a dataset, checking that images, labels and shape agree.
 *
 * The arrays are taken as they are, not copied.
 *
 * @param images `count * C * H * W` values.
 * @param labels One integer label per image.
 * @param shape The shape of one image, `[C, H, W]`, positive integers.
 * @returns The dataset, with `count = labels.length`.
 * @throws {TypeError} If `images` or `labels` has the wrong array class.
 * @throws {RangeError} On a bad shape or if `images.length` is not
 *   `labels.length * C * H * W`.
 *
 * @example
 * ```ts
 * import { makeDataset } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const data = makeDataset(new Float32Array(2 * 4), new Int32Array([3, 1]), [1, 2, 2]);
 * assert.equal(data.count, 2);
 * assert.throws(() => makeDataset(new Float32Array(7), new Int32Array(2), [1, 2, 2]), RangeError);
 * ```
 */
export function makeDataset(
  images: Float32Array,
  labels: Int32Array,
  shape: ImageShape,
): Dataset {
  checkDataset({ images, labels, shape, count: labels?.length });
  return {
    images,
    labels,
    shape: [shape[0], shape[1], shape[2]],
    count: labels.length,
  };
}

function checkDataset(dataset: Dataset): number {
  const { images, labels, shape, count } = dataset;
  if (!(images instanceof Float32Array)) {
    throw new TypeError(
      `Dataset images must be a Float32Array, got ${
        Object.prototype.toString.call(images)
      }`,
    );
  }
  if (!(labels instanceof Int32Array)) {
    throw new TypeError(
      `Dataset labels must be an Int32Array, got ${
        Object.prototype.toString.call(labels)
      }`,
    );
  }
  if (
    !Array.isArray(shape) || shape.length !== 3 ||
    !shape.every((s) => Number.isInteger(s) && s > 0)
  ) {
    throw new RangeError(
      `Dataset image shape must be [C, H, W] of positive integers, got ${
        JSON.stringify(shape)
      }`,
    );
  }
  if (count !== labels.length) {
    throw new RangeError(
      `Dataset count ${count} does not match its ${labels.length} labels`,
    );
  }
  const imageSize = shape[0] * shape[1] * shape[2];
  if (images.length !== count * imageSize) {
    throw new RangeError(
      `Dataset of ${count} images of shape [${shape.join(", ")}] needs ${
        count * imageSize
      } image values, got ${images.length}`,
    );
  }
  return imageSize;
}

/**
 * A uniformly random permutation of `0 .. n-1` (Fisher-Yates), fixed by `key`.
 *
 * Stream layout: for `i = n-1` down to `1` the shuffle swaps element `i`
 * with element `j`, uniform in `0..i`, drawn from the next elements of the
 * 32-bit stream of `key` ({@link randomBits}) by rejection: a word `w` is
 * accepted if `w < 2^32 - (2^32 mod (i+1))`, and then `j = w mod (i+1)`,
 * so `j` is exactly uniform. The same key gives the same permutation on
 * every machine.
 *
 * @param n How many indices, `0 <= n < 2^31`.
 * @param key The random key.
 * @returns A new Int32Array holding each of `0 .. n-1` once.
 * @throws {RangeError} If `n` is not an integer in `[0, 2^31)`.
 * @throws {TypeError} If `key` is not a random key.
 *
 * @example
 * ```ts
 * import { randomKey } from "@bbits/core";
 * import { shuffledIndices } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const order = shuffledIndices(5, randomKey(0));
 * assert.deepEqual([...order].sort(), [0, 1, 2, 3, 4]);
 * assert.deepEqual(shuffledIndices(5, randomKey(0)), order);
 * ```
 */
export function shuffledIndices(n: number, key: RandomKey): Int32Array {
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 31) {
    throw new RangeError(
      `Cannot shuffle ${n} indices: n must be an integer in [0, 2^31)`,
    );
  }
  assertRandomKey(key);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let position = 0;
  for (let i = n - 1; i > 0; i--) {
    const bound = i + 1;
    const limit = 2 ** 32 - (2 ** 32 % bound);
    let word = randomBits(key, position++);
    while (word >= limit) word = randomBits(key, position++);
    const j = word % bound;
    const held = order[i];
    order[i] = order[j];
    order[j] = held;
  }
  return order;
}

/**
 * How many batches {@link batches} yields.
 *
 * @param count The number of examples.
 * @param batchSize The batch size, a positive integer.
 * @param dropLast Whether a last, smaller batch is dropped (default false).
 * @returns `floor(count / batchSize)` if `dropLast`, else `ceil(count / batchSize)`.
 * @throws {RangeError} If `count` is not a non-negative integer or
 *   `batchSize` not a positive integer.
 *
 * @example
 * ```ts
 * import { batchCount } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(batchCount(10, 4), 3);
 * assert.equal(batchCount(10, 4, true), 2);
 * ```
 */
export function batchCount(
  count: number,
  batchSize: number,
  dropLast = false,
): number {
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(
      `Cannot batch ${count} examples: the count must be a non-negative integer`,
    );
  }
  checkBatchSize(batchSize);
  return dropLast
    ? Math.floor(count / batchSize)
    : Math.ceil(count / batchSize);
}

function checkBatchSize(batchSize: number): void {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(
      `Batch size must be a positive integer, got ${batchSize}`,
    );
  }
}

/**
 * Splits a dataset into mini-batches, in order or shuffled by a key.
 *
 * Every index appears in exactly one batch (except those of a dropped last
 * batch). Batches are copies: the dataset is never modified, and it is
 * validated before the first batch. The generator is lazy, so only one
 * batch's copy exists at a time unless the caller keeps them.
 *
 * @param dataset The dataset.
 * @param batchSize Images per batch, a positive integer.
 * @param options `key`: shuffle with `shuffledIndices(dataset.count, key)`
 *   (in order without); `dropLast`: drop a last batch smaller than
 *   `batchSize` (default false).
 * @returns A generator of {@link Batch}es.
 * @throws {RangeError} On a bad batch size or an inconsistent dataset.
 * @throws {TypeError} On a dataset with the wrong array classes or a bad key.
 *
 * @example
 * ```ts
 * import { batches, makeDataset, randomKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const data = makeDataset(
 *   new Float32Array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]),
 *   new Int32Array([0, 1, 2, 3, 4]),
 *   [1, 1, 2],
 * );
 * const inOrder = [...batches(data, 2)];
 * assert.deepEqual(inOrder.map((b) => b.size), [2, 2, 1]);
 * assert.deepEqual([...inOrder[1].images], [2, 2, 3, 3]);
 * const shuffled = [...batches(data, 2, { key: randomKey(1), dropLast: true })];
 * assert.deepEqual(shuffled.map((b) => b.size), [2, 2]);
 * ```
 */
export function batches(
  dataset: Dataset,
  batchSize: number,
  options: BatchOptions = {},
): Generator<Batch, void, undefined> {
  // Validate eagerly: a generator body would only run at the first next().
  const imageSize = checkDataset(dataset);
  const total = batchCount(dataset.count, batchSize, options.dropLast ?? false);
  const order = options.key === undefined
    ? null
    : shuffledIndices(dataset.count, options.key);
  return generateBatches(dataset, batchSize, imageSize, total, order);
}

function* generateBatches(
  dataset: Dataset,
  batchSize: number,
  imageSize: number,
  total: number,
  order: Int32Array | null,
): Generator<Batch, void, undefined> {
  for (let b = 0; b < total; b++) {
    const start = b * batchSize;
    const size = Math.min(batchSize, dataset.count - start);
    const indices = new Int32Array(size);
    const images = new Float32Array(size * imageSize);
    const labels = new Int32Array(size);
    for (let k = 0; k < size; k++) {
      const index = order === null ? start + k : order[start + k];
      indices[k] = index;
      labels[k] = dataset.labels[index];
      images.set(
        dataset.images.subarray(index * imageSize, (index + 1) * imageSize),
        k * imageSize,
      );
    }
    yield { images, labels, indices, size };
  }
}
