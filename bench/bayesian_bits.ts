/**
 * Bayesian Bits training and evaluation throughput on LeNet-5 at batch 128,
 * next to the float training step and float evaluation measured in the same
 * run, on the same synthetic MNIST-shaped data (timing does not depend on
 * pixel values).
 *
 * ```sh
 * deno run --allow-read --allow-env bench/bayesian_bits.ts [--threads 1,2] [--samples 3840] [--warmup-seconds 30] [--json FILE]
 * deno task bench   # runs it last, unless --no-bb
 * ```
 *
 * Each figure is the median of three rounds after a warm-up of alternating
 * float and Bayesian Bits epochs lasting at least `warmupSeconds`; within a
 * round float and Bayesian Bits alternate, so both are measured in the same
 * machine state. After the warm-up every timed round runs with V8's optimized
 * code in place, the state long training runs are in (a change of speed when
 * V8 optimizes a hot loop is how the thread pool's spinning wait was found to
 * slow two threads down: README, "Two threads: the spinning wait"). The
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

/** One row of the Bayesian Bits table. */
export interface BayesianBitsBenchRow {
  /** WASM threads. */
  readonly threads: number;
  /** Float training samples/s. */
  readonly floatTrain: number;
  /** Bayesian Bits training samples/s. */
  readonly bbTrain: number;
  /** Float evaluation samples/s. */
  readonly floatEval: number;
  /** Bayesian Bits evaluation (deterministic gates) samples/s. */
  readonly bbEval: number;
}

/**
 * Measures and prints the table.
 *
 * @param threadCounts WASM thread counts to run.
 * @param count Synthetic samples per timed epoch (>= 128).
 * @param warmupSeconds Minimum warm-up per thread count, in seconds (>= 0;
 *   at least one float and one Bayesian Bits epoch run regardless).
 * @returns The rows.
 */
export async function benchBayesianBits(
  threadCounts: readonly number[],
  count: number,
  warmupSeconds = 30,
): Promise<BayesianBitsBenchRow[]> {
  if (!Number.isInteger(count) || count < 128) {
    throw new RangeError(`--samples must be an integer >= 128, got ${count}`);
  }
  if (!Number.isFinite(warmupSeconds) || warmupSeconds < 0) {
    throw new RangeError(
      `--warmup-seconds must be a number >= 0, got ${warmupSeconds}`,
    );
  }
  const images = uniform([0, 3], count * 784).map((u) => 4 * u - 1);
  const labels = Int32Array.from(
    uniform([0, 4], count),
    (u) => Math.floor(10 * u),
  );
  const train = makeDataset(images, labels, [1, 28, 28]);
  const tiny = makeDataset(images.slice(0, 784), labels.slice(0, 1), [
    1,
    28,
    28,
  ]);
  const model = lenet5();
  const rows: BayesianBitsBenchRow[] = [];
  const median = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  for (const threads of threadCounts) {
    using wasm = await createWasmBackend({ threads });
    const floatInit = initGraph(model, randomKey(0));
    const gated = bayesianBits(model, { mu: 0.01 });
    const state = initGated(
      gated,
      floatInit,
      Tensor.adopt(images.slice(0, 128 * 784), [128, 1, 28, 28]),
      { backend: wasm, gemm: wasm.gemm, kernels: wasm.kernels },
    );
    const floatEpoch = () =>
      trainFloat(model, floatInit, { train, test: tiny }, {
        epochs: 1,
        batchSize: 128,
        key: randomKey(1),
        gemm: wasm.gemm,
        kernels: wasm.kernels,
      }).history[0].samplesPerSecond;
    const bbEpoch = async () =>
      (await trainBayesianBits(gated, state, { train, test: tiny }, {
        epochs: 1,
        batchSize: 128,
        key: randomKey(1),
        backend: wasm,
        gemm: wasm.gemm,
        kernels: wasm.kernels,
      })).history[0].samplesPerSecond;
    const timed = (f: () => unknown) => {
      const start = performance.now();
      f();
      return count / ((performance.now() - start) / 1000);
    };
    const floatEvalOnce = () =>
      timed(() =>
        evaluate(model, floatInit.params, train, {
          batchSize: 1000,
          gemm: wasm.gemm,
          kernels: wasm.kernels,
        })
      );
    const bbEvalOnce = () =>
      timed(() =>
        evaluateGated(gated, state, train, {
          batchSize: 1000,
          backend: wasm,
          gemm: wasm.gemm,
          kernels: wasm.kernels,
        })
      );
    // Warm-up, then float and Bayesian Bits alternate so that both see the
    // same machine state; the warm-up carries every timed round past the
    // first seconds, in which V8 is still compiling the hot code.
    const warmupStart = performance.now();
    do {
      floatEpoch();
      await bbEpoch();
    } while (performance.now() - warmupStart < 1000 * warmupSeconds);
    const f: number[] = [];
    const b: number[] = [];
    const fe: number[] = [];
    const be: number[] = [];
    for (let round = 0; round < 3; round++) {
      f.push(floatEpoch());
      b.push(await bbEpoch());
      fe.push(floatEvalOnce());
      be.push(bbEvalOnce());
    }
    const floatTrain = median(f);
    const bbTrain = median(b);
    const floatEval = median(fe);
    const bbEval = median(be);
    rows.push({
      threads: wasm.threads,
      floatTrain,
      bbTrain,
      floatEval,
      bbEval,
    });
    console.error(
      `bayesian bits x${wasm.threads}: float ${
        floatTrain.toFixed(0)
      }, bayesian bits ${bbTrain.toFixed(0)} train samples/s; eval ${
        floatEval.toFixed(0)
      } / ${bbEval.toFixed(0)} samples/s`,
    );
  }
  console.log(
    `\nLeNet-5 Bayesian Bits vs float, batch 128 (training) / 1000 (evaluation), ${count} synthetic samples per timed epoch, median of 3 alternating rounds after a warm-up of at least ${warmupSeconds} s\n`,
  );
  console.log(
    "| threads | float train samples/s | Bayesian Bits train samples/s | BB step overhead vs float | float eval samples/s | BB eval (deterministic gates) samples/s |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.threads} | ${r.floatTrain.toFixed(0)} | ${
        r.bbTrain.toFixed(0)
      } | ${(100 * (r.floatTrain / r.bbTrain - 1)).toFixed(0)} % | ${
        r.floatEval.toFixed(0)
      } | ${r.bbEval.toFixed(0)} |`,
    );
  }
  return rows;
}

if (import.meta.main) {
  const args = parseArgs({
    options: {
      threads: { type: "string", default: "1,2" },
      samples: { type: "string", default: "3840" },
      "warmup-seconds": { type: "string", default: "30" },
      json: { type: "string" },
    },
  });
  const rows = await benchBayesianBits(
    args.values.threads!.split(",").map(Number),
    Number(args.values.samples),
    Number(args.values["warmup-seconds"]),
  );
  if (args.values.json) {
    await Deno.writeTextFile(args.values.json, JSON.stringify(rows, null, 2));
  }
}
