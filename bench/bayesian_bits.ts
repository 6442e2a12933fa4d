/**
 * Bayesian Bits training and evaluation throughput on LeNet-5 at batch 128,
 * next to the float training step and float evaluation measured in the same
 * run, on the same synthetic MNIST-shaped data (timing does not depend on
 * pixel values).
 *
 * ```sh
 * deno run --allow-read --allow-env bench/bayesian_bits.ts [--threads 1,2] [--samples 3840] [--json FILE]
 * ```
 *
 * Each figure is the best of two timed epochs after a warm-up epoch. The
 * Bayesian Bits step is the full recipe step: sampled gates for all 7
 * quantizers (4 weight, 3 activation), quantizer forward and backward, the
 * prior and its gradient, three Adam optimizers. Evaluation uses the
 * deterministic gates (weights quantized once, activations per batch) at
 * batch 1000.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  bayesianBits,
  createWasmBackend,
  evaluate,
  evaluateGated,
  initGated,
  initGraph,
  lenet5,
  makeDataset,
  randomKey,
  Tensor,
  trainBayesianBits,
  trainFloat,
  uniform,
} from "../mod.ts";

const args = parseArgs({
  options: {
    threads: { type: "string", default: "1,2" },
    samples: { type: "string", default: "3840" },
    json: { type: "string" },
  },
});
const threadCounts = args.values.threads!.split(",").map(Number);
const count = Number(args.values.samples);
if (!Number.isInteger(count) || count < 128) {
  throw new RangeError(`--samples must be an integer >= 128, got ${count}`);
}

const images = uniform([0, 3], count * 784).map((u) => 4 * u - 1);
const labels = Int32Array.from(
  uniform([0, 4], count),
  (u) => Math.floor(10 * u),
);
const train = makeDataset(images, labels, [1, 28, 28]);
const tiny = makeDataset(images.slice(0, 784), labels.slice(0, 1), [1, 28, 28]);
const model = lenet5();

interface Row {
  threads: number;
  floatTrain: number;
  bbTrain: number;
  floatEval: number;
  bbEval: number;
}
const rows: Row[] = [];
const best = async (run: () => Promise<number> | number) => {
  await run(); // warm-up
  return Math.max(await run(), await run());
};

for (const threads of threadCounts) {
  using wasm = await createWasmBackend({ threads });
  const floatInit = initGraph(model, randomKey(0));
  const floatTrain = await best(() =>
    trainFloat(model, floatInit, { train, test: tiny }, {
      epochs: 1,
      batchSize: 128,
      key: randomKey(1),
      gemm: wasm.gemm,
      kernels: wasm.kernels,
    }).history[0].samplesPerSecond
  );
  const gated = bayesianBits(model, { mu: 0.01 });
  const state = initGated(
    gated,
    floatInit,
    Tensor.adopt(images.slice(0, 128 * 784), [128, 1, 28, 28]),
    { backend: wasm },
  );
  const bbTrain = await best(async () =>
    (await trainBayesianBits(gated, state, { train, test: tiny }, {
      epochs: 1,
      batchSize: 128,
      key: randomKey(1),
      backend: wasm,
      gemm: wasm.gemm,
      kernels: wasm.kernels,
    })).history[0].samplesPerSecond
  );
  const timed = (f: () => unknown) => {
    const start = performance.now();
    f();
    return count / ((performance.now() - start) / 1000);
  };
  const floatEval = await best(() =>
    timed(() =>
      evaluate(model, floatInit.params, train, {
        batchSize: 1000,
        gemm: wasm.gemm,
        kernels: wasm.kernels,
      })
    )
  );
  const bbEval = await best(() =>
    timed(() =>
      evaluateGated(gated, state, train, {
        batchSize: 1000,
        backend: wasm,
        gemm: wasm.gemm,
        kernels: wasm.kernels,
      })
    )
  );
  rows.push({ threads: wasm.threads, floatTrain, bbTrain, floatEval, bbEval });
  console.error(
    `x${wasm.threads}: float ${floatTrain.toFixed(0)}, bayesian bits ${
      bbTrain.toFixed(0)
    } train samples/s; eval ${floatEval.toFixed(0)} / ${
      bbEval.toFixed(0)
    } samples/s`,
  );
}

console.log(
  `\nLeNet-5, batch 128 (training) / 1000 (evaluation), ${count} synthetic samples per timed epoch, best of 2 after a warm-up\n`,
);
console.log(
  "| threads | float train samples/s | Bayesian Bits train samples/s | BB overhead vs float | float eval samples/s | BB eval (deterministic gates) samples/s |",
);
console.log("|---|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.threads} | ${r.floatTrain.toFixed(0)} | ${r.bbTrain.toFixed(0)} | ${
      (100 * (r.floatTrain / r.bbTrain - 1)).toFixed(0)
    } % | ${r.floatEval.toFixed(0)} | ${r.bbEval.toFixed(0)} |`,
  );
}
if (args.values.json) {
  await Deno.writeTextFile(args.values.json, JSON.stringify(rows, null, 2));
}
