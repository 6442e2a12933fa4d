/**
 * FracBits' protocol on LeNet-5 (spec `fracbits.md` section 11) through the
 * shared training loop: one run of `epochs` (100) with Adam on weights,
 * widths and clips, the hard assignment after `assignAfterEpoch` (80), then
 * fixed widths; progress callbacks and a snapshot after every epoch, resumed
 * bit for bit.
 *
 * @module
 */

import type { Dataset } from "../../data.ts";
import type { ModelGraph } from "../../graph.ts";
import type { MethodState } from "../../method.ts";
import type { OptimizerState } from "../../optim.ts";
import { type HistoryEntry, historyEntry } from "../../report.ts";
import type { RandomKey } from "../../rng.ts";
import { train, type TrainRun, trainRunOf } from "../../train.ts";
import type { Assignment } from "./assign.ts";
import { fracBitsMethod } from "./method.ts";
import {
  checkOption,
  fracBits,
  type FracBitsModel,
  type FracBitsOptions,
  type FracBitsState,
  uniformCost,
} from "./model.ts";

/** A progress report of {@link trainFracBits}. */
export interface FracBitsProgress {
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
  /** The penalty at the last step (0 after the assignment). */
  readonly penalty: number;
  /** The expected (fractional) cost, or the assigned one. */
  readonly cost: number;
  /** Relative GBOPs (percent) of the integer widths. */
  readonly relativeGbops: number;
  /** Training samples per second over the epoch so far. */
  readonly samplesPerSecond: number;
  /** Estimated seconds left (training steps only). */
  readonly etaSeconds: number;
}

/** Everything needed to continue a run: saved after every epoch. */
export interface FracBitsSnapshot {
  /** The method, as snapshot files record it. */
  readonly method: "fracbits";
  /** The run's phase (`"fracbits"`). */
  readonly phase: string;
  /** Epochs completed. */
  readonly epoch: number;
  /** Epochs of the whole run. */
  readonly epochs: number;
  /** Parameters and the assignment (JSON, null before it). */
  readonly state: FracBitsState;
  /** The optimizer state. */
  readonly optimizerState: OptimizerState;
  /** One entry per completed epoch. */
  readonly history: readonly HistoryEntry[];
}

