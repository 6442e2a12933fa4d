/**
 * Training any method: {@link train} runs the one training loop with a
 * method's hooks, penalty and optimizer groups (a run learns the groups it
 * is told to; the method's phases are such choices), evaluates the frozen
 * model after every epoch and hands out a snapshot to save. Also the float
 * evaluation of a plain graph ({@link evaluate}) and the data checks.
 *
 * No `Deno.*` here: progress goes to a callback (the CLI prints it).
 *
 * @module
 */

import { batchCount, type Dataset } from "./data.ts";
import { accuracyOn, evaluateFrozen, withFrozen } from "./frozen.ts";
import { type ModelGraph, runGraph } from "./graph.ts";
import {
  type EpochStats,
  type LoopProgress,
  type LoopSpec,
  type LoopState,
  type ParamRecord,
  trainLoop,
} from "./loop.ts";
import type {
  MethodState,
  QuantizationMethod,
  StatsRecord,
  StepContext,
  TrainData,
} from "./method.ts";
import type { BatchNormStats } from "./ops/batchnorm.ts";
import { add } from "./ops/elementwise.ts";
import { softmaxCrossEntropy } from "./ops/loss.ts";
import type { OptimizerState } from "./optim.ts";
import { type RandomKey, splitKey } from "./rng.ts";
import type { Tensor } from "./tensor.ts";
import type { HistoryEntry } from "./report.ts";

export { progressRate } from "./loop.ts";

/** Parameters of a model as tensors. */
export type TensorParams = Readonly<Record<string, Tensor>>;

/**
 * Accuracy of a model on a dataset (evaluation mode: running batch-norm statistics).
 *
 * @param model The model.
 * @param params Its parameters.
 * @param data The dataset.
 * @param options Batch size (default 500) and batch-norm statistics.
 * @returns The fraction of correctly classified samples.
 * @throws {RangeError} On an empty dataset.
 *
 * @example
 * ```ts
 * import { evaluate, initGraph, lenet5, makeDataset, randomKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const data = makeDataset(new Float32Array(2 * 784), new Int32Array([0, 1]), [1, 28, 28]);
 * const { params } = initGraph(lenet5(), randomKey(0));
 * const accuracy = await evaluate(lenet5(), params, data);
 * assert.ok(accuracy >= 0 && accuracy <= 1);
 * ```
 */
export async function evaluate(
  model: ModelGraph,
  params: TensorParams,
  data: Dataset,
  options: {
    batchSize?: number;
    stats?: Readonly<Record<string, BatchNormStats>>;
  } = {},
): Promise<number> {
  const dev = Object.values(params)[0].device;
  return await accuracyOn(
    dev,
    data,
    options.batchSize ?? 500,
    (x) =>
      runGraph(model, params, x, { mode: "eval", stats: options.stats })
        .output,
  );
}

/**
 * Throws unless a dataset's image shape is the model's input shape; `what`
 * names the set in the message ("train", "test", ...).
 */
export function checkImageShape(
  model: ModelGraph,
  what: string,
  data: Dataset,
): void {
  if (data.shape.join() !== model.inputShape.join()) {
    throw new RangeError(
      `The ${what} images are [${
        data.shape.join(", ")
      }] but ${model.name} takes [${model.inputShape.join(", ")}]`,
    );
  }
}

