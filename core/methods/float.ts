/**
 * Float training as the identity method ({@link floatMethod}) and the
 * familiar front end for it ({@link trainFloat}).
 *
 * @module
 */

import type { Dataset } from "../data.ts";
import { analyzeGraph, type ModelGraph } from "../graph.ts";
import type { EpochStats } from "../loop.ts";
import type { MethodState, QuantizationMethod } from "../method.ts";
import type { BatchNormStats } from "../ops/batchnorm.ts";
import { adam, type Optimizer, type OptimizerState } from "../optim.ts";
import type { RandomKey } from "../rng.ts";
import { type TensorParams, train } from "../train.ts";

/** One progress report of {@link trainFloat}. */
export interface TrainProgress {
  /** 1-based epoch. */
  readonly epoch: number;
  /** Number of epochs. */
  readonly epochs: number;
  /** 1-based step within the epoch. */
  readonly step: number;
  /** Steps per epoch. */
  readonly steps: number;
  /** Mean training loss over the epoch so far. */
  readonly loss: number;
  /** Training samples per second over the epoch so far. */
  readonly samplesPerSecond: number;
  /** Estimated seconds left for the whole run. */
  readonly etaSeconds: number;
}

/** One epoch's record in a {@link TrainResult}. */
export interface EpochRecord {
  /** 1-based epoch. */
  readonly epoch: number;
  /** Mean training loss. */
  readonly loss: number;
  /** Test accuracy in [0, 1] after the epoch. */
  readonly testAccuracy: number;
  /** Wall time of the epoch's training steps, in seconds. */
  readonly seconds: number;
  /** Training samples per second. */
  readonly samplesPerSecond: number;
}

/** Options of {@link trainFloat}. */
export interface TrainFloatOptions {
  /** Epochs to train (a positive integer). */
  readonly epochs: number;
  /** Mini-batch size (default 128). */
  readonly batchSize?: number;
  /** The optimizer (default Adam, lr 1e-3). */
  readonly optimizer?: Optimizer;
  /** Key for shuffling (folded with the epoch). */
  readonly key: RandomKey;
  /** Called after every `progressEvery` steps and at the end of each epoch. */
  readonly onProgress?: (progress: TrainProgress) => void;
  /** Steps between progress reports (default 50). */
  readonly progressEvery?: number;
  /** Called after each epoch with its record. */
  readonly onEpoch?: (record: EpochRecord) => void;
  /** A clock in milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

/** What {@link trainFloat} returns. */
export interface TrainResult {
  /** The trained parameters. */
  readonly params: TensorParams;
  /** Batch-norm running statistics by layer. */
  readonly stats: Readonly<Record<string, BatchNormStats>>;
  /** The optimizer state after the last update. */
  readonly optimizerState: OptimizerState;
  /** One record per epoch. */
  readonly history: readonly EpochRecord[];
}

/**
 * Trains a model in float32 with softmax cross-entropy.
 *
 * @param model The model.
 * @param init Initial parameters and batch-norm statistics (e.g. from `initGraph`).
 * @param data Training and test sets.
 * @param options Epochs, batch size, optimizer, key, progress callbacks.
 * @returns Trained parameters, statistics, optimizer state and per-epoch history.
 * @throws {RangeError} On bad options or data whose image shape is not the model's.
 *
 * @example Two steps on a tiny synthetic set
 * ```ts
 * import { initGraph, makeDataset, type ModelGraph, randomKey, trainFloat } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const model: ModelGraph = {
 *   name: "tiny",
 *   inputShape: [1, 2, 2],
 *   nodes: [{ op: "flatten", name: "f", input: "input" }, {
 *     op: "dense",
 *     name: "fc",
 *     input: "f",
 *     outFeatures: 2,
 *   }],
 * };
 * const images = new Float32Array([1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1]);
 * const data = makeDataset(images, new Int32Array([0, 1, 0, 1]), [1, 2, 2]);
 * const result = await trainFloat(model, initGraph(model, randomKey(0)), { train: data, test: data }, {
 *   epochs: 1,
 *   batchSize: 2,
 *   key: randomKey(1),
 * });
 * assert.equal(result.history.length, 1);
 * ```
 */
export async function trainFloat(
  model: ModelGraph,
  init: {
    params: TensorParams;
    stats?: Readonly<Record<string, BatchNormStats>>;
  },
  data: { train: Dataset; test: Dataset },
  options: TrainFloatOptions,
): Promise<TrainResult> {
  analyzeGraph(model);
  const method = floatMethod({ optimizer: options.optimizer });
  const onProgress = options.onProgress;
  const onEpoch = options.onEpoch;
  const run = await train(
    method,
    model,
    {
      params: init.params,
      stats: { ...init.stats },
    },
    data,
    {
      epochs: options.epochs,
      batchSize: options.batchSize,
      key: options.key,
      evalBatchSize: 500,
      progressEvery: options.progressEvery,
      now: options.now,
      onProgress: onProgress &&
        ((p) =>
          onProgress({
            epoch: p.epoch,
            epochs: p.epochs,
            step: p.step,
            steps: p.steps,
            loss: p.loss,
            samplesPerSecond: p.samplesPerSecond,
            etaSeconds: p.etaSeconds,
          })),
      onEpoch: onEpoch &&
        ((r) => onEpoch(epochRecord(r.history[r.history.length - 1]))),
    },
  );
  return {
    params: run.state.params,
    stats: run.state.stats ?? {},
    optimizerState: run.optimizerState,
    history: run.history.map(epochRecord),
  };
}

function epochRecord(e: EpochStats): EpochRecord {
  return {
    epoch: e.epoch,
    loss: e.loss,
    testAccuracy: e.testAccuracy,
    seconds: e.seconds,
    samplesPerSecond: e.samplesPerSecond,
  };
}

/** Options of {@link floatMethod}. */
export interface FloatMethodOptions {
  /** The optimizer of every parameter (default Adam, lr 1e-3). */
  readonly optimizer?: Optimizer;
}

/**
 * Float training as a method: no quantizers, no penalty, one parameter
 * group (`"params"`); it freezes into a plan with every layer in full
 * precision.
 *
 * @param options The optimizer.
 * @returns The method (it attaches to a model as the model itself).
 *
 * @example
 * ```ts
 * import { floatMethod, lenet5 } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const method = floatMethod();
 * assert.equal(method.model(method.attach(lenet5())).name, "lenet5");
 * ```
 */
export function floatMethod(
  options: FloatMethodOptions = {},
): QuantizationMethod<ModelGraph, MethodState> {
  const optimizer = options.optimizer ?? adam({ lr: 1e-3 });
  return {
    name: "float",
    groups: ["params"],
    stochastic: false,
    metrics: {},
    attach: (model) => model,
    model: (model) => model,
    init: (_model, float) => Promise.resolve(float),
    withParams: (_model, _state, params, stats) => ({ params, stats }),
    group: () => "params",
    optimizer: () => optimizer,
    hooks: () => ({}),
    penalty: () => null,
    measure: () => ({}),
    freeze: (model, state) => ({
      model,
      params: state.params,
      stats: state.stats,
      plan: {
        method: "float",
        inputBits: 32,
        layers: analyzeGraph(model).layers.map((l) => ({
          name: l.name,
          weight: null,
          keptChannels: Array.from({ length: l.outChannels }, (_, i) => i),
          activation: null,
          details: {},
        })),
      },
    }),
  };
}
