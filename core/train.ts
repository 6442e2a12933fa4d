/**
 * Float training and evaluation of a model graph: mini-batches, the loss,
 * its gradient by {@link valueAndGrad}, one optimizer update per batch,
 * batch-norm statistics carried along, progress reported per step.
 *
 * No `Deno.*` here: progress goes to a callback (the CLI prints it).
 *
 * @module
 */

import { batches, type Dataset } from "./data.ts";
import { analyzeGraph, type ModelGraph, runGraph } from "./graph.ts";
import { type EpochStats, type LoopSpec, trainLoop } from "./loop.ts";
import type { BatchNormStats } from "./ops/batchnorm.ts";
import { softmaxCrossEntropy } from "./ops/loss.ts";
import { adam, type Optimizer, type OptimizerState } from "./optim.ts";
import type { RandomKey } from "./rng.ts";
import type { Tensor } from "./tensor.ts";

export { progressRate } from "./loop.ts";

/** Parameters of a model as tensors. */
export type TensorParams = Readonly<Record<string, Tensor>>;

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
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  const dev = Object.values(params)[0].device;
  let correct = 0;
  for (const batch of batches(data, options.batchSize ?? 500)) {
    const count = dev.scope(() => {
      const x = dev.upload(batch.images, [batch.size, ...data.shape]);
      const labels = dev.upload(batch.labels, [batch.size], "int32");
      const { output } = runGraph(model, params, x, {
        mode: "eval",
        stats: options.stats,
      });
      return dev.kernels.countCorrect(output, labels);
    });
    correct += (await count.read())[0];
    dev.free(count);
  }
  return correct / data.count;
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
  const { epochs, key } = options;
  const batchSize = options.batchSize ?? 128;
  if (!Number.isInteger(epochs) || epochs < 1) {
    throw new RangeError(`epochs must be a positive integer, got ${epochs}`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(
      `batchSize must be a positive integer, got ${batchSize}`,
    );
  }
  for (const [name, set] of Object.entries(data)) {
    checkImageShape(model, name, set);
  }
  analyzeGraph(model);
  const optimizer = options.optimizer ?? adam({ lr: 1e-3 });
  const end = await trainLoop<Stats>(
    floatSpec(model, optimizer),
    {
      params: init.params,
      carry: { ...init.stats },
      optimizerState: optimizer.init(init.params),
      epoch: 0,
      history: [],
    },
    data,
    {
      epochs,
      batchSize,
      shuffleKey: key,
      stepKey: key,
      progressEvery: options.progressEvery ?? 50,
      now: options.now ?? (() => performance.now()),
      onProgress: options.onProgress &&
        ((p) =>
          options.onProgress!({
            epoch: p.epoch,
            epochs: p.epochs,
            step: p.step,
            steps: p.steps,
            loss: p.loss,
            samplesPerSecond: p.samplesPerSecond,
            etaSeconds: p.etaSeconds,
          })),
      onEpoch: options.onEpoch &&
        ((s) => options.onEpoch!(epochRecord(s.history[s.history.length - 1]))),
    },
  );
  return {
    params: end.params,
    stats: end.carry,
    optimizerState: end.optimizerState,
    history: end.history.map(epochRecord),
  };
}

type Stats = Readonly<Record<string, BatchNormStats>>;

/** Float training as the loop sees it: cross-entropy, every parameter learned. */
function floatSpec(model: ModelGraph, optimizer: Optimizer): LoopSpec<Stats> {
  return {
    optimizer,
    trainable: () => true,
    metrics: {},
    loss: (params, stats, x, labels) => {
      const run = runGraph(model, params, x, { mode: "train", stats });
      const loss = softmaxCrossEntropy(run.output, labels);
      return { loss, metrics: {}, carry: run.stats };
    },
    evaluate: (params, stats, test) => evaluate(model, params, test, { stats }),
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
