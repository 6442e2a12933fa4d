import assert from "node:assert/strict";
import { makeDataset } from "../../core/data.ts";
import { initGraph, type ModelGraph } from "../../core/graph.ts";
import { progressRate } from "../../core/loop.ts";
import { lenet5 } from "../../core/models.ts";
import { adam } from "../../core/optim.ts";
import { randomKey, uniform } from "../../core/rng.ts";
import { evaluate } from "../../core/train.ts";
import { trainFloat } from "../../core/methods/float.ts";
import { device } from "../../core/device.ts";
import { loadMnist } from "../../io/mnist.ts";
import { main } from "../../cli/main.ts";

/** Two Gaussian-ish blobs in 4 pixels: class 0 bright on the left, class 1 on the right. */
function blobs(count: number, seed: number) {
  const u = uniform(randomKey(seed), count * 4);
  const images = new Float32Array(count * 4);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = i % 2;
    for (let p = 0; p < 4; p++) {
      const bright = (p % 2 === 0) === (labels[i] === 0);
      images[i * 4 + p] = (bright ? 1 : 0) + 0.6 * (u[i * 4 + p] - 0.5);
    }
  }
  return makeDataset(images, labels, [1, 2, 2]);
}

const TINY: ModelGraph = {
  name: "tiny",
  inputShape: [1, 2, 2],
  nodes: [
    {
      op: "conv",
      name: "c",
      input: "input",
      outChannels: 4,
      kernel: 2,
      activation: "relu",
    },
    { op: "flatten", name: "f", input: "c" },
    { op: "dense", name: "fc", input: "f", outFeatures: 2 },
  ],
};

Deno.test("trainFloat() learns a separable problem and reports progress and history", async () => {
  const train = blobs(256, 1);
  const test = blobs(128, 2);
  const progress: number[] = [];
  const result = await trainFloat(TINY, initGraph(TINY, randomKey(3)), {
    train,
    test,
  }, {
    epochs: 5,
    batchSize: 32,
    optimizer: adam({ lr: 0.05 }),
    key: randomKey(4),
    progressEvery: 4,
    onProgress: (p) => progress.push(p.step),
  });
  assert.equal(result.history.length, 5);
  assert.ok(result.history[4].loss < result.history[0].loss, "loss falls");
  assert.equal(await evaluate(TINY, result.params, test), 1);
  assert.equal(result.history[4].testAccuracy, 1);
  assert.deepEqual(progress.slice(0, 2), [4, 8]);
  assert.equal(result.optimizerState.step, 5 * 8);
});

Deno.test("trainFloat() is reproducible for a seed and does not mutate its inputs", async () => {
  const data = { train: blobs(64, 5), test: blobs(32, 6) };
  const init = initGraph(TINY, randomKey(7));
  const before = init.params["fc.weight"].toFloat32Array();
  const run = async () =>
    (await trainFloat(TINY, init, data, {
      epochs: 1,
      batchSize: 16,
      key: randomKey(8),
    })).params["fc.weight"]
      .toFloat32Array();
  assert.deepEqual(await run(), await run());
  assert.deepEqual(init.params["fc.weight"].toFloat32Array(), before);
});

Deno.test("trainFloat() rejects bad options and mismatched data with clear errors", async () => {
  const data = { train: blobs(8, 1), test: blobs(8, 2) };
  const init = initGraph(TINY, randomKey(0));
  await assert.rejects(
    () => trainFloat(TINY, init, data, { epochs: 0, key: randomKey(0) }),
    /epochs must be a positive integer, got 0/,
  );
  await assert.rejects(
    () =>
      trainFloat(TINY, init, data, {
        epochs: 1,
        batchSize: 1.5,
        key: randomKey(0),
      }),
    /batchSize must be a positive integer, got 1.5/,
  );
  const wrong = makeDataset(new Float32Array(9), new Int32Array([0]), [
    1,
    3,
    3,
  ]);
  await assert.rejects(
    () =>
      trainFloat(TINY, init, { train: wrong, test: data.test }, {
        epochs: 1,
        key: randomKey(0),
      }),
    /train images are \[1, 3, 3\] but tiny takes \[1, 2, 2\]/,
  );
});

Deno.test("the CLI rejects unknown commands and bad flags", async () => {
  const errors: string[] = [];
  const original = console.error;
  console.error = (...a: unknown[]) => errors.push(a.join(" "));
  try {
    assert.equal(await main(["fly"]), 2);
    assert.match(errors.join("\n"), /Unknown command "fly"/);
    await assert.rejects(
      main(["float", "--epochs=-2"]),
      /--epochs must be a positive integer, got "-2"/,
    );
    await assert.rejects(
      main(["float", "--bogus"]),
      /Unknown option '--bogus'/,
    );
  } finally {
    console.error = original;
  }
});

Deno.test("LeNet-5 trained on 2,048 MNIST images for one epoch classifies well above chance", async () => {
  const { train, test } = await loadMnist({ limit: 2048 });
  const testSubset = makeDataset(
    test.images.slice(0, 1000 * 784),
    test.labels.slice(0, 1000),
    [1, 28, 28],
  );
  const model = lenet5();
  const wasm = await device("wasm", { threads: 2, parallelThreshold: 1 });
  try {
    const result = await trainFloat(
      model,
      initGraph(model, randomKey(0), wasm),
      { train, test: testSubset },
      { epochs: 1, batchSize: 64, key: randomKey(1) },
    );
    assert.equal(result.params["conv1.weight"].device, wasm);
    const accuracy = result.history[0].testAccuracy;
    assert.ok(accuracy > 0.8, `test accuracy ${accuracy}`); // chance is 0.1
  } finally {
    wasm.dispose();
  }
});

Deno.test("the CLI rejects an unknown learning-rate schedule", async () => {
  await assert.rejects(
    main(["float", "--schedule", "sawtooth"]),
    /--schedule must be constant, two-thirds or cosine, got "sawtooth"/,
  );
});

Deno.test("progressRate: samples/s and the time left over this and later epochs", () => {
  // Epoch 2 of 3, 600 of 1000 samples in 3 s: 200/s; 400 + 1000 left: 7 s.
  assert.deepEqual(progressRate(600, 3, 2, 3, 1000), {
    samplesPerSecond: 200,
    etaSeconds: 7,
  });
  // The last step of the last epoch: nothing left.
  assert.equal(progressRate(1000, 4, 3, 3, 1000).etaSeconds, 0);
  // No measurable time yet: a finite (huge) rate, not a division by zero.
  assert.ok(Number.isFinite(progressRate(10, 0, 1, 1, 10).samplesPerSecond));
});
