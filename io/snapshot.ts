/**
 * Training snapshots on disk, for any method: everything `train` needs to
 * continue a run (the method's name, the phase and epoch, parameters,
 * batch-norm statistics, the method's JSON state such as Bayesian Bits'
 * signedness, optimizer state, history), plus the caller's run
 * description, in one checkpoint file written atomically (see
 * `io/checkpoint.ts`: temporary file, fsync, rename, SHA-256).
 *
 * Tensors: `param/<name>` for each parameter, `stats/<layer>/<field>` for
 * batch-norm statistics, `opt/<param>/<slot>` for the optimizer's slots.
 * The JSON state: `kind`, `method`, `phase`, `epoch`, `epochs`, `step`, the
 * method's own fields, `history`, `run`. Saving reads the tensors from
 * whatever device they are on; loading puts them on the device the caller
 * names ({@link LoadSnapshotOptions}, the reference device unless given),
 * so a run saved on one device can continue on another. Snapshots written
 * by version 0.1.0 (Bayesian Bits only, no `method`) still load.
 *
 * The shuffling and any per-step noise are derived from the run's key and
 * the step/epoch counters, so the key is the whole generator state: the
 * caller keeps it in `run` (e.g. the seed).
 *
 * @module
 */

import type { MethodState, StatsRecord } from "../core/method.ts";
import type { BatchNormStats } from "../core/ops/batchnorm.ts";
import type { OptimizerState } from "../core/optim.ts";
import type { HistoryEntry } from "../core/report.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  flattenOptimizerState,
  loadCheckpoint,
  type LoadOptions,
  saveCheckpoint,
  unflattenOptimizerState,
} from "./checkpoint.ts";
import { paramsFromTensors, paramsToTensors } from "./params.ts";
import {
  describeValue,
  int,
  object,
  own,
  quote,
  string,
  validate,
} from "../core/schema.ts";
import { parseHistory } from "./report_json.ts";

// Re-exported so that this module documents on its own as an entry point.
export type { Device } from "../core/device.ts";
export type { MethodState, StatsRecord } from "../core/method.ts";
export type { OptimizerState } from "../core/optim.ts";
export type { HistoryEntry } from "../core/report.ts";
export type { Tensor } from "../core/tensor.ts";

/** The `kind` written into a snapshot's state. */
export const SNAPSHOT_KIND = "bbits.training-snapshot";

/**
 * The `kind` of version 0.1.0's snapshots, still read: they hold Bayesian
 * Bits runs (the only method then) and record no method.
 */
export const SNAPSHOT_KIND_V1 = "bbits.bayesian-bits-snapshot";

/** The method of every {@link SNAPSHOT_KIND_V1} snapshot. */
const V1_METHOD = "bayesian-bits";

/**
 * A loaded method state: parameters, batch-norm statistics when the run
 * has them, and the method's JSON fields (e.g. Bayesian Bits' `signed`),
 * unchecked: the method's own reader checks them.
 */
export type SnapshotState = MethodState & Readonly<Record<string, unknown>>;

/** A run's state after some epochs: what a snapshot holds. */
export interface TrainingSnapshot<S extends MethodState = SnapshotState> {
  /** The method's name (`TrainRun.method`), e.g. `"bayesian-bits"`. */
  readonly method: string;
  /** The run's phase. */
  readonly phase: string;
  /** Epochs completed. */
  readonly epoch: number;
  /** Epochs of the whole run. */
  readonly epochs: number;
  /**
   * The method's state: tensors (`params`, `stats`) and JSON fields (any
   * other key).
   */
  readonly state: S;
  /** The optimizer state (its `step` also indexes the per-step keys). */
  readonly optimizerState: OptimizerState;
  /** One entry per completed epoch. */
  readonly history: readonly HistoryEntry[];
}

/** A snapshot with the caller's run description, as stored. */
export interface StoredSnapshot<S extends MethodState = SnapshotState> {
  /** The training snapshot. */
  readonly snapshot: TrainingSnapshot<S>;
  /**
   * The caller's JSON description of the run (options, seed, earlier
   * phases' history...), stored as given.
   */
  readonly run: unknown;
}

/** Options of {@link loadSnapshot}. */
export type LoadSnapshotOptions = LoadOptions;

const OPT = "opt/";
const STATS = "stats/";

/** JSON-state keys of the format: a method's fields must not use them. */
const RESERVED = new Set([
  "kind",
  "method",
  "phase",
  "epoch",
  "epochs",
  "step",
  "history",
  "run",
]);

