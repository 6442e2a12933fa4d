import assert from "node:assert/strict";
import {
  batchCount,
  batches,
  type Dataset,
  makeDataset,
  MNIST_MEAN,
  MNIST_STD,
  normalizePixels,
  pixelStatistics,
  shuffledIndices,
} from "../../core/data.ts";
import { randomKey, splitKey } from "../../core/rng.ts";

/** `count` images of shape [1, 2, 3] whose every value is the image's index. */
function indexedDataset(count: number): Dataset {
  const images = new Float32Array(count * 6);
  for (let i = 0; i < count; i++) images.fill(i, i * 6, (i + 1) * 6);
  const labels = Int32Array.from({ length: count }, (_, i) => i % 10);
  return makeDataset(images, labels, [1, 2, 3]);
}

function isPermutation(order: Int32Array, n: number): boolean {
  const seen = new Uint8Array(n);
  for (const index of order) {
    if (index < 0 || index >= n || seen[index]) return false;
    seen[index] = 1;
  }
  return order.length === n;
}

Deno.test("normalizePixels() maps 0, 51 and 255 by each documented formula", () => {
  const pixels = new Uint8Array([0, 51, 255]);
  const cases: ["unit" | "mnist-standard", (x: number) => number][] = [
    ["unit", (x) => x / 255],
    ["mnist-standard", (x) => (x / 255 - MNIST_MEAN) / MNIST_STD],
  ];
  for (const [normalization, formula] of cases) {
    assert.deepEqual(
      [...normalizePixels(pixels, normalization)],
      [...pixels].map((x) => Math.fround(formula(x))),
      normalization,
    );
  }
  assert.deepEqual(
    normalizePixels(pixels),
    normalizePixels(pixels, "mnist-standard"),
  );
});

Deno.test("normalizePixels() rejects unknown normalisations and non-byte input", () => {
  assert.throws(
    () => normalizePixels(new Uint8Array(1), "zscore" as "unit"),
    /Unknown normalization "zscore"/,
  );
  assert.throws(
    () => normalizePixels([1, 2] as unknown as Uint8Array),
    TypeError,
  );
});

Deno.test("shuffledIndices() is a permutation for every size, including 0 and 1", () => {
  for (const n of [0, 1, 2, 3, 10, 257, 10_000]) {
    assert.ok(isPermutation(shuffledIndices(n, randomKey(n)), n), `n = ${n}`);
  }
});

Deno.test("shuffledIndices() is reproducible per key and differs between keys", () => {
  const [a, b] = splitKey(randomKey(2024));
  assert.deepEqual(shuffledIndices(1000, a), shuffledIndices(1000, a));
  assert.notDeepEqual(shuffledIndices(1000, a), shuffledIndices(1000, b));
});

Deno.test("shuffledIndices() puts each index at each position about equally often", () => {
  // 3 elements, 6000 keys: each of the 9 (index, position) pairs expects 2000.
  const counts = new Array(9).fill(0);
  for (let seed = 0; seed < 6000; seed++) {
    shuffledIndices(3, randomKey(seed)).forEach((index, position) =>
      counts[3 * index + position]++
    );
  }
  for (const count of counts) {
    assert.ok(Math.abs(count - 2000) < 200, `${counts}`);
  }
});

Deno.test("shuffledIndices() rejects bad sizes and keys", () => {
  const cases: [
    number,
    unknown,
    ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor,
  ][] = [
    [-1, randomKey(0), RangeError],
    [2.5, randomKey(0), RangeError],
    [2 ** 31, randomKey(0), RangeError],
    [3, [1, 2, 3], TypeError],
  ];
  for (const [n, key, errorClass] of cases) {
    assert.throws(
      () => shuffledIndices(n, key as [number, number]),
      errorClass,
      `${n} ${key}`,
    );
  }
});

