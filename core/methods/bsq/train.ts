/**
 * BSQ's protocol (spec `bsq.md` section 11) through the one training loop:
 * the planes train in periods of `requantizeEvery` epochs, each its own run
 * (`"bsq-1"`, `"bsq-2"`, ...) with a fresh optimizer, re-quantized between
 * them and once after the last; then the scheme is fixed and fine-tuned
 * (`"fine-tune"`). One learning-rate schedule spans every run. Activation
 * maxima are re-calibrated at each boundary and at the end.
 *
 * @module
 */

import type { Dataset } from "../../data.ts";
import type { ParamRecord } from "../../loop.ts";
import type { OptimizerState } from "../../optim.ts";
import { type HistoryEntry, historyEntry } from "../../report.ts";
import { foldIn, type RandomKey } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import {
  evaluateState,
  train,
  type TrainRun,
  trainRunOf,
} from "../../train.ts";
import { bsqMethod } from "./method.ts";
import {
  type BsqModel,
  type BsqState,
  calibrateBsq,
  fixScheme,
} from "./model.ts";

/** A progress report of {@link trainBsq}. */
export interface BsqProgress {
  /** The run: `"bsq-1"`, `"bsq-2"`, ..., `"fine-tune"`. */
  readonly phase: string;
  /** 1-based epoch over the whole protocol. */
  readonly epoch: number;
  /** Epochs of the whole protocol. */
  readonly epochs: number;
  /** 1-based step within the epoch. */
  readonly step: number;
  /** Steps per epoch. */
  readonly steps: number;
  /** Mean loss over the epoch so far. */
  readonly loss: number;
  /** Mean cross-entropy over the epoch so far. */
  readonly crossEntropy: number;
  /** The regulariser `R` (without alpha) at the last step; 0 once fixed. */
  readonly regularizer: number;
  /** Training samples per second over the epoch so far. */
  readonly samplesPerSecond: number;
  /** Estimated seconds left in this run. */
  readonly etaSeconds: number;
  /** Relative GBOPs (percent, `bw = N + 1`) of the current precisions. */
  readonly relativeGbops: number;
}

/** One run's state after some epochs: what a snapshot saves. */
export interface BsqSnapshot {
  /** `"bsq"`. */
  readonly method: "bsq";
  /** The run. */
  readonly phase: string;
  /** Epochs of this run completed. */
  readonly epoch: number;
  /** Epochs of this run. */
  readonly epochs: number;
  /** Parameters, statistics, `bits` and `stage`. */
  readonly state: BsqState;
  /** The optimizer state of this run. */
  readonly optimizerState: OptimizerState;
  /** This run's epochs (counted from 1 within the run). */
  readonly history: readonly HistoryEntry[];
}

/** Everything needed to continue the protocol: the run's snapshot and the earlier runs' history. */
export interface BsqCheckpoint {
  /** The current run's snapshot. */
  readonly snapshot: BsqSnapshot;
  /** History of the runs before it. */
  readonly earlierHistory: readonly HistoryEntry[];
}

/** Options of {@link trainBsq}. */
export interface TrainBsqOptions {
  /** Epochs with the planes training (default 60; 0 skips to fine-tuning). */
  readonly bsqEpochs?: number;
  /** Epochs with the scheme fixed (default 40). */
  readonly fineTuneEpochs?: number;
  /** `Prun_Int`: epochs between re-quantizations (default 20). */
  readonly requantizeEvery?: number;
  /** Adam's learning rate (default 1e-3). */
  readonly learningRate?: number;
  /** Mini-batch size (default 128). */
  readonly batchSize?: number;
  /** The protocol's key (each run shuffles with it folded with its first epoch). */
  readonly key: RandomKey;
  /** Continue from a checkpoint of the same protocol (same options and key). */
  readonly resume?: BsqCheckpoint;
  /** Called every `progressEvery` steps and at each epoch's end. */
  readonly onProgress?: (progress: BsqProgress) => void;
  /** Steps between progress reports (default 50). */
  readonly progressEvery?: number;
  /** Called after every epoch (awaited): write a checkpoint here. */
  readonly onEpoch?: (checkpoint: BsqCheckpoint) => void | Promise<void>;
  /** Evaluation batch size (default 1000). */
  readonly evalBatchSize?: number;
  /** Batches of the training set each calibration reads (default all). */
  readonly calibrationBatches?: number;
  /** A clock in milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

/** What {@link trainBsq} returns. */
export interface BsqResult {
  /** The final state: scheme fixed, activation maxima calibrated. */
  readonly state: BsqState;
  /** Every epoch of every run. */
  readonly history: readonly HistoryEntry[];
  /** Test accuracy of the final state, frozen. */
  readonly testAccuracy: number;
}

/** One run of the protocol. */
export interface BsqRunPlan {
  /** Its phase name. */
  readonly phase: string;
  /** Its first epoch in the protocol (0-based). */
  readonly first: number;
  /** Its epochs. */
  readonly epochs: number;
}

function checkCount(what: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new RangeError(
      `Invalid BSQ option ${what} ${
        String(v)
      }: it must be an integer >= ${min}`,
    );
  }
  return v;
}