/** The method's JSON fields of a state: everything but its tensors. */
function jsonFields(state: MethodState): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(state)) {
    if (key === "params" || key === "stats") continue;
    if (RESERVED.has(key)) {
      throw new RangeError(
        `Cannot save a snapshot whose state has a field "${key}": the snapshot format uses that name`,
      );
    }
    fields[key] = value;
  }
  return fields;
}

/**
 * Writes a training snapshot to `path`, atomically (the previous file stays
 * intact on any failure). The parameters, statistics and optimizer slots
 * are read from their device first; they must stay alive until the promise
 * resolves.
 *
 * @param path The file to write (its directory must exist).
 * @param stored The snapshot and the run description.
 * @returns A promise resolved once the file is in place.
 * @throws {TypeError} If `run` or the state's JSON fields are not
 *   JSON-serialisable.
 * @throws {RangeError} If a state field has a name the format reserves.
 *
 * @example
 * ```ts
 * import { loadSnapshot, saveSnapshot } from "./snapshot.ts";
 * import { referenceDevice } from "../core/reference/device.ts";
 * import { Tensor } from "../core/tensor.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await saveSnapshot(`${dir}/run.safetensors`, {
 *   snapshot: {
 *     method: "bayesian-bits", phase: "bayesian-bits", epoch: 0, epochs: 3, history: [],
 *     state: { params: { "fc.weight": Tensor.from([0.5, -1]) }, signed: { "fc.weight": true } },
 *     optimizerState: { step: 10, slots: { "fc.weight": { m: Tensor.zeros([2]), v: Tensor.zeros([2]) } } },
 *   },
 *   run: { seed: 0 },
 * });
 * const { snapshot, run } = await loadSnapshot(`${dir}/run.safetensors`, { device: referenceDevice });
 * assert.equal(snapshot.method, "bayesian-bits");
 * assert.deepEqual([...await snapshot.state.params["fc.weight"].read()], [0.5, -1]);
 * assert.deepEqual(snapshot.state.signed, { "fc.weight": true });
 * assert.equal(snapshot.optimizerState.step, 10);
 * assert.deepEqual(run, { seed: 0 });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveSnapshot<S extends MethodState>(
  path: string,
  stored: StoredSnapshot<S>,
): Promise<void> {
  const { snapshot } = stored;
  const fields = jsonFields(snapshot.state);
  const tensors: Record<string, Tensor> = paramsToTensors(
    snapshot.state.params,
  );
  if (snapshot.state.stats) {
    const slots = Object.entries(snapshot.state.stats).map((
      [layer, { mean, variance }],
    ) => [layer, { mean, variance }]);
    const stats = flattenOptimizerState(
      { step: 0, slots: Object.fromEntries(slots) },
      STATS,
    );
    Object.assign(tensors, stats.tensors);
  }
  const opt = flattenOptimizerState(snapshot.optimizerState, OPT);
  Object.assign(tensors, opt.tensors);
  await saveCheckpoint(path, {
    tensors,
    state: {
      kind: SNAPSHOT_KIND,
      method: snapshot.method,
      phase: snapshot.phase,
      epoch: snapshot.epoch,
      epochs: snapshot.epochs,
      step: opt.step,
      ...fields,
      history: snapshot.history,
      run: stored.run,
    },
  });
}

/**
 * Reads a training snapshot written by {@link saveSnapshot} (or by version
 * 0.1.0, whose snapshots are Bayesian Bits runs: method `"bayesian-bits"`,
 * history entries read as version 2 entries) and puts its tensors on a
 * device.
 *
 * Each optimizer slot takes its parameter's shape (the file stores slots
 * 1-D), so the snapshot comes back as it was saved.
 *
 * @param path The file.
 * @param options `device`: where to put the parameters, statistics and
 *   optimizer slots, i.e. the device the run continues on (default: the
 *   reference device).
 * @returns The snapshot and the run description; the state's JSON fields
 *   as stored (a method's reader checks them, e.g. `bayesianBitsSnapshot`).
 * @throws {RangeError} On a corrupt or truncated file (checksum), or a
 *   checkpoint that is not a training snapshot.
 * @throws {Deno.errors.NotFound} If the file does not exist.
 *
 * @example See {@link saveSnapshot}.
 * ```ts
 * import { loadSnapshot } from "./snapshot.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(loadSnapshot("/no/such/file.safetensors"), /no such file/);
 * ```
 */
