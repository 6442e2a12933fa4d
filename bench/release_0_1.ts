/**
 * The workloads of `bench/workloads.ts` through the 0.1.0 API, for
 * `bench/compare.ts`: a WASM backend from `createWasmBackend({threads})`,
 * passed as `backend`, `gemm` and `kernels` to every trainer and
 * evaluator; `trainFloat`, `evaluate`, `evaluateGated` and `initGated`
 * synchronous; tensors made with `Tensor.adopt`. Same model, seeds, batch
 * sizes, progress callbacks and epoch chaining as this checkout's
 * workloads, so the two time the same epochs.
 *
 * @module
 */

import type { Dataset } from "../core/data.ts";
import { type Sample, wallSample } from "./timing.ts";
import {
  type BenchData,
  epochOptions,
  EVAL_BATCH,
  headOf,
  MU,
  splitOf,
  timeEpoch,
  TRAIN_BATCH,
  type WorkloadKind,
  type Workloads,
} from "./workloads.ts";

/** 0.1.0 tensors, models and states: opaque here. */
type Opaque = { readonly __opaque?: never };

/** Parameters and batch-norm statistics in 0.1.0. */
interface FloatState {
  readonly params: Opaque;
  readonly stats?: Opaque;
}

/** An epoch record of a 0.1.0 trainer (seconds of the epoch's steps). */
interface EpochRecord {
  readonly seconds: number;
}

/** 0.1.0's `WasmBackend`: the parts passed to the trainers. */
interface WasmBackend {
  readonly gemm: unknown;
  readonly kernels: unknown;
  readonly threads: number;
  readonly simd: string;
  dispose(): void;
}

/** The 0.1.0 functions the workloads call (the baseline's `mod.ts`). */
export interface Api01 {
  /** Starts a WASM backend. */
  createWasmBackend(options: { threads: number }): Promise<WasmBackend>;
  /** Initialises a model's parameters. */
  initGraph(model: Opaque, key: Opaque): FloatState;
  /** The LeNet-5 graph. */
  lenet5(): Opaque;
  /** A random key from a seed. */
  randomKey(seed: number): Opaque;
  /** A dataset from arrays. */
  makeDataset(
    images: Float32Array,
    labels: Int32Array,
    shape: readonly [number, number, number],
  ): Dataset;
  /** Tensors over existing storage. */
  readonly Tensor: { adopt(values: Float32Array, shape: number[]): Opaque };
  /** The float trainer (synchronous). */
  trainFloat(
    model: Opaque,
    init: FloatState,
    data: { train: Dataset; test: Dataset },
    options: Record<string, unknown>,
  ): FloatState & { readonly history: readonly EpochRecord[] };
  /** The float evaluator (synchronous). */
  evaluate(
    model: Opaque,
    params: Opaque,
    data: Dataset,
    options: Record<string, unknown>,
  ): number;
  /** A gated model. */
  bayesianBits(model: Opaque, options: { mu: number }): Opaque;
  /** A gated model's initial state (synchronous). */
  initGated(
    gated: Opaque,
    float: FloatState,
    firstBatch: Opaque,
    options: Record<string, unknown>,
  ): Opaque;
  /** The Bayesian Bits trainer. */
  trainBayesianBits(
    gated: Opaque,
    init: Opaque,
    data: { train: Dataset; test: Dataset },
    options: Record<string, unknown>,
  ): Promise<{ readonly state: Opaque; readonly history: EpochRecord[] }>;
  /** The gated evaluator (synchronous). */
  evaluateGated(
    gated: Opaque,
    state: Opaque,
    data: Dataset,
    options: Record<string, unknown>,
  ): number;
}

/**
 * Whether a module namespace looks like the 0.1.0 API.
 *
 * @param mod A checkout's `mod.ts` namespace.
 * @returns True if it exports `createWasmBackend` and the trainers.
 */
export function isApi01(mod: Record<string, unknown>): boolean {
  return ["createWasmBackend", "trainFloat", "trainBayesianBits"].every((k) =>
    typeof mod[k] === "function"
  );
}

/**
 * The workloads through the 0.1.0 API on a WASM backend.
 *
 * @param api The baseline's `mod.ts` namespace.
 * @param threads WASM threads.
 * @param data The data (made with the baseline's `makeDataset`).
 * @returns The workloads (they dispose the backend).
 */
export async function workloads01(
  api: Api01,
  threads: number,
  data: BenchData,
): Promise<Workloads> {
  const wasm = await api.createWasmBackend({ threads });
  const accel = { backend: wasm, gemm: wasm.gemm, kernels: wasm.kernels };
  const model = api.lenet5();
  let float = api.initGraph(model, api.randomKey(0));
  const gated = api.bayesianBits(model, { mu: MU });
  const first = headOf(data.train, TRAIN_BATCH, api.makeDataset);
  let state = api.initGated(
    gated,
    api.initGraph(model, api.randomKey(0)),
    api.Tensor.adopt(first.images.slice(), [first.count, ...first.shape]),
    accel,
  );
  let epoch = 0;
  const options = () => ({
    ...epochOptions(api.randomKey(++epoch)),
    ...accel,
  });
  const runs: Record<WorkloadKind, (warm: boolean) => Promise<Sample>> = {
    "float-train": (warm) =>
      timeEpoch(splitOf(data, warm).train.count, () => {
        const r = api.trainFloat(model, float, splitOf(data, warm), options());
        float = { params: r.params, stats: r.stats };
        return Promise.resolve(r.history[0]);
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
            ...accel,
            batchSize: EVAL_BATCH,
            stats: float.stats,
          }),
      ),
    "bb-eval": (warm) =>
      wallSample(
        splitOf(data, warm).test.count,
        () =>
          api.evaluateGated(gated, state, splitOf(data, warm).test, {
            ...accel,
            batchSize: EVAL_BATCH,
          }),
      ),
  };
  return {
    label: `wasm backend (${wasm.threads} thread${
      wasm.threads === 1 ? "" : "s"
    }, ${wasm.simd})`,
    run: (kind, warm) => runs[kind](warm),
    peakBytes: () => null,
    dispose: () => wasm.dispose(),
  };
}
