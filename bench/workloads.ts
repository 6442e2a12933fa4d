/**
 * The workloads the benchmarks time, as users run them: LeNet-5 on real
 * MNIST images through the public trainers (`trainFloat`,
 * `trainBayesianBits`) and evaluators (`evaluate`, `evaluateGated`), with
 * the parameters on one device.
 *
 * A training figure is the trainer's own epoch figure (the one its progress
 * lines and history report): training samples over the wall time of the
 * epoch's steps (batch upload, forward, backward, optimizer, the loss read
 * back, progress callbacks every 50 steps). The wall time of the whole
 * trainer call (adds the test evaluation and report after the epoch) is kept
 * beside it. Successive epochs continue from the previous epoch's
 * parameters, as a training run does, so gate values evolve as they would.
 * An evaluation figure is test samples over the wall time of one
 * `evaluate`/`evaluateGated` call at batch 1000.
 *
 * @module
 */

import {
  bayesianBits,
  evaluateGated,
  type GatedState,
  initGated,
  trainBayesianBits,
} from "../core/methods/bayesian_bits/mod.ts";
import { evaluate, type TensorParams } from "../core/train.ts";
import { trainFloat } from "../core/methods/float.ts";
import type { BatchNormStats } from "../core/ops/batchnorm.ts";
import { type Dataset, makeDataset } from "../core/data.ts";
import { initGraph } from "../core/graph.ts";
import { lenet5 } from "../core/models.ts";
import { randomKey } from "../core/rng.ts";
import { device } from "../core/device.ts";
import { type Job, type Sample, wallSample } from "./timing.ts";

/** The four timed workloads. */
export type WorkloadKind =
  | "float-train"
  | "bb-train"
  | "float-eval"
  | "bb-eval";

/** Every workload, in table order. */
export const WORKLOAD_KINDS: readonly WorkloadKind[] = [
  "float-train",
  "bb-train",
  "float-eval",
  "bb-eval",
];

/** Table titles of the workloads. */
export const WORKLOAD_TITLES: Readonly<Record<WorkloadKind, string>> = {
  "float-train": "float training",
  "bb-train": "Bayesian Bits training",
  "float-eval": "float evaluation",
  "bb-eval": "Bayesian Bits evaluation",
};

/** Mini-batch size of training (the recipe's). */
export const TRAIN_BATCH = 128;
/** Batch size of evaluation (the evaluators' default). */
export const EVAL_BATCH = 1000;
/** Prior strength of the Bayesian Bits runs (the CLI's default). */
export const MU = 0.01;
/** Steps between progress callbacks (the CLI's default). */
export const PROGRESS_EVERY = 50;
/** Training images per warm-up epoch. */
const WARM_TRAIN = 10 * TRAIN_BATCH;
/** Test images per warm-up evaluation. */
const WARM_TEST = EVAL_BATCH;

/**
 * The library functions the workloads call: this checkout's
 * ({@link THIS_CHECKOUT}), or those of another checkout with the same API,
 * loaded at run time by `bench/compare.ts`.
 */
export interface LibraryApi {
  /** Opens a device. */
  readonly device: typeof device;
  /** Initialises a model's parameters on a device. */
  readonly initGraph: typeof initGraph;
  /** The LeNet-5 graph. */
  readonly lenet5: typeof lenet5;
  /** A random key from a seed. */
  readonly randomKey: typeof randomKey;
  /** A dataset from arrays. */
  readonly makeDataset: typeof makeDataset;
  /** The float trainer. */
  readonly trainFloat: typeof trainFloat;
  /** The float evaluator. */
  readonly evaluate: typeof evaluate;
  /** A gated model from a float one. */
  readonly bayesianBits: typeof bayesianBits;
  /** A gated model's initial state. */
  readonly initGated: typeof initGated;
  /** The Bayesian Bits trainer. */
  readonly trainBayesianBits: typeof trainBayesianBits;
  /** The gated evaluator. */
  readonly evaluateGated: typeof evaluateGated;
}

/** This checkout's functions. */
export const THIS_CHECKOUT: LibraryApi = {
  device,
  initGraph,
  lenet5,
  randomKey,
  makeDataset,
  trainFloat,
  evaluate,
  bayesianBits,
  initGated,
  trainBayesianBits,
  evaluateGated,
};

/** The data of a benchmark: the MNIST splits and small slices for warm-ups. */
export interface BenchData {
  /** Training images of one timed epoch. */
  readonly train: Dataset;
  /** Test images: evaluated after each epoch and by the evaluation figures. */
  readonly test: Dataset;
  /** The first images of `train`, for warm-up epochs. */
  readonly warmTrain: Dataset;
  /** The first images of `test`, for warm-up evaluations. */
  readonly warmTest: Dataset;
}

/** One implementation of the four workloads (a device, or another version of the library). */
export interface Workloads {
  /** What runs them, e.g. `wasm (2 threads, simd128)`. */
  readonly label: string;
  /**
   * Runs one workload.
   *
   * @param kind Which.
   * @param warm A short warm-up run on the data's small slices.
   * @returns The timing.
   */
  run(kind: WorkloadKind, warm: boolean): Promise<Sample>;
  /** The most bytes the device has held at once, where it tracks that. */
  peakBytes(): number | null;
  /** Releases the device. */
  dispose(): void;
}

/**
 * The first `count` examples of a dataset (sharing its arrays).
 *
 * @param data A dataset.
 * @param count Examples to keep (clamped to the dataset's count).
 * @param make The `makeDataset` of the library that reads it.
 * @returns The slice.
 */