/** Options of {@link trainFracBits}. */
export interface TrainFracBitsOptions {
  /** Epochs of the run (default 100; the assignment is after `assignAfterEpoch`). */
  readonly epochs?: number;
  /** Mini-batch size (default 128). */
  readonly batchSize?: number;
  /** The run's key (shuffling). */
  readonly key: RandomKey;
  /** Continue from a snapshot of the same run (same options and key). */
  readonly resume?: FracBitsSnapshot;
  /** Called every `progressEvery` steps and at each epoch's end. */
  readonly onProgress?: (progress: FracBitsProgress) => void;
  /** Steps between progress reports (default 50). */
  readonly progressEvery?: number;
  /** Called after every epoch (awaited): write a checkpoint here. */
  readonly onEpoch?: (snapshot: FracBitsSnapshot) => void | Promise<void>;
  /** Evaluation batch size (default 1000). */
  readonly evalBatchSize?: number;
  /** A clock in milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

const PHASE = "fracbits";

/**
 * Trains a FracBits model with the protocol: `loss = CE + kappa |cost -
 * T|` with fractional widths, the hard assignment after epoch
 * `assignAfterEpoch`, then fixed widths (no penalty); the test accuracy of
 * the frozen model (integer widths) after every epoch.
 *
 * @param fm The prepared model ({@link fracBits}).
 * @param init Its initial state (`initFracBits`).
 * @param data Training and test sets.
 * @param options Epochs, key, callbacks, resume.
 * @returns The final snapshot.
 * @throws {RangeError} On bad options, data of the wrong shape, or a
 *   snapshot of another run.
 *
 * @example Two epochs on a tiny set, the widths assigned after the first
 * ```ts
 * import { initGraph, makeDataset, type ModelGraph, randomKey } from "@bbits/core";
 * import { fracBits, initFracBits, trainFracBits } from "@bbits/core/fracbits";
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
 * const fm = fracBits(model, { target: 1e-7, initBits: 4.5, assignAfterEpoch: 1 });
 * const init = initFracBits(fm, initGraph(model, randomKey(0)));
 * const result = await trainFracBits(fm, init, { train: data, test: data }, {
 *   epochs: 2, batchSize: 2, key: randomKey(1),
 * });
 * assert.equal(result.history.length, 2);
 * assert.ok(result.state.assignment !== null);
 * ```
 */
export async function trainFracBits(
  fm: FracBitsModel,
  init: FracBitsState,
  data: { readonly train: Dataset; readonly test: Dataset },
  options: TrainFracBitsOptions,
): Promise<FracBitsSnapshot> {
  const epochs = checkOption(
    "epochs",
    options.epochs ?? 100,
    (v) => Number.isInteger(v) && v >= 1,
    "a positive integer",
  );
  const method = fracBitsMethod({ target: fm.options.target });
  const snapshot = (r: TrainRun<FracBitsState>): FracBitsSnapshot => ({
    method: "fracbits",
    phase: PHASE,
    epoch: r.epoch,
    epochs: r.epochs,
    state: r.state,
    optimizerState: r.optimizerState,
    history: r.history.map((e) => historyEntry(PHASE, e)),
  });
  const onProgress = options.onProgress;
  const run = await train(method, fm, init, data, {
    epochs,
    batchSize: options.batchSize,
    key: options.key,
    phase: PHASE,
    resume: options.resume && runOf(options.resume),
    progressEvery: options.progressEvery,
    evalBatchSize: options.evalBatchSize,
    now: options.now,
    onProgress: onProgress &&
      ((p) =>
        onProgress({
          epoch: p.epoch,
          epochs: p.epochs,
          step: p.step,
          steps: p.steps,
          loss: p.loss,
          crossEntropy: p.metrics.crossEntropy,
          penalty: p.metrics.penalty ?? 0,
          cost: p.metrics.cost ?? p.measured.cost,
          relativeGbops: p.measured.relativeGbops,
          samplesPerSecond: p.samplesPerSecond,
          etaSeconds: p.etaSeconds,
        })),
    onEpoch: options.onEpoch && ((r) => options.onEpoch!(snapshot(r))),
  });
  return snapshot(run);
}

/** A snapshot as the training loop's run. */
function runOf(s: FracBitsSnapshot): TrainRun<FracBitsState> {
  return trainRunOf(s);
}

/**
 * A loaded training snapshot as a FracBits one, checked.
 *
 * @param snapshot The snapshot (e.g. `loadSnapshot`'s).
 * @returns It, typed for {@link trainFracBits}'s `resume`.
 * @throws {RangeError} If it holds another method's run or lacks the
 *   assignment field.
 *
 * @example
 * ```ts
 * import { fracBitsSnapshot } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const stored = {
 *   method: "float", phase: "train", epoch: 1, epochs: 1, history: [],
 *   state: { params: {} }, optimizerState: { step: 0, slots: {} },
 * };
 * assert.throws(() => fracBitsSnapshot(stored), /a float run/);
 * ```
 */
export function fracBitsSnapshot(snapshot: {
  readonly method: string;
  readonly phase: string;
  readonly epoch: number;
  readonly epochs: number;
  readonly state: MethodState & { readonly [field: string]: unknown };
  readonly optimizerState: OptimizerState;
  readonly history: readonly HistoryEntry[];
}): FracBitsSnapshot {
  const { method, state } = snapshot;
  if (method !== "fracbits") {
    throw new RangeError(`Not a FracBits snapshot: it holds a ${method} run`);
  }
  const assignment = state.assignment;
  if (
    assignment !== null &&
    (typeof assignment !== "object" || !Array.isArray(
      (assignment as { widths?: unknown } | undefined)?.widths,
    ))
  ) {
    throw new RangeError(
      "Not a FracBits snapshot: its state lacks the assignment field (null or a record with widths)",
    );
  }
  return {
    ...snapshot,
    method,
    state: {
      params: state.params,
      stats: state.stats,
      assignment: assignment as Assignment | null,
    },
  };
}

/**
 * The uniform width with the same cost as `target` (real-valued; spec
 * section 11's `k_eq`), by bisection on the uniform cost.
 *
 * @param fm A prepared model (its ranges and cost).
 * @param target The native target.
 * @returns `k_eq` in `[minBits, maxBits]`.
 */
export function uniformEquivalentBits(
  fm: FracBitsModel,
  target: number,
): number {
  let [lo, hi] = [fm.options.minBits, fm.options.maxBits];
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (uniformCost(fm, fm.options.cost, mid) > target) hi = mid;
    else lo = mid;
  }
  return (lo + hi) / 2;
}

/**
 * The protocol's model for a target: `initBits = ceil(k_eq) + 0.5` (at
 * most `maxBits - 0.5`), where `k_eq` is the uniform width costing the
 * target (within 0.001 of an integer counts as that integer), unless the
 * options set `initBits`.
 *
 * @param model The float model.
 * @param options The method's knobs (with a target).
 * @returns The prepared model.
 * @throws {RangeError} On bad options.
 *
 * @example The targets of spec section 11
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { fracBitsRecipe } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const init = [1.7312, 1.0371, 0.5172, 0.36, 0.25].map((t) =>
 *   fracBitsRecipe(lenet5(), { targetRelativeGbops: t }).options.initBits
 * );
 * assert.deepEqual(init, [4.5, 3.5, 2.5, 2.5, 2.5]);
 * ```
 */
export function fracBitsRecipe(
  model: ModelGraph,
  options: FracBitsOptions,
): FracBitsModel {
  if (options.initBits !== undefined) return fracBits(model, options);
  const probe = fracBits(model, options);
  const k = uniformEquivalentBits(probe, probe.options.target);
  const initBits = Math.min(
    Math.ceil(k - 1e-3) + 0.5,
    probe.options.maxBits - 0.5,
  );
  return fracBits(model, {
    ...options,
    initBits: Math.max(initBits, probe.options.minBits),
  });
}
