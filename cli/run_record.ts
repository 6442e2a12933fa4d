/**
 * The run record a training checkpoint of `deno task train` carries (its
 * recipe, the history of the phases before the checkpoint's, wall time,
 * threads), read back and checked as strictly as a fresh run's flags: the
 * recipe goes through the same function as a `--config` file
 * (`configFromObject`), and the snapshot's phase, epoch and history must
 * agree with it. A checkpoint's SHA-256 catches damage, not edits: these
 * checks are what stand between an edited file and a run.
 *
 * @module
 */

import {
  type BayesianBitsSnapshot,
  bayesianBitsSnapshot,
  type TrainingPhase,
} from "../core/methods/bayesian_bits/mod.ts";
import { type HistoryEntry, parseHistory } from "../io/reports.ts";
import type { StoredSnapshot } from "../io/snapshot.ts";
import { configFromObject, DEFAULT_CONFIG, type RunConfig } from "./config.ts";
import { configNumber, describe, MAX_THREADS } from "./values.ts";

/** The run description a training snapshot carries (`run` of `saveSnapshot`). */
export interface RunRecord {
  /** The recipe. */
  readonly config: RunConfig;
  /** History of the phases before the snapshot's phase. */
  readonly earlierHistory: HistoryEntry[];
  /** Wall seconds spent in earlier invocations (resumes). */
  readonly wallSeconds: number;
  /**
   * WASM threads of the run: the quantizer's reductions split over threads,
   * so a continuation is bit-identical only with the same count.
   */
  readonly threads?: number;
}

/**
 * Recipe keys a stored recipe may lack, with the value their absence
 * means: `model` came after version 0.1.0, whose runs are LeNet-5 runs.
 */
const KEYS_ADDED_SINCE_0_1: Readonly<Partial<RunConfig>> = Object.freeze({
  model: "lenet5",
});

/** Whether `value` is a plain JSON object. */
function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The first phase of a recipe: Bayesian Bits, or post-training of a float
 * model.
 *
 * @param config The recipe.
 * @returns The phase.
 */
export function mainPhaseOf(config: RunConfig): TrainingPhase {
  return config.postTraining === "off" ? "bayesian-bits" : "post-training";
}

/**
 * The run record of a training snapshot, checked: its recipe complete (a
 * record of version 0.1.0 has no `model`: LeNet-5) and valid by the rules
 * of a fresh run's config, its earlier history (version 1 entries read as
 * version 2), wall seconds and thread count.
 *
 * @param run The snapshot's `run`.
 * @param path The checkpoint's path, for messages.
 * @returns The record.
 * @throws {RangeError | TypeError} On a missing or bad field, naming it
 *   (`checkpoint "p": run.config: mu must be ...`).
 */
export function runRecordOf(run: unknown, path: string): RunRecord {
  const where = `checkpoint "${path}"`;
  if (!isObject(run) || !isObject(run.config)) {
    throw new RangeError(
      `${where}: ${
        isObject(run) ? "run.config" : "run"
      } is missing or not an object: it was not written by \`deno task train\``,
    );
  }
  const stored = { ...KEYS_ADDED_SINCE_0_1, ...run.config };
  for (const key of Object.keys(DEFAULT_CONFIG)) {
    if (!Object.hasOwn(stored, key)) {
      throw new RangeError(`${where}: run.config.${key} is missing`);
    }
  }
  const config = configFromObject(`${where}: run.config`, stored, {
    ...DEFAULT_CONFIG,
  });
  const earlierHistory = parseHistory(
    run.earlierHistory,
    `${where}: run.earlierHistory`,
  );
  const wallSeconds = configNumber(
    `${where}: run.wallSeconds`,
    run.wallSeconds,
    "non-negative",
  );
  const threads = run.threads === undefined ? undefined : configNumber(
    `${where}: run.threads`,
    run.threads,
    "positive-integer",
    { max: MAX_THREADS },
  );
  return {
    config,
    earlierHistory,
    wallSeconds,
    ...(threads === undefined ? {} : { threads }),
  };
}

/**
 * A stored Bayesian Bits run of `deno task train`, checked: the run record
 * ({@link runRecordOf}), then the snapshot against its recipe: the phase is
 * one the recipe has, `epochs` is that phase's, `epoch` lies within it, the
 * history has one entry per epoch done and the earlier history one per
 * epoch of the phases before.
 *
 * @param stored The loaded snapshot (`loadSnapshot`).
 * @param path The checkpoint's path, for messages.
 * @returns The record and the Bayesian Bits snapshot.
 * @throws {RangeError | TypeError} On a field that is missing, bad, or
 *   disagrees with the recipe, naming it.
 */
export function storedRunOf(
  stored: StoredSnapshot,
  path: string,
): { record: RunRecord; snapshot: BayesianBitsSnapshot } {
  const record = runRecordOf(stored.run, path);
  const snapshot = bayesianBitsSnapshot(stored.snapshot);
  const where = `checkpoint "${path}"`;
  const { config } = record;
  const { phase, epoch, epochs } = snapshot;
  const main = mainPhaseOf(config);
  const fineTune = phase === "fixed-gates";
  if (phase !== main && !(fineTune && config.fineTuneEpochs > 0)) {
    throw new RangeError(
      `${where}: phase ${
        describe(phase)
      } is not a phase of its recipe (${main}${
        config.fineTuneEpochs > 0 ? " then fixed-gates" : ""
      })`,
    );
  }
  const planned = fineTune ? config.fineTuneEpochs : config.epochs;
  if (epochs !== planned) {
    throw new RangeError(
      `${where}: epochs is ${
        describe(epochs)
      }, but its recipe gives the ${phase} phase ${planned}`,
    );
  }
  if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch > epochs) {
    throw new RangeError(
      `${where}: epoch ${describe(epoch)} is not within 0..${epochs} (epochs)`,
    );
  }
  const counts: [string, number, number][] = [
    ["history", snapshot.history.length, epoch],
    [
      "run.earlierHistory",
      record.earlierHistory.length,
      fineTune ? config.epochs : 0,
    ],
  ];
  for (const [field, length, expected] of counts) {
    if (length !== expected) {
      throw new RangeError(
        `${where}: ${field} has ${length} entries, expected ${expected} (one per epoch done)`,
      );
    }
  }
  return { record, snapshot };
}