/** Options of {@link train}. */
export interface TrainOptions<S extends MethodState> {
  /** Epochs of the run (a positive integer). */
  readonly epochs: number;
  /** Mini-batch size (default 128). */
  readonly batchSize?: number;
  /**
   * The run's key. A stochastic method splits it into a shuffling key and
   * a per-step key; a deterministic one shuffles with it.
   */
  readonly key: RandomKey;
  /** The groups learned (default: all of the method's groups). */
  readonly trainable?: readonly string[];
  /** A name for this run in snapshots and history (default `"train"`). */
  readonly phase?: string;
  /** Continue from a snapshot of the same run (same options and key). */
  readonly resume?: TrainRun<S>;
  /** Called every `progressEvery` steps and at each epoch's end. */
  readonly onProgress?: (progress: LoopProgress) => void;
  /** Steps between progress reports (default 50). */
  readonly progressEvery?: number;
  /** Called after every epoch (awaited): write a checkpoint here. */
  readonly onEpoch?: (run: TrainRun<S>) => void | Promise<void>;
  /** Evaluation batch size (default 1000). */
  readonly evalBatchSize?: number;
  /** A clock in milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

/** A run's state after some epochs: what a snapshot saves. */
export interface TrainRun<S extends MethodState> {
  /** The method's name. */
  readonly method: string;
  /** The run's name (its phase). */
  readonly phase: string;
  /** Epochs completed. */
  readonly epoch: number;
  /** Epochs of the whole run. */
  readonly epochs: number;
  /** The method's state. */
  readonly state: S;
  /** The optimizer state (its `step` also indexes the per-step keys). */
  readonly optimizerState: OptimizerState;
  /** One record per completed epoch. */
  readonly history: readonly EpochStats[];
}

/**
 * A saved snapshot (its history as report entries) as the training loop's
 * run, to resume it: each entry's cross-entropy and metrics become the
 * epoch's metrics, its relative GBOPs (and, unless `metricsMeasured` is
 * false, its metrics) the epoch's measures.
 *
 * @param s The snapshot: method, phase, epochs, state, optimizer state, history.
 * @param metricsMeasured Whether the method's metrics were measures too
 *   (default true).
 * @returns The run.
 */
export function trainRunOf<S extends MethodState>(
  s: {
    readonly method: string;
    readonly phase: string;
    readonly epoch: number;
    readonly epochs: number;
    readonly state: S;
    readonly optimizerState: OptimizerState;
    readonly history: readonly HistoryEntry[];
  },
  metricsMeasured = true,
): TrainRun<S> {
  return {
    method: s.method,
    phase: s.phase,
    epoch: s.epoch,
    epochs: s.epochs,
    state: s.state,
    optimizerState: s.optimizerState,
    history: s.history.map((h) => ({
      epoch: h.epoch,
      loss: h.loss,
      metrics: { crossEntropy: h.crossEntropy, ...h.metrics },
      testAccuracy: h.testAccuracy,
      measured: metricsMeasured
        ? { relativeGbops: h.relativeGbops, ...h.metrics }
        : { relativeGbops: h.relativeGbops },
      seconds: h.seconds,
      samplesPerSecond: h.samplesPerSecond,
    })),
  };
}

/** The loop's view of a method: its loss, optimizer and evaluation. */
function methodSpec<Q, S extends MethodState>(
  method: QuantizationMethod<Q, S>,
  q: Q,
  current: { state: S },
  groups: ReadonlySet<string>,
  options: { epochs: number; steps: number; evalBatchSize: number },
): LoopSpec<StatsRecord> {
  const model = method.model(q);
  const at = (params: ParamRecord, stats: StatsRecord) =>
    method.withParams(q, current.state, params, stats);
  return {
    optimizer: method.optimizer(q, options),
    trainable: (name) => groups.has(method.group(q, name)),
    metrics: { crossEntropy: "samples", ...method.metrics },
    loss: (params, stats, x, labels, key) => {
      const state = at(params, stats);
      const ctx: StepContext = { key, trainable: groups };
      const run = runGraph(model, params, x, {
        ...method.hooks(q, state, ctx),
        mode: "train",
        stats,
      });
      const ce = softmaxCrossEntropy(run.output, labels);
      const p = method.penalty(q, state, ctx);
      const loss = p ? add(ce, p.value) : ce;
      return {
        loss,
        metrics: { crossEntropy: ce, ...p?.metrics },
        carry: run.stats,
      };
    },
    prepare: readSmallTensors,
    fallback: (params, names) =>
      method.measure(q, at(params, current.state.stats ?? {}), names),
    measure: (params) =>
      method.measure(q, at(params, current.state.stats ?? {})),
    afterEpoch: method.afterEpoch && ((params, stats, epoch) => {
      current.state = method.afterEpoch!(q, at(params, stats), epoch);
      return { params: current.state.params, carry: current.state.stats ?? {} };
    }),
    evaluate: (params, stats, test) =>
      evaluateState(method, q, at(params, stats), test, options.evalBatchSize),
  };
}

/**
 * Reads back the small parameters (logits, ranges, biases) of a device
 * whose memory the host cannot see (WebGPU keeps a host copy of a small
 * tensor once read), so that the methods' host-side code (plans, BOPs,
 * priors) can use them; other devices need nothing.
 *
 * @param params The parameters.
 */
export async function readSmallTensors(params: ParamRecord): Promise<void> {
  await Promise.all(
    Object.values(params)
      .filter((t) => t.device.kind === "webgpu" && t.size <= 65536)
      .map((t) => t.read()),
  );
}

/**
 * Test accuracy of a method's state: frozen, evaluated, and the tensors
 * freezing made freed again.
 *
 * @param method The method.
 * @param q What it attached to the model.
 * @param state Its state.
 * @param test The dataset.
 * @param batchSize Evaluation batch size.
 * @returns The fraction of correctly classified samples.
 */
export async function evaluateState<Q, S extends MethodState>(
  method: QuantizationMethod<Q, S>,
  q: Q,
  state: S,
  test: Dataset,
  batchSize = 1000,
): Promise<number> {
  return await withFrozen(
    state.params,
    () => method.freeze(q, state),
    (frozen) => evaluateFrozen(frozen, test, { batchSize }),
  );
}

/** Checks the numbers of a run's options. */
function checkRunOptions(
  groups: readonly string[],
  options: { epochs: number; batchSize: number; trainable: readonly string[] },
): void {
  const { epochs, batchSize } = options;
  if (!Number.isInteger(epochs) || epochs < 1) {
    throw new RangeError(`epochs must be a positive integer, got ${epochs}`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(
      `batchSize must be a positive integer, got ${batchSize}`,
    );
  }
  for (const g of options.trainable) {
    if (!groups.includes(g)) {
      throw new RangeError(
        `Unknown parameter group "${g}": the groups are ${groups.join(", ")}`,
      );
    }
  }
}

/**
 * Trains a method's state: `loss = CE + the method's penalty`, one
 * optimizer update per batch on the groups this run learns, the test
 * accuracy of the frozen model and the method's measures after every
 * epoch. Runs on the device the parameters live on. Deterministic: the same
 * key, options and data give the same parameters, bit for bit, whether run
 * at once or resumed from any epoch's snapshot.
 *
 * @param method The method.
 * @param q What it attached to the model (`method.attach(model)`).
 * @param init The starting state (`method.init(...)`, or a previous run's).
 * @param data Training and test sets.
 * @param options Epochs, key, trainable groups, callbacks.
 * @returns The run after its last epoch.
 * @throws {RangeError} On bad options, data of the wrong shape, or a
 *   snapshot that does not belong to this run.
 */
export async function train<Q, S extends MethodState>(
  method: QuantizationMethod<Q, S>,
  q: Q,
  init: S,
  data: TrainData,
  options: TrainOptions<S>,
): Promise<TrainRun<S>> {
  const batchSize = options.batchSize ?? 128;
  const trainable = options.trainable ?? method.groups;
  const phase = options.phase ?? "train";
  checkRunOptions(method.groups, { ...options, batchSize, trainable });
  checkImageShape(method.model(q), "train", data.train);
  checkImageShape(method.model(q), "test", data.test);
  const steps = batchCount(data.train.count, batchSize);
  const groups = new Set(trainable);
  // The method's state between epochs: `afterEpoch` may replace it.
  const current = { state: options.resume?.state ?? init };
  const spec = methodSpec(method, q, current, groups, {
    epochs: options.epochs,
    steps,
    evalBatchSize: options.evalBatchSize ?? 1000,
  });
  const start = startOf(spec, init, options, steps, phase);
  const [shuffleKey, stepKey] = method.stochastic
    ? splitKey(options.key, 2)
    : [options.key, options.key];
  const runOf = (s: LoopState<StatsRecord>): TrainRun<S> => ({
    method: method.name,
    phase,
    epoch: s.epoch,
    epochs: options.epochs,
    state: method.withParams(q, current.state, s.params, s.carry),
    optimizerState: s.optimizerState,
    history: s.history,
  });
  const end = await trainLoop(spec, start, data, {
    epochs: options.epochs,
    batchSize,
    shuffleKey,
    stepKey,
    progressEvery: options.progressEvery ?? 50,
    now: options.now ?? (() => performance.now()),
    onProgress: options.onProgress,
    onEpoch: options.onEpoch && ((s) => options.onEpoch!(runOf(s))),
  });
  return runOf(end);
}

/** The loop's starting state: fresh, or the snapshot being resumed. */
function startOf<S extends MethodState>(
  spec: LoopSpec<StatsRecord>,
  init: S,
  options: TrainOptions<S>,
  steps: number,
  phase: string,
): LoopState<StatsRecord> {
  const r = options.resume;
  if (!r) {
    const trainable = Object.fromEntries(
      Object.entries(init.params).filter(([name]) => spec.trainable(name)),
    );
    return {
      params: init.params,
      carry: init.stats ?? {},
      optimizerState: spec.optimizer.init(trainable),
      epoch: 0,
      history: [],
    };
  }
  if (r.phase !== phase || r.epochs !== options.epochs) {
    throw new RangeError(
      `Cannot resume: the snapshot is of a ${r.phase} run of ${r.epochs} epochs, this is a ${phase} run of ${options.epochs}`,
    );
  }
  if (r.optimizerState.step !== r.epoch * steps) {
    throw new RangeError(
      `Cannot resume: the snapshot has ${r.optimizerState.step} steps after ${r.epoch} epochs, this run takes ${steps} per epoch`,
    );
  }
  return {
    params: r.state.params,
    carry: r.state.stats ?? {},
    optimizerState: r.optimizerState,
    epoch: r.epoch,
    history: r.history,
  };
}