export function headOf(
  data: Dataset,
  count: number,
  make: typeof makeDataset = makeDataset,
): Dataset {
  const n = Math.min(count, data.count);
  const per = data.shape[0] * data.shape[1] * data.shape[2];
  return make(
    data.images.subarray(0, n * per),
    data.labels.subarray(0, n),
    data.shape,
  );
}

/**
 * Adds the warm-up slices to MNIST splits.
 *
 * @param splits The training and test splits.
 * @param make The `makeDataset` of the library that reads them.
 * @returns The benchmark data.
 */
export function benchData(
  splits: { readonly train: Dataset; readonly test: Dataset },
  make: typeof makeDataset = makeDataset,
): BenchData {
  return {
    ...splits,
    warmTrain: headOf(splits.train, WARM_TRAIN, make),
    warmTest: headOf(splits.test, WARM_TEST, make),
  };
}

/**
 * One job per workload kind for a set of workloads.
 *
 * @param w The workloads.
 * @param kinds Which kinds.
 * @param prefix Prefix of the job names.
 * @returns The jobs, in `kinds` order.
 */
export function jobsOf(
  w: Workloads,
  kinds: readonly WorkloadKind[],
  prefix: string,
): Job[] {
  return kinds.map((kind) => ({
    name: `${prefix} ${WORKLOAD_TITLES[kind]}`,
    run: () => w.run(kind, false),
    warm: () => w.run(kind, true),
  }));
}

/**
 * The training and test sets of a timed run or of a warm-up.
 *
 * @param data The data.
 * @param warm The warm-up slices (true) or the full splits.
 * @returns The sets.
 */
export function splitOf(
  data: BenchData,
  warm: boolean,
): { readonly train: Dataset; readonly test: Dataset } {
  return warm
    ? { train: data.warmTrain, test: data.warmTest }
    : { train: data.train, test: data.test };
}

/**
 * The trainer options of one timed epoch: batch 128, a no-op progress
 * callback every 50 steps (what the CLI's progress lines cost, less the
 * printing).
 *
 * @param key The epoch's key.
 * @returns The options.
 */
export function epochOptions<K>(key: K): {
  epochs: number;
  batchSize: number;
  key: K;
  progressEvery: number;
  onProgress: () => void;
} {
  return {
    epochs: 1,
    batchSize: TRAIN_BATCH,
    key,
    progressEvery: PROGRESS_EVERY,
    onProgress: () => {},
  };
}

/**
 * Times one trainer call of one epoch.
 *
 * @param samples Training images of the epoch.
 * @param call The call; it resolves to the epoch's record.
 * @returns The epoch's step seconds (the figure) and the call's wall seconds.
 */
export async function timeEpoch(
  samples: number,
  call: () => Promise<{ readonly seconds: number }>,
): Promise<Sample> {
  const start = performance.now();
  const record = await call();
  const wallSeconds = (performance.now() - start) / 1000;
  return { samples, seconds: record.seconds, wallSeconds };
}

/**
 * The workloads on the WASM device: LeNet-5 initialised on it (seed 0), a
 * float chain and a separate Bayesian Bits chain of epochs.
 *
 * @param threads WASM threads.
 * @param data The data (read by `api`'s library).
 * @param api The library (default this checkout).
 * @returns The workloads (they dispose the device).
 */
export async function wasmWorkloads(
  threads: number,
  data: BenchData,
  api: LibraryApi = THIS_CHECKOUT,
): Promise<Workloads> {
  const dev = await api.device("wasm", { threads });
  const model = api.lenet5();
  let float: { params: TensorParams; stats: Record<string, BatchNormStats> } =
    api.initGraph(model, api.randomKey(0), dev);
  const gated = api.bayesianBits(model, { mu: MU });
  const first = headOf(data.train, TRAIN_BATCH, api.makeDataset);
  let state: GatedState = await api.initGated(
    gated,
    api.initGraph(model, api.randomKey(0), dev),
    dev.upload(first.images, [first.count, ...first.shape]),
  );
  let epoch = 0;
  const options = () => epochOptions(api.randomKey(++epoch));
  const runs: Record<WorkloadKind, (warm: boolean) => Promise<Sample>> = {
    "float-train": (warm) =>
      timeEpoch(splitOf(data, warm).train.count, async () => {
        const r = await api.trainFloat(
          model,
          float,
          splitOf(data, warm),
          options(),
        );
        float = { params: r.params, stats: { ...r.stats } };
        return r.history[0];
      }),
    "bb-train": (warm) =>
      timeEpoch(splitOf(data, warm).train.count, async () => {
        const r = await api.trainBayesianBits(
          gated,
          state,
          splitOf(data, warm),
          {
            ...options(),
            evalBatchSize: EVAL_BATCH,
          },
        );
        state = r.state;
        return r.history[0];
      }),
    "float-eval": (warm) =>
      wallSample(
        splitOf(data, warm).test.count,
        () =>
          api.evaluate(model, float.params, splitOf(data, warm).test, {
            batchSize: EVAL_BATCH,
            stats: float.stats,
          }),
      ),
    "bb-eval": (warm) =>
      wallSample(
        splitOf(data, warm).test.count,
        () =>
          api.evaluateGated(gated, state, splitOf(data, warm).test, {
            batchSize: EVAL_BATCH,
          }),
      ),
  };
  return {
    label: dev.name,
    run: (kind, warm) => runs[kind](warm),
    peakBytes: () => {
      const peak = (dev as { peakBytes?: unknown }).peakBytes;
      return typeof peak === "number" ? peak : null;
    },
    dispose: () => dev.dispose(),
  };
}