/**
 * The runs of the protocol: planes in periods of `requantizeEvery` epochs,
 * then fine-tuning.
 *
 * @param options Epochs and the re-quantization interval.
 * @returns The runs in order.
 * @throws {RangeError} On a bad count, or no epochs at all.
 *
 * @example The protocol's 60 + 40 epochs
 * ```ts
 * import { bsqRuns } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(bsqRuns({}).map((r) => [r.phase, r.first, r.epochs]), [
 *   ["bsq-1", 0, 20], ["bsq-2", 20, 20], ["bsq-3", 40, 20], ["fine-tune", 60, 40],
 * ]);
 * ```
 */
export function bsqRuns(
  options: Pick<
    TrainBsqOptions,
    "bsqEpochs" | "fineTuneEpochs" | "requantizeEvery"
  >,
): BsqRunPlan[] {
  const bsqEpochs = checkCount("bsqEpochs", options.bsqEpochs ?? 60, 0);
  const fineTune = checkCount(
    "fineTuneEpochs",
    options.fineTuneEpochs ?? 40,
    0,
  );
  const every = checkCount("requantizeEvery", options.requantizeEvery ?? 20, 1);
  if (bsqEpochs + fineTune === 0) {
    throw new RangeError(
      "BSQ needs at least one epoch: bsqEpochs and fineTuneEpochs are both 0",
    );
  }
  const runs: BsqRunPlan[] = [];
  for (let first = 0; first < bsqEpochs; first += every) {
    const epochs = Math.min(every, bsqEpochs - first);
    runs.push({ phase: `bsq-${runs.length + 1}`, first, epochs });
  }
  if (fineTune > 0) {
    runs.push({ phase: "fine-tune", first: bsqEpochs, epochs: fineTune });
  }
  return runs;
}

/** A snapshot as the training loop's run. */
function runOf(s: BsqSnapshot): TrainRun<BsqState> {
  return trainRunOf(s, false);
}

/** Frees the tensors of `old` that `next` and `keep` do not hold. */
function freeSuperseded(
  old: readonly Tensor[],
  next: ParamRecord,
  keep: ReadonlySet<Tensor>,
): void {
  const held = new Set(Object.values(next));
  const gone = old.filter((t) => !held.has(t) && !keep.has(t));
  if (gone.length > 0) gone[0].device.free(...new Set(gone));
}

/**
 * What happens after a run (a planes run's last epoch re-quantized already,
 * as its `afterEpoch`): the scheme fixed before fine-tuning or at the end,
 * and the activation maxima calibrated.
 */
async function boundary(
  q: BsqModel,
  state: BsqState,
  after: BsqRunPlan | undefined,
  calibrate: (s: BsqState) => Promise<BsqState>,
): Promise<BsqState> {
  const fixed = after === undefined || after.phase === "fine-tune";
  return await calibrate(fixed ? fixScheme(q, state) : state);
}

/** A run's history with its epochs counted over the whole protocol. */
function global(
  history: readonly HistoryEntry[],
  run: BsqRunPlan,
): HistoryEntry[] {
  return history.map((h) => ({ ...h, epoch: run.first + h.epoch }));
}

/** The tensors of a loop state: parameters and optimizer slots. */
function tensorsOf(state: BsqState, optimizerState: OptimizerState): Tensor[] {
  const out = [...Object.values(state.params)];
  for (const slots of Object.values(optimizerState.slots)) {
    out.push(...Object.values(slots));
  }
  return out;
}

/** What one run hands on. */
interface RunEnd {
  readonly state: BsqState;
  readonly tensors: Tensor[];
  readonly history: HistoryEntry[];
}

/** Shared by the runs of one call of {@link trainBsq}. */
interface Protocol {
  readonly q: BsqModel;
  readonly data: { readonly train: Dataset; readonly test: Dataset };
  readonly options: TrainBsqOptions;
  readonly total: number;
  readonly keep: Set<Tensor>;
}

