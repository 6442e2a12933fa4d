/**
 * Bayesian Bits training on the WebGPU device against the WASM device from
 * the same key: the same gate noise, the same sampled gates (within the
 * float32 bound of the gate kernels), the same losses within a stated
 * tolerance, and a training state that lives on the GPU. Needs an adapter
 * (the software one will do) and fails, not skips, without one.
 */

import assert from "node:assert/strict";
import { type Device, device } from "../../core/device.ts";
import { initGraph } from "../../core/graph.ts";
import { lenet5 } from "../../core/models.ts";
import { makeDataset } from "../../core/data.ts";
import { randomKey } from "../../core/rng.ts";
import {
  bayesianBits,
  type BayesianBitsProgress,
  gatesFor,
  initGated,
  trainBayesianBits,
} from "../../core/methods/bayesian_bits/mod.ts";
import { loadMnist } from "../../io/mnist.ts";

const { train } = await loadMnist({ limit: 16 });
const data = makeDataset(train.images, train.labels, [1, 28, 28]);

/** Fractional gate logits, so that the samples are not all clamped. */
const gated = bayesianBits(lenet5(), {
  initialLogits: { 2: 1, 4: 1, 8: 0.5 },
});

/** Two steps of 8 images from the same keys on `dev`. */
async function run(dev: Device) {
  const model = lenet5();
  const init = await initGated(
    gated,
    initGraph(model, randomKey(0), dev),
    dev.upload(data.images.slice(0, 8 * 784), [8, 1, 28, 28]),
  );
  const gates = new Map<string, number[][]>();
  for (const [name, g] of gatesFor(gated, init.params, randomKey(9))) {
    gates.set(name, [
      [...await g.chain.read()],
      g.z2 ? [...await g.z2.read()] : [],
    ]);
  }
  const noise = await dev.kernels.uniform(randomKey(9), 1000, 0).read();
  const progress: BayesianBitsProgress[] = [];
  const done = await trainBayesianBits(gated, init, {
    train: data,
    test: data,
  }, {
    epochs: 1,
    batchSize: 8,
    key: randomKey(5),
    progressEvery: 1,
    onProgress: (p) => progress.push(p),
  });
  return { gates, noise, progress, done };
}

Deno.test("a gated LeNet-5 trained on WebGPU and on WASM from the same key: same noise and gates, losses within 1e-4", async () => {
  using wasm = await device("wasm", { threads: 2 });
  using gpu = await device("webgpu");
  const a = await run(wasm);
  const b = await run(gpu);
  assert.deepEqual([...b.noise], [...a.noise], "the gate noise, bit for bit");
  // Sampled gates: clamped samples (0 or 1) identical, the others within
  // the float32 bound of the WGSL gate kernels (2e-6, gpu/kernels/gates.ts).
  let exact = 0;
  let total = 0;
  for (const [name, [chain, z2]] of a.gates) {
    const [gChain, gZ2] = b.gates.get(name)!;
    [...chain, ...z2].forEach((want, i) => {
      const got = [...gChain, ...gZ2][i];
      total++;
      if (want === 0 || want === 1) assert.equal(got, want, `${name}[${i}]`);
      else assert.ok(Math.abs(got - want) <= 2e-6, `${name}[${i}]`);
      if (got === want) exact++;
    });
  }
  assert.ok(exact > total / 2, `${exact} of ${total} gates identical`);
  // Losses: GEMM and convolution sum in float32 in another order (about
  // 1e-6 relative per layer), and two updates carry that forward: 1e-4.
  assert.equal(b.progress.length, 2);
  b.progress.forEach((p, i) => {
    const q = a.progress[i];
    for (const key of ["loss", "crossEntropy", "prior"] as const) {
      const bound = 1e-4 * Math.abs(q[key]);
      assert.ok(
        Math.abs(p[key] - q[key]) <= bound,
        `step ${i + 1} ${key}: ${p[key]} on WebGPU, ${q[key]} on WASM`,
      );
    }
    assert.equal(p.relativeGbops, q.relativeGbops);
  });
  assert.equal(
    b.done.history[0].testAccuracy,
    a.done.history[0].testAccuracy,
  );
  // The trained state stays on the GPU.
  for (const t of Object.values(b.done.state.params)) {
    assert.equal(t.device, gpu);
  }
});
