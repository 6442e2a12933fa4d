/**
 * Training a gated model with the paper's recipe (spec section 6): the
 * Bayesian Bits phase (weights, gate logits and ranges learned with sampled
 * gates), fine-tuning with fixed gates, and post-training (weights frozen),
 * each one run of the shared training loop.
 *
 * @module
 */

import { checkGatedState } from "./state_check.ts";
import type { Dataset } from "../../data.ts";
import type { OptimizerState } from "../../optim.ts";
import { type HistoryEntry, historyEntry } from "../../report.ts";
import type { RandomKey } from "../../rng.ts";
import {
  checkImageShape,
  train,
  type TrainRun,
  trainRunOf,
} from "../../train.ts";
import { bayesianBitsMethod } from "./method.ts";
import { checkNumber, type GatedModel, type GatedState } from "./model.ts";

/** Which training phase {@link trainBayesianBits} runs. */
export type TrainingPhase = "bayesian-bits" | "fixed-gates" | "post-training";

/** A progress report of {@link trainBayesianBits}. */
export interface BayesianBitsProgress {
  /** The phase. */
  readonly phase: TrainingPhase;
  /** 1-based epoch. */
  readonly epoch: number;
  /** Epochs of the run. */
  readonly epochs: number;
  /** 1-based step within the epoch. */
  readonly step: number;
  /** Steps per epoch. */
  readonly steps: number;
  /** Mean loss over the epoch so far. */
  readonly loss: number;
  /** Mean cross-entropy over the epoch so far. */
  readonly crossEntropy: number;
  /** Summed prior at the last step (without mu). */
  readonly prior: number;
  /** Training samples per second over the epoch so far. */
  readonly samplesPerSecond: number;
  /** Estimated seconds left (training steps only). */
  readonly etaSeconds: number;
  /** Relative GBOPs (percent) of the current deterministic gates. */
  readonly relativeGbops: number;
}

/** Everything needed to continue a run: saved after every epoch. */
export interface BayesianBitsSnapshot {
  /** The method, as snapshot files record it. */
  readonly method: "bayesian-bits";
  /** The phase. */
  readonly phase: TrainingPhase;
  /** Epochs completed. */
  readonly epoch: number;
  /** Epochs of the whole run. */
  readonly epochs: number;
  /** Parameters and signedness. */
  readonly state: GatedState;
  /** The optimizer state (its `step` also indexes the gate noise). */
  readonly optimizerState: OptimizerState;
  /** One entry per completed epoch. */
  readonly history: readonly HistoryEntry[];
}

