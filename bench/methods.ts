/**
 * The `methods` section of `deno task bench`: one training epoch of each
 * method on LeNet-5 from the same float start (a float model trained one
 * warm-up epoch), on the WASM device, timed as the trainers report it
 * (training samples over the wall time of the epoch's steps), the methods
 * taken in turn after a warm-up epoch each. Float training is the
 * baseline of the same run.
 *
 * @module
 */

import { device } from "../core/device.ts";
import type { Dataset } from "../core/data.ts";
import { initGraph } from "../core/graph.ts";
import type { MethodState } from "../core/method.ts";
import { lenet5 } from "../core/models.ts";
import { randomKey } from "../core/rng.ts";
import { trainFloat } from "../core/methods/float.ts";
import {
  bayesianBits,
  initGated,
  trainBayesianBits,
} from "../core/methods/bayesian_bits/mod.ts";
import {
  clipsFromBatch,
  fracBitsRecipe,
  initFracBits,
  trainFracBits,
} from "../core/methods/fracbits/mod.ts";
import { bsq, initBsq, trainBsq } from "../core/methods/bsq/mod.ts";
import type { Tensor } from "../core/tensor.ts";
import type { BenchData } from "./workloads.ts";
import { logLine } from "./timing.ts";

/** One method's figure. */
export interface MethodRow {
  /** The method. */
  readonly method: string;
  /** WASM threads. */
  readonly threads: number;
  /** Training samples per second of the timed epoch. */
  readonly samplesPerSecond: number;
  /** That over float training's in the same run. */
  readonly ratio: number;
}

type Data = { readonly train: Dataset; readonly test: Dataset };

/** One epoch of a method from `float`: its samples/s. */
type Epoch = (float: MethodState, data: Data, first: Tensor) => Promise<number>;

const key = randomKey(7);

const EPOCHS: Readonly<Record<string, Epoch>> = {
  "float": async (float, data) =>
    (await trainFloat(lenet5(), float, data, { epochs: 1, key }))
      .history[0].samplesPerSecond,
  "bayesian-bits": async (float, data, first) => {
    const gated = bayesianBits(lenet5(), { mu: 0.01 });
    const run = await trainBayesianBits(
      gated,
      await initGated(gated, float, first),
      data,
      { epochs: 1, key },
    );
    return run.history[0].samplesPerSecond;
  },
  "fracbits": async (float, data, first) => {
    const fm = fracBitsRecipe(lenet5(), { targetRelativeGbops: 1.0371 });
    const init = await clipsFromBatch(fm, initFracBits(fm, float), first);
    const run = await trainFracBits(fm, init, data, { epochs: 1, key });
    return run.history[0].samplesPerSecond;
  },
  "bsq": async (float, data, first) => {
    const q = bsq(lenet5(), { alpha: 0.01, activationBits: 4 });
    const run = await trainBsq(q, await initBsq(q, float, first), data, {
      bsqEpochs: 1,
      fineTuneEpochs: 0,
      key,
      calibrationBatches: 4,
    });
    return run.history[0].samplesPerSecond;
  },
};

/**
 * Times one epoch of every method at each thread count.
 *
 * @param data The benchmark's data (`train` timed, `warmTrain` for warm-ups).
 * @param threads WASM thread counts.
 * @returns One row per method and thread count.
 */
export async function benchMethods(
  data: BenchData,
  threads: readonly number[],
): Promise<MethodRow[]> {
  const rows: MethodRow[] = [];
  for (const t of threads) {
    using dev = await device("wasm", { threads: t });
    const warm = { train: data.warmTrain, test: data.warmTest };
    const float = (await trainFloat(
      lenet5(),
      initGraph(lenet5(), randomKey(0), dev),
      warm,
      { epochs: 1, key },
    )) as MethodState;
    const first = dev.upload(
      data.train.images.subarray(0, 128 * 784),
      [128, 1, 28, 28],
    );
    const figures: Record<string, number> = {};
    for (const [method, epoch] of Object.entries(EPOCHS)) {
      await epoch(float, warm, first);
      figures[method] = await epoch(
        float,
        { train: data.train, test: data.warmTest },
        first,
      );
      logLine(
        `methods, ${t} thread(s): ${method} ${
          figures[method].toFixed(0)
        } samples/s`,
      );
    }
    for (const [method, sps] of Object.entries(figures)) {
      rows.push({
        method,
        threads: t,
        samplesPerSecond: sps,
        ratio: sps / figures.float,
      });
    }
  }
  return rows;
}

/** Prints the table of {@link benchMethods}. */
export function printMethodTable(rows: readonly MethodRow[]): void {
  console.log(
    "\nTraining one LeNet-5 epoch per method (WASM device, samples/s, ratio to float training in the same run)",
  );
  console.log("method          threads  samples/s  / float");
  for (const r of rows) {
    console.log(
      `${r.method.padEnd(16)}${String(r.threads).padStart(7)}  ${
        r.samplesPerSecond.toFixed(0).padStart(9)
      }  ${r.ratio.toFixed(2).padStart(7)}`,
    );
  }
}