/** Runs (or resumes) one run of the protocol through `train`. */
async function runOne(
  p: Protocol,
  run: BsqRunPlan,
  state: BsqState,
  earlier: readonly HistoryEntry[],
  resume: BsqSnapshot | undefined,
): Promise<RunEnd> {
  const { options } = p;
  const method = bsqMethod({
    ...p.q.options,
    learningRate: options.learningRate,
    schedule: { totalEpochs: p.total, firstEpoch: run.first },
    requantizeAfter: run.phase === "fine-tune" ? undefined : run.epochs,
  });
  const entries = (r: TrainRun<BsqState>) =>
    r.history.map((e) =>
      historyEntry(run.phase, { ...e, epoch: run.first + e.epoch })
    );
  const snapshot = (r: TrainRun<BsqState>): BsqSnapshot => ({
    method: "bsq",
    phase: run.phase,
    epoch: r.epoch,
    epochs: r.epochs,
    state: r.state,
    optimizerState: r.optimizerState,
    history: r.history.map((e) => historyEntry(run.phase, e)),
  });
  let previous: Tensor[] = [];
  const onProgress = options.onProgress;
  const end = await train(method, p.q, state, p.data, {
    epochs: run.epochs,
    batchSize: options.batchSize,
    key: foldIn(options.key, run.first),
    phase: run.phase,
    trainable: run.phase === "fine-tune"
      ? ["weights", "scales", "float"]
      : ["planes", "scales", "float"],
    resume: resume && runOf(resume),
    progressEvery: options.progressEvery,
    evalBatchSize: options.evalBatchSize,
    now: options.now,
    onProgress: onProgress && ((r) =>
      onProgress({
        phase: run.phase,
        epoch: run.first + r.epoch,
        epochs: p.total,
        step: r.step,
        steps: r.steps,
        loss: r.loss,
        crossEntropy: r.metrics.crossEntropy,
        regularizer: r.metrics.regularizer ?? 0,
        samplesPerSecond: r.samplesPerSecond,
        etaSeconds: r.etaSeconds,
        relativeGbops: r.measured.relativeGbops,
      })),
    onEpoch: async (r) => {
      await options.onEpoch?.({
        snapshot: snapshot(r),
        earlierHistory: earlier,
      });
      const now = tensorsOf(r.state, r.optimizerState);
      freeSuperseded(
        previous,
        Object.fromEntries(now.map((t, i) => [i, t])),
        p.keep,
      );
      previous = now;
    },
  });
  return { state: end.state, tensors: previous, history: entries(end) };
}

/** Where a call starts: the run's index, and the snapshot to resume. */
function startOf(
  runs: readonly BsqRunPlan[],
  resume: BsqCheckpoint | undefined,
): number {
  if (!resume) return 0;
  const { snapshot } = resume;
  const index = runs.findIndex((r) => r.phase === snapshot.phase);
  if (
    snapshot.method !== "bsq" || index < 0 ||
    runs[index].epochs !== snapshot.epochs
  ) {
    throw new RangeError(
      `Cannot resume: the checkpoint holds a ${snapshot.method} run "${snapshot.phase}" of ${snapshot.epochs} epochs, which this BSQ protocol (${
        runs.map((r) => `${r.phase}: ${r.epochs}`).join(", ")
      }) does not have`,
    );
  }
  return index;
}

/**
 * Runs BSQ's protocol (spec section 11) from a converted model: the planes
 * train (`loss = CE + alpha R`, Adam, planes clipped to [0, 2] after each
 * step) in runs of `requantizeEvery` epochs with a re-quantization after
 * each, then the scheme is fixed and the normalised weights fine-tuned;
 * activation maxima are re-calibrated on the training set at each boundary.
 * The learning rate is constant for two thirds of all epochs, then linear
 * to 0. Deterministic: the same key, options and data give the same
 * result, bit for bit, whether run at once or resumed from any epoch's
 * checkpoint. A checkpoint's tensors stay valid until the next `onEpoch`.
 *
 * @param q The BSQ model.
 * @param init Its state from {@link initBsq} (left untouched).
 * @param data Training and test sets.
 * @param options Epochs, key, callbacks.
 * @returns The final state, the history of every epoch, the final accuracy.
 * @throws {RangeError} On bad options or a checkpoint of another protocol.
 *
 * @example Two tiny runs
 * ```ts
 * import { initGraph, makeDataset, type ModelGraph, randomKey, Tensor } from "@bbits/core";
 * import { bsq, initBsq, trainBsq } from "@bbits/core/bsq";
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
 * const q = bsq(model, { alpha: 0.01 });
 * const init = await initBsq(q, initGraph(model, randomKey(0)), Tensor.from(images, [4, 1, 2, 2]));
 * const result = await trainBsq(q, init, { train: data, test: data }, {
 *   bsqEpochs: 1, fineTuneEpochs: 1, batchSize: 2, key: randomKey(1),
 * });
 * assert.deepEqual(result.history.map((h) => h.phase), ["bsq-1", "fine-tune"]);
 * assert.equal(result.state.stage, "fixed");
 * ```
 */
