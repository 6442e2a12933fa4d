/**
 * Bayesian Bits training snapshots on disk: everything
 * `trainBayesianBits` needs to continue a run (parameters — weights, gate
 * logits, ranges —, signedness, optimizer state, epoch, history), plus the
 * caller's run description, in one checkpoint file written atomically
 * (see `io/checkpoint.ts`: temporary file, fsync, rename, SHA-256).
 *
 * Tensors: `param/<name>` for each parameter, `opt/<param>/<slot>` for the
 * optimizer's slots. Saving reads them from whatever device they are on;
 * loading puts them on the device the caller names
 * ({@link LoadSnapshotOptions}, the reference device unless given), so a
 * run saved on one device can continue on another.
 *
 * The gate noise and the shuffling are derived from the run's key and the
 * step/epoch counters, so the key is the whole generator state: the caller
 * keeps it in `run` (e.g. the seed).
 *
 * @module
 */

import type { GatedState } from "../core/methods/bayesian_bits/model.ts";
import type {
  BayesianBitsSnapshot,
  TrainingPhase,
} from "../core/methods/bayesian_bits/train.ts";
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

// Re-exported so that this module documents on its own as an entry point.
export type { GatedState } from "../core/methods/bayesian_bits/model.ts";
export type {
  BayesianBitsSnapshot,
  TrainingPhase,
} from "../core/methods/bayesian_bits/train.ts";
export type { Device } from "../core/device.ts";
export type { OptimizerState } from "../core/optim.ts";
export type { HistoryEntry } from "../core/report.ts";
export type { Tensor } from "../core/tensor.ts";

/** The `kind` written into a snapshot's state. */
export const SNAPSHOT_KIND = "bbits.bayesian-bits-snapshot";

/** A snapshot with the caller's run description, as stored. */
export interface StoredSnapshot {
  /** The training snapshot. */
  readonly snapshot: BayesianBitsSnapshot;
  /**
   * The caller's JSON description of the run (options, seed, earlier
   * phases' history...), stored as given.
   */
  readonly run: unknown;
}

/** Options of {@link loadSnapshot}. */
export type LoadSnapshotOptions = LoadOptions;

const OPT = "opt/";

/**
 * Writes a training snapshot to `path`, atomically (the previous file stays
 * intact on any failure). The parameters and optimizer slots are read from
 * their device first; they must stay alive until the promise resolves.
 *
 * @param path The file to write (its directory must exist).
 * @param stored The snapshot and the run description.
 * @returns A promise resolved once the file is in place.
 * @throws {TypeError} If `run` is not JSON-serialisable.
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
 *     phase: "bayesian-bits", epoch: 1, epochs: 3, history: [],
 *     state: { params: { "fc.weight": Tensor.from([0.5, -1]) }, signed: { "fc.weight": true } },
 *     optimizerState: { step: 10, slots: { "fc.weight": { m: Tensor.zeros([2]), v: Tensor.zeros([2]) } } },
 *   },
 *   run: { seed: 0 },
 * });
 * const { snapshot, run } = await loadSnapshot(`${dir}/run.safetensors`, { device: referenceDevice });
 * assert.deepEqual([...await snapshot.state.params["fc.weight"].read()], [0.5, -1]);
 * assert.equal(snapshot.optimizerState.step, 10);
 * assert.deepEqual(run, { seed: 0 });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveSnapshot(
  path: string,
  stored: StoredSnapshot,
): Promise<void> {
  const { snapshot } = stored;
  const tensors: Record<string, Tensor> = paramsToTensors(
    snapshot.state.params,
  );
  const opt = flattenOptimizerState(snapshot.optimizerState, OPT);
  Object.assign(tensors, opt.tensors);
  await saveCheckpoint(path, {
    tensors,
    state: {
      kind: SNAPSHOT_KIND,
      phase: snapshot.phase,
      epoch: snapshot.epoch,
      epochs: snapshot.epochs,
      step: opt.step,
      signed: snapshot.state.signed,
      history: snapshot.history,
      run: stored.run,
    },
  });
}

/**
 * Reads a training snapshot written by {@link saveSnapshot} (by this version
 * or an earlier one: the format has not changed) and puts its tensors on a
 * device.
 *
 * Each optimizer slot takes its parameter's shape (the file stores slots
 * 1-D), so the snapshot comes back as it was saved.
 *
 * @param path The file.
 * @param options `device`: where to put the parameters and optimizer slots,
 *   i.e. the device the run continues on (default: the reference device).
 * @returns The snapshot and the run description.
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
  const s = state as Record<string, unknown> | null;
  if (!s || s.kind !== SNAPSHOT_KIND) {
    throw new RangeError(
      `Cannot load "${path}" as a training snapshot: its state kind is ${
        JSON.stringify(s?.kind)
      }, expected "${SNAPSHOT_KIND}"`,
    );
  }
  const params = paramsFromTensors(tensors, `Cannot load "${path}"`, options);
  const optimizerState = slotsShapedLike(
    params,
    unflattenOptimizerState(tensors, s.step as number, {
      prefix: OPT,
      device: options.device,
    }),
  );
  const state2: GatedState = {
    params,
    signed: s.signed as Record<string, boolean>,
  };
  return {
    snapshot: {
      phase: s.phase as TrainingPhase,
      epoch: s.epoch as number,
      epochs: s.epochs as number,
      state: state2,
      optimizerState,
      history: s.history as HistoryEntry[],
    },
    run: s.run,
  };
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