/** Options of {@link trainBayesianBits}. */
export interface TrainBayesianBitsOptions {
  /** Epochs of the run (a positive integer). */
  readonly epochs: number;
  /** Mini-batch size (default 128). */
  readonly batchSize?: number;
  /** The run's key: shuffling and gate noise are derived from it. */
  readonly key: RandomKey;
  /**
   * `"bayesian-bits"` (default): weights, logits and ranges learned with
   * sampled gates. `"fixed-gates"`: gates frozen at their deterministic
   * values; weights and ranges learned (no prior). `"post-training"`:
   * weights frozen; logits (and ranges unless `learnRanges` is false) learned.
   */
  readonly phase?: TrainingPhase;
  /** Post-training only: learn the ranges too (default true). */
  readonly learnRanges?: boolean;
  /**
   * The weights' learning-rate schedule: `"two-thirds"` (default, the
   * recipe: constant for the first two thirds of the epochs, then linear
   * to 0, per epoch) or `"constant"`.
   */
  readonly weightSchedule?: "two-thirds" | "constant";
  /** Continue from a snapshot of the same run (same options and key). */
  readonly resume?: BayesianBitsSnapshot;
  /** Called every `progressEvery` steps and at each epoch's end. */
  readonly onProgress?: (progress: BayesianBitsProgress) => void;
  /** Steps between progress reports (default 50). */
  readonly progressEvery?: number;
  /** Called after every epoch (awaited): write a checkpoint here. */
  readonly onEpoch?: (snapshot: BayesianBitsSnapshot) => void | Promise<void>;
  /** Evaluation batch size (default 1000). */
  readonly evalBatchSize?: number;
  /** A clock in milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

/**
 * Trains a gated model: `loss = CE + mu * sum_q R_q`, three Adam optimizers
 * (weights with the recipe's schedule, gate logits, ranges), one fresh
 * hard-concrete sample per gate per step from the key, and after every
 * epoch the test accuracy and relative GBOPs with deterministic gates.
 *
 * Deterministic: the same key, options and data give the same parameters,
 * bit for bit, whether run at once or resumed from any epoch's snapshot.
 *
 * @param gated The gated model.
 * @param init Its initial state (from {@link initGated}, or a previous phase).
 * @param data Training and test sets.
 * @param options Epochs, key, phase, callbacks.
 * @returns The final snapshot.
 * @throws {RangeError} On bad options, data of the wrong shape, or a
 *   snapshot that does not belong to this run.
 *
 * @example One epoch on a tiny synthetic set
 * ```ts
 * import { bayesianBits, initGated, initGraph, makeDataset, type ModelGraph, randomKey, Tensor, trainBayesianBits } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const model: ModelGraph = {
 *   name: "tiny",
 *   inputShape: [1, 2, 2],
 *   nodes: [
 *     { op: "flatten", name: "f", input: "input" },
 *     { op: "dense", name: "fc1", input: "f", outFeatures: 3, activation: "relu" },
 *     { op: "dense", name: "fc2", input: "fc1", outFeatures: 2 },
 *   ],
 * };
 * const images = new Float32Array([1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1]);
 * const data = makeDataset(images, new Int32Array([0, 1, 0, 1]), [1, 2, 2]);
 * const gated = bayesianBits(model, { mu: 0.01 });
 * const init = await initGated(gated, initGraph(model, randomKey(0)), Tensor.from(images, [4, 1, 2, 2]));
 * const result = await trainBayesianBits(gated, init, { train: data, test: data }, {
 *   epochs: 1, batchSize: 2, key: randomKey(1),
 * });
 * assert.equal(result.history.length, 1);
 * assert.equal(result.optimizerState.step, 2);
 * ```
 */
export async function trainBayesianBits(
  gated: GatedModel,
  init: GatedState,
  data: { readonly train: Dataset; readonly test: Dataset },
  options: TrainBayesianBitsOptions,
): Promise<BayesianBitsSnapshot> {
  const phase = options.phase ?? "bayesian-bits";
  checkTrainOptions(gated, init, data, options);
  const method = bayesianBitsMethod({
    weightSchedule: options.weightSchedule ?? "two-thirds",
  });
  const snapshot = (r: TrainRun<GatedState>): BayesianBitsSnapshot => ({
    method: "bayesian-bits",
    phase,
    epoch: r.epoch,
    epochs: r.epochs,
    state: r.state,
    optimizerState: r.optimizerState,
    history: r.history.map((e) => historyEntry(phase, e)),
  });
  const onProgress = options.onProgress;
  const run = await train(method, gated, init, data, {
    epochs: options.epochs,
    batchSize: options.batchSize,
    key: options.key,
    phase,
    trainable: PHASE_GROUPS[phase](options.learnRanges ?? true),
    resume: options.resume && runOf(options.resume),
    progressEvery: options.progressEvery,
    evalBatchSize: options.evalBatchSize,
    now: options.now,
    onProgress: onProgress &&
      ((p) =>
        onProgress({
          phase,
          epoch: p.epoch,
          epochs: p.epochs,
          step: p.step,
          steps: p.steps,
          loss: p.loss,
          crossEntropy: p.metrics.crossEntropy,
          prior: p.metrics.prior,
          samplesPerSecond: p.samplesPerSecond,
          etaSeconds: p.etaSeconds,
          relativeGbops: p.measured.relativeGbops,
        })),
    onEpoch: options.onEpoch && ((r) => options.onEpoch!(snapshot(r))),
  });
  return snapshot(run);
}

/** A stored snapshot of any method, as `loadSnapshot` reads it. */
export interface StoredRunSnapshot {
  /** The method's name. */
  readonly method: string;
  /** The run's phase. */
  readonly phase: string;
  /** Epochs completed. */
  readonly epoch: number;
  /** Epochs of the whole run. */
  readonly epochs: number;
  /** Parameters and the method's JSON fields. */
  readonly state: {
    readonly params: GatedState["params"];
    readonly [field: string]: unknown;
  };
  /** The optimizer state. */
  readonly optimizerState: OptimizerState;
  /** One entry per completed epoch. */
  readonly history: readonly HistoryEntry[];
}

/**
 * A loaded training snapshot as a Bayesian Bits one, checked: its method,
 * its phase and the signedness of its quantizers.
 *
 * @param snapshot The snapshot (e.g. `loadSnapshot`'s).
 * @returns The same snapshot, typed for {@link trainBayesianBits}'s `resume`.
 * @throws {RangeError} If it is another method's, of an unknown phase, or
 *   lacks the signedness record.
 *
 * @example
 * ```ts
 * import { bayesianBitsSnapshot } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const stored = {
 *   method: "float", phase: "train", epoch: 1, epochs: 1, history: [],
 *   state: { params: {} }, optimizerState: { step: 0, slots: {} },
 * };
 * assert.throws(() => bayesianBitsSnapshot(stored), /a float run/);
 * ```
 */
export function bayesianBitsSnapshot(
  snapshot: StoredRunSnapshot,
): BayesianBitsSnapshot {
  const { method, phase, state } = snapshot;
  if (method !== "bayesian-bits") {
    throw new RangeError(
      `Not a Bayesian Bits snapshot: it holds a ${method} run`,
    );
  }
  if (!Object.hasOwn(PHASE_GROUPS, phase)) {
    throw new RangeError(
      `Not a Bayesian Bits snapshot: unknown phase ${JSON.stringify(phase)}`,
    );
  }
  const signed = state.signed as Record<string, unknown> | undefined;
  if (
    typeof signed !== "object" || signed === null ||
    !Object.values(signed).every((v) => typeof v === "boolean")
  ) {
    throw new RangeError(
      "Not a Bayesian Bits snapshot: its state lacks the quantizers' signedness",
    );
  }
  return {
    ...snapshot,
    method,
    phase: phase as TrainingPhase,
    state: { params: state.params, signed: signed as Record<string, boolean> },
  };
}

/** The groups each phase learns. */
const PHASE_GROUPS: Record<TrainingPhase, (ranges: boolean) => string[]> = {
  "bayesian-bits": () => ["weights", "logits", "ranges"],
  "fixed-gates": () => ["weights", "ranges"],
  "post-training": (ranges) => ranges ? ["logits", "ranges"] : ["logits"],
};

/** A snapshot as the training loop's run. */
function runOf(s: BayesianBitsSnapshot): TrainRun<GatedState> {
  return trainRunOf(s);
}

function checkTrainOptions(
  gated: GatedModel,
  init: GatedState,
  data: { readonly train: Dataset; readonly test: Dataset },
  options: TrainBayesianBitsOptions,
): void {
  const phase = options.phase ?? "bayesian-bits";
  checkNumber(
    "epochs",
    options.epochs,
    (v) => Number.isInteger(v) && v >= 1,
    "a positive integer",
  );
  checkNumber(
    "batchSize",
    options.batchSize ?? 128,
    (v) => Number.isInteger(v) && v >= 1,
    "a positive integer",
  );
  if (!["bayesian-bits", "fixed-gates", "post-training"].includes(phase)) {
    throw new RangeError(
      `Invalid phase ${
        JSON.stringify(phase)
      }: it must be "bayesian-bits", "fixed-gates" or "post-training"`,
    );
  }
  const weightSchedule = options.weightSchedule ?? "two-thirds";
  if (weightSchedule !== "two-thirds" && weightSchedule !== "constant") {
    throw new RangeError(
      `Invalid weightSchedule ${
        JSON.stringify(weightSchedule)
      }: it must be "two-thirds" or "constant"`,
    );
  }
  checkImageShape(gated.model, "training", data.train);
  checkImageShape(gated.model, "test", data.test);
  checkGatedState(
    gated,
    init,
    "The initial state (initialise it with initGated)",
  );
  if (options.resume) {
    checkGatedState(gated, options.resume.state, "Cannot resume the snapshot");
  }
}