export async function trainBsq(
  q: BsqModel,
  init: BsqState,
  data: { readonly train: Dataset; readonly test: Dataset },
  options: TrainBsqOptions,
): Promise<BsqResult> {
  const runs = bsqRuns(options);
  const last = runs[runs.length - 1];
  const first = startOf(runs, options.resume);
  const keep = new Set([
    ...Object.values(init.params),
    ...(options.resume
      ? tensorsOf(
        options.resume.snapshot.state,
        options.resume.snapshot.optimizerState,
      )
      : []),
  ]);
  const p: Protocol = {
    q,
    data,
    options,
    total: last.first + last.epochs,
    keep,
  };
  const calibrate = (s: BsqState) =>
    calibrateBsq(q, s, data.train, { maxBatches: options.calibrationBatches });
  const resume = options.resume?.snapshot;
  const history = [...(options.resume?.earlierHistory ?? [])];
  let state = resume ? resume.state : await calibrate(init);
  for (let i = first; i < runs.length; i++) {
    const before = Object.values(state.params);
    const snap = i === first ? resume : undefined;
    const end = snap && snap.epoch === snap.epochs
      ? {
        state: snap.state,
        tensors: [],
        history: global(snap.history, runs[i]),
      }
      : await runOne(p, runs[i], state, history, snap);
    history.push(...end.history);
    const next = await boundary(q, end.state, runs[i + 1], calibrate);
    freeSuperseded([...before, ...end.tensors], next.params, keep);
    state = next;
  }
  const method = bsqMethod(q.options);
  const testAccuracy = await evaluateState(
    method,
    q,
    state,
    data.test,
    options.evalBatchSize ?? 1000,
  );
  return { state, history, testAccuracy };
}

/** A stored snapshot of any method, as `loadSnapshot` reads it. */
export interface StoredBsqSnapshot {
  /** The method's name. */
  readonly method: string;
  /** The run's phase. */
  readonly phase: string;
  /** Epochs completed. */
  readonly epoch: number;
  /** Epochs of the run. */
  readonly epochs: number;
  /** Parameters and the method's JSON fields. */
  readonly state: {
    readonly params: ParamRecord;
    readonly stats?: BsqState["stats"];
    readonly [field: string]: unknown;
  };
  /** The optimizer state. */
  readonly optimizerState: OptimizerState;
  /** This run's epochs. */
  readonly history: readonly HistoryEntry[];
}

/**
 * A loaded training snapshot as a BSQ one, checked: its method, its phase
 * and the state's `bits` (a plane count per layer) and `stage`.
 *
 * @param snapshot The snapshot (e.g. `loadSnapshot`'s).
 * @returns The same snapshot, typed for {@link trainBsq}'s `resume`.
 * @throws {RangeError} If it is another method's or its state lacks the
 *   fields BSQ saves.
 *
 * @example
 * ```ts
 * import { bsqSnapshot } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const stored = {
 *   method: "float", phase: "train", epoch: 1, epochs: 1, history: [],
 *   state: { params: {} }, optimizerState: { step: 0, slots: {} },
 * };
 * assert.throws(() => bsqSnapshot(stored), /a float run/);
 * ```
 */
export function bsqSnapshot(snapshot: StoredBsqSnapshot): BsqSnapshot {
  const { method, phase, state } = snapshot;
  if (method !== "bsq") {
    throw new RangeError(`Not a BSQ snapshot: it holds a ${method} run`);
  }
  if (!/^(bsq-[1-9][0-9]*|fine-tune)$/.test(phase)) {
    throw new RangeError(
      `Not a BSQ snapshot: unknown phase ${JSON.stringify(phase)}`,
    );
  }
  const bits = state.bits as Record<string, unknown> | undefined;
  if (
    typeof bits !== "object" || bits === null ||
    !Object.values(bits).every((n) => Number.isInteger(n) && (n as number) >= 0)
  ) {
    throw new RangeError(
      "Not a BSQ snapshot: its state lacks the plane count of each layer (bits)",
    );
  }
  if (state.stage !== "planes" && state.stage !== "fixed") {
    throw new RangeError(
      `Not a BSQ snapshot: its state's stage is ${
        JSON.stringify(state.stage)
      }, not "planes" or "fixed"`,
    );
  }
  return {
    ...snapshot,
    method,
    state: {
      params: state.params,
      stats: state.stats,
      bits: bits as Record<string, number>,
      stage: state.stage,
    },
  };
}
