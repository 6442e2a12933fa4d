/**
 * Float training and evaluation of a model graph: mini-batches, the loss,
 * its gradient by {@link valueAndGrad}, one optimizer update per batch,
 * batch-norm statistics carried along, progress reported per step.
 *
 * No `Deno.*` here: progress goes to a callback (the CLI prints it).
 *
 * @module
 */

import { valueAndGrad } from "./autodiff.ts";
import { type Batch, batchCount, batches, type Dataset } from "./data.ts";
import { analyzeGraph, type ModelGraph, runGraph } from "./graph.ts";
import type { BatchNormStats } from "./ops/batchnorm.ts";
import { type GemmFn, withGemm } from "./ops/gemm.ts";
import { type OpKernels, withKernels } from "./ops/kernels.ts";
import { softmaxCrossEntropy } from "./ops/loss.ts";
import { adam, type Optimizer, type OptimizerState } from "./optim.ts";
import { foldIn, type RandomKey } from "./rng.ts";
import { Tensor, tensorStorage } from "./tensor.ts";

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
  /**
   * The matrix multiply the conv/dense ops use (e.g. `wasmGemm`, or a
   * threaded `WasmBackend.gemm`); default: the plain-TypeScript reference.
   */
  readonly gemm?: GemmFn;
  /**
   * Kernels of the other training ops and of the optimizer update (e.g.
   * `wasmKernels`, or a threaded `WasmBackend.kernels`, usually with the
   * same backend's `gemm`); default: the plain-TypeScript references.
   */
  readonly kernels?: OpKernels;
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

function batchTensor(batch: Batch, shape: readonly number[]): Tensor {
  return Tensor.adopt(batch.images, [batch.size, ...shape]);
}

/**
 * Accuracy of a model on a dataset (evaluation mode: running batch-norm statistics).
 *
 * @param model The model.
 * @param params Its parameters.
 * @param data The dataset.
 * @param options Batch size (default 500), batch-norm statistics, GEMM and
 *   op kernels (as in {@link TrainFloatOptions}).
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
 * const accuracy = evaluate(lenet5(), params, data);
 * assert.ok(accuracy >= 0 && accuracy <= 1);
 * ```
 */
export function evaluate(
  model: ModelGraph,
  params: TensorParams,
  data: Dataset,
  options: {
    batchSize?: number;
    stats?: Readonly<Record<string, BatchNormStats>>;
    gemm?: GemmFn;
    kernels?: OpKernels;
  } = {},
): number {
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  let correct = 0;
  for (const batch of batches(data, options.batchSize ?? 500)) {
    const { output } = withKernels(
      options.kernels ?? null,
      () =>
        withGemm(
          options.gemm ?? null,
          () =>
            runGraph(model, params, batchTensor(batch, data.shape), {
              mode: "eval",
              stats: options.stats,
            }),
        ),
    );
    correct += countCorrect(output, batch.labels);
  }
  return correct / data.count;
}

/**
 * Throughput and time left of a run in progress: `seen` samples of the
 * current epoch (1-based `epoch` of `epochs`, `perEpoch` samples each) took
 * `elapsedSeconds`. Shared by the float and the Bayesian Bits trainers.
 */
export function progressRate(
  seen: number,
  elapsedSeconds: number,
  epoch: number,
  epochs: number,
  perEpoch: number,
): { samplesPerSecond: number; etaSeconds: number } {
  const samplesPerSecond = seen / Math.max(elapsedSeconds, 1e-9);
  const remaining = (epochs - epoch) * perEpoch + (perEpoch - seen);
  return { samplesPerSecond, etaSeconds: remaining / samplesPerSecond };
}

/**
 * How many rows of `output` (`[N, classes]` logits) have their largest
 * logit (the first, on ties) at the label. Shared by the float and the
 * gated evaluation.
 */
export function countCorrect(output: Tensor, labels: Int32Array): number {
  const logits = tensorStorage(output);
  const k = output.shape[1];
  let correct = 0;
  for (let i = 0; i < output.shape[0]; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) {
      if (logits[i * k + j] > logits[i * k + best]) best = j;
    }
    if (best === labels[i]) correct++;
  }
  return correct;
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
 * const result = trainFloat(model, initGraph(model, randomKey(0)), { train: data, test: data }, {
 *   epochs: 1,
 *   batchSize: 2,
 *   key: randomKey(1),
 * });
 * assert.equal(result.history.length, 1);
 * ```
 */
export function trainFloat(
  model: ModelGraph,
  init: {
    params: TensorParams;
    stats?: Readonly<Record<string, BatchNormStats>>;
  },
  data: { train: Dataset; test: Dataset },
  options: TrainFloatOptions,
): TrainResult {
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
  const now = options.now ?? (() => performance.now());
  const every = options.progressEvery ?? 50;
  let params: TensorParams = init.params;
  let stats: Record<string, BatchNormStats> = { ...init.stats };
  let state = optimizer.init(arrays(params));
  const steps = batchCount(data.train.count, batchSize);
  const lossAndGrad = valueAndGrad(
    (p: TensorParams, x: Tensor, labels: Int32Array) => {
      const run = runGraph(model, p, x, { mode: "train", stats });
      stats = run.stats;
      return softmaxCrossEntropy(run.output, labels);
    },
  );
  const kernels = options.kernels ?? null;
  const history: EpochRecord[] = [];
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const epochStart = now();
    let lossSum = 0;
    let seen = 0;
    let step = 0;
    for (
      const batch of batches(data.train, batchSize, { key: foldIn(key, epoch) })
    ) {
      step++;
      const { value, grads } = withKernels(
        kernels,
        () =>
          withGemm(options.gemm ?? null, () =>
            lossAndGrad(
              params,
              batchTensor(batch, data.train.shape),
              batch.labels,
            )),
      );
      const update = withKernels(
        kernels,
        () => optimizer.update(arrays(params), arrays(grads), state),
      );
      state = update.state;
      params = tensors(update.params, params);
      lossSum += value * batch.size;
      seen += batch.size;
      if (options.onProgress && (step % every === 0 || step === steps)) {
        options.onProgress({
          epoch,
          epochs,
          step,
          steps,
          loss: lossSum / seen,
          ...progressRate(
            seen,
            (now() - epochStart) / 1000,
            epoch,
            epochs,
            data.train.count,
          ),
        });
      }
    }
    const seconds = (now() - epochStart) / 1000;
    const record: EpochRecord = {
      epoch,
      loss: lossSum / seen,
      testAccuracy: evaluate(model, params, data.test, {
        stats,
        gemm: options.gemm,
        kernels: options.kernels,
      }),
      seconds,
      samplesPerSecond: seen / Math.max(seconds, 1e-9),
    };
    history.push(record);
    options.onEpoch?.(record);
  }
  return { params, stats, optimizerState: state, history };
}

function arrays(params: TensorParams): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(params)) out[name] = tensorStorage(t);
  return out;
}

function tensors(
  values: Readonly<Record<string, Float32Array>>,
  like: TensorParams,
): TensorParams {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(like)) {
    out[name] = Tensor.adopt(values[name], t.shape);
  }
  return out;
}