export async function loadSnapshot(
  path: string,
  options: LoadSnapshotOptions = {},
): Promise<StoredSnapshot> {
  const { tensors, state } = await loadCheckpoint(path);
  const where = `Cannot load "${path}" as a training snapshot`;
  const kind = typeof state === "object" && state !== null
    ? own(state, "kind")
    : undefined;
  const v1 = kind === SNAPSHOT_KIND_V1;
  if (kind !== SNAPSHOT_KIND && !v1) {
    throw new RangeError(
      `${where}: its state kind is ${
        typeof kind === "string" ? quote(kind) : describeValue(kind)
      }, expected "${SNAPSHOT_KIND}"`,
    );
  }
  const s = v1
    ? { ...validate(snapshotStateV1, state, where, "state"), method: V1_METHOD }
    : validate(snapshotState, state, where, "state");
  const method = s.method;
  const history = parseHistory(
    own(state as object, "history"),
    where,
    "state.history",
  );
  checkProgress(s, history, where);
  const params = paramsFromTensors(tensors, `Cannot load "${path}"`, options);
  const stats = statsOf(tensors, where, options);
  let slots: OptimizerState;
  try {
    slots = unflattenOptimizerState(tensors, s.step, {
      prefix: OPT,
      device: options.device,
    });
  } catch (error) {
    throw new RangeError(`${where}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const optimizerState = slotsShapedLike(params, slots);
  const fields = Object.fromEntries(
    Object.entries(state as object).filter(([key]) => !RESERVED.has(key)),
  );
  return {
    snapshot: {
      method,
      phase: s.phase,
      epoch: s.epoch,
      epochs: s.epochs,
      state: { ...fields, params, ...(stats ? { stats } : {}) },
      optimizerState,
      history,
    },
    run: own(state as object, "run"),
  };
}

const snapshotFields = {
  phase: string({ maxLength: 256 }),
  epoch: int({ min: 0 }),
  epochs: int({ min: 1 }),
  step: int({ min: 0 }),
};
/** The format's own fields of a snapshot's state (the method's are its reader's). */
const snapshotState = object({
  ...snapshotFields,
  method: string({ maxLength: 256 }),
});
/** Version 0.1.0's: no method. */
const snapshotStateV1 = object(snapshotFields);

/**
 * Cross-field checks: the epoch within the run's epochs, one history entry
 * per completed epoch, numbered 1, 2, ...
 */
function checkProgress(
  s: { epoch: number; epochs: number },
  history: readonly HistoryEntry[],
  where: string,
): void {
  if (s.epoch > s.epochs) {
    throw new RangeError(
      `${where}: state.epoch must be at most state.epochs (${s.epochs}), got ${s.epoch}`,
    );
  }
  if (history.length !== s.epoch) {
    throw new RangeError(
      `${where}: state.history must hold one entry per completed epoch (${s.epoch}), got ${history.length}`,
    );
  }
  history.forEach((entry, i) => {
    if (entry.epoch !== i + 1) {
      throw new RangeError(
        `${where}: state.history[${i}].epoch must be ${
          i + 1
        }, got ${entry.epoch}`,
      );
    }
  });
}

/** The batch-norm statistics of a loaded snapshot, or undefined without any. */
function statsOf(
  tensors: Parameters<typeof unflattenOptimizerState>[0],
  where: string,
  options: LoadSnapshotOptions,
): StatsRecord | undefined {
  if (!Object.keys(tensors).some((name) => name.startsWith(STATS))) {
    return undefined;
  }
  let slots: OptimizerState["slots"];
  try {
    ({ slots } = unflattenOptimizerState(tensors, 0, {
      prefix: STATS,
      device: options.device,
    }));
  } catch (error) {
    throw new RangeError(`${where}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  for (const [layer, fields] of Object.entries(slots)) {
    if (!fields.mean || !fields.variance) {
      throw new RangeError(
        `${where}: the statistics of "${layer}" lack a mean or a variance`,
      );
    }
  }
  return slots as unknown as Record<string, BatchNormStats>;
}

/**
 * `state` with each slot reshaped to its parameter's shape (no copy). A slot
 * without a parameter of its size is left as it is: the optimizer rejects
 * it with a message naming it.
 */
function slotsShapedLike(
  params: Readonly<Record<string, Tensor>>,
  state: OptimizerState,
): OptimizerState {
  const slots = Object.entries(state.slots).map(([name, record]) => {
    const param = params[name];
    const shaped = Object.entries(record).map(([slot, t]) => [
      slot,
      param && param.size === t.size ? t.reshape(param.shape) : t,
    ]);
    return [name, Object.fromEntries(shaped)];
  });
  return { step: state.step, slots: Object.fromEntries(slots) };
}