Deno.test("batches() covers each index exactly once, in order or shuffled", () => {
  const data = indexedDataset(23);
  for (const key of [undefined, randomKey(7)]) {
    const all = [...batches(data, 5, { key })];
    assert.deepEqual(all.map((b) => b.size), [5, 5, 5, 5, 3]);
    const indices = new Int32Array(all.flatMap((b) => [...b.indices]));
    assert.ok(isPermutation(indices, 23));
    if (key === undefined) {
      assert.deepEqual([...indices], [...Array(23).keys()]);
    } else assert.deepEqual(indices, shuffledIndices(23, key));
    for (const batch of all) {
      assert.equal(batch.images.length, batch.size * 6);
      batch.indices.forEach((index, k) => {
        assert.equal(batch.labels[k], index % 10);
        assert.ok(
          batch.images.subarray(k * 6, (k + 1) * 6).every((v) => v === index),
        );
      });
    }
  }
});

Deno.test("batches() with dropLast drops only a smaller last batch", () => {
  const cases: [number, number, number[]][] = [
    [23, 5, [5, 5, 5, 5]],
    [20, 5, [5, 5, 5, 5]],
    [4, 5, []],
    [0, 5, []],
  ];
  for (const [count, batchSize, sizes] of cases) {
    const all = [
      ...batches(indexedDataset(count), batchSize, {
        key: randomKey(1),
        dropLast: true,
      }),
    ];
    assert.deepEqual(all.map((b) => b.size), sizes, `${count} by ${batchSize}`);
    assert.equal(batchCount(count, batchSize, true), sizes.length);
  }
  assert.equal(batchCount(23, 5), 5);
  assert.equal(batchCount(0, 5), 0);
});

Deno.test("batches() copies and never modifies the dataset", () => {
  const data = indexedDataset(4);
  const before = { images: data.images.slice(), labels: data.labels.slice() };
  for (const batch of batches(data, 3, { key: randomKey(3) })) {
    batch.images.fill(-1);
    batch.labels.fill(-1);
  }
  assert.deepEqual(data.images, before.images);
  assert.deepEqual(data.labels, before.labels);
});

Deno.test("batches() and makeDataset() reject bad batch sizes and inconsistent datasets at the call", () => {
  const data = indexedDataset(4);
  assert.throws(
    () => batches(data, 0),
    /Batch size must be a positive integer, got 0/,
  );
  assert.throws(() => batches(data, 1.5), /got 1.5/);
  assert.throws(
    () => batches({ ...data, count: 5 }, 2),
    /Dataset count 5 does not match its 4 labels/,
  );
  assert.throws(
    () => makeDataset(new Float32Array(10), new Int32Array(2), [1, 2, 3]),
    /needs 12 image values, got 10/,
  );
  assert.throws(
    () => makeDataset(new Float32Array(0), new Int32Array(0), [1, 0, 3]),
    /positive integers, got \[1,0,3\]/,
  );
  assert.throws(
    () =>
      makeDataset(
        new Float64Array(6) as unknown as Float32Array,
        new Int32Array(1),
        [1, 2, 3],
      ),
    TypeError,
  );
});

Deno.test("normalizePixels() with a data set's own statistics, and pixelStatistics() by hand", () => {
  const pixels = new Uint8Array([0, 51, 102, 255]);
  // Mean (0 + 51 + 102 + 255) / 4 = 102; squares 102^2 + 51^2 + 153^2
  // + 0 = 36,414 / 4 = 9,103.5: std 95.412...; on the 0..1 scale / 255.
  const stats = pixelStatistics(pixels);
  assert.equal(stats.mean, 102 / 255);
  assert.ok(Math.abs(stats.std - Math.sqrt(9_103.5) / 255) < 1e-15);
  const own = normalizePixels(pixels, stats);
  assert.deepEqual(
    [...own],
    [...pixels].map((x) => Math.fround((x / 255 - stats.mean) / stats.std)),
  );
  assert.throws(
    () => normalizePixels(pixels, { mean: 0, std: 0 }),
    /Invalid normalization \{ mean: 0, std: 0 \}/,
  );
  assert.throws(
    () => pixelStatistics(new Uint8Array([7, 7])),
    /deviation is 0/,
  );
});
