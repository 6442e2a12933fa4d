/**
 * Training checkpoints: tensors plus JSON state in one safetensors file,
 * written atomically and checked on load.
 *
 * A checkpoint file is a plain safetensors file (see `core/safetensors.ts`)
 * whose `__metadata__` holds three strings:
 *
 * - `"bbits.version"`: the format version, `"1"`;
 * - `"bbits.state"`: the caller's state as JSON (epoch, RNG key, options...);
 * - `"bbits.sha256"`: the lowercase hex SHA-256 of the tensors encoded alone
 *   (`encodeSafetensors(tensors)`, no metadata: header length, names, dtypes,
 *   shapes, offsets and the little-endian payload) followed by the UTF-8 bytes
 *   of `"bbits.state"`. A flipped byte anywhere in the file is thus caught:
 *   in the payload, a tensor name or shape, or the state.
 *
 * Tensors to save are host arrays or {@link Tensor}s on any device:
 * {@link saveCheckpoint} reads each `Tensor` back (`await t.read()`) before
 * it creates any file. {@link loadCheckpoint} returns host arrays (a file
 * may hold dtypes a `Tensor` cannot, e.g. the `U8` codes of an exported
 * model); the functions that make tensors from them take
 * {@link LoadOptions}: `{ device }`, the device to put the tensors on (the
 * reference device unless given).
 *
 * Optimizer state (`{ step, slots }` from `core/optim.ts`) goes in with
 * {@link flattenOptimizerState} and comes back with
 * {@link unflattenOptimizerState}: each slot tensor becomes a 1-D F32 tensor
 * named `"opt/<param>/<slot>"`, and `step` goes in the JSON state.
 *
 * {@link saveCheckpoint} needs `--allow-read` and `--allow-write` (for
 * `Deno.rename`); {@link loadCheckpoint} needs `--allow-read`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsInput,
  type SafetensorsTensor,
} from "../core/safetensors.ts";
import type { Device } from "../core/device.ts";
import { parseJson, quote } from "../core/schema.ts";
import type { OptimizerState } from "../core/optim.ts";
import { referenceDevice } from "../core/reference/device.ts";
import { Tensor } from "../core/tensor.ts";
import { writeFileAtomic } from "./atomic.ts";

// Re-exported so that this module documents on its own as an entry point.
export type { Device } from "../core/device.ts";
export type { OptimizerState } from "../core/optim.ts";
export type { Tensor } from "../core/tensor.ts";
export type {
  SafetensorsArrays,
  SafetensorsDtype,
  SafetensorsInput,
  SafetensorsTensor,
} from "../core/safetensors.ts";

/** The format version {@link saveCheckpoint} writes and {@link loadCheckpoint} reads. */
export const CHECKPOINT_VERSION = "1";

/** The largest checkpoint file {@link loadCheckpoint} reads: 4 GiB. */
export const MAX_CHECKPOINT_BYTES = 2 ** 32;

/** The `__metadata__` keys of a checkpoint file. */
export const CHECKPOINT_KEYS: {
  readonly version: string;
  readonly state: string;
  readonly sha256: string;
} = Object.freeze({
  version: "bbits.version",
  state: "bbits.state",
  sha256: "bbits.sha256",
});

/**
 * A tensor to save: host arrays (any safetensors dtype), or a {@link Tensor}
 * on any device, read back when saved (`float32` as `F32`, `int32` as `I32`).
 */
export type CheckpointTensor = SafetensorsInput | Tensor;

/** What {@link saveCheckpoint} writes. */
export interface Checkpoint {
  /** Tensors by name (parameters, optimizer slots, ...). */
  readonly tensors: Readonly<Record<string, CheckpointTensor>>;
  /**
   * JSON-serialisable state. It goes through `JSON.stringify`, so its
   * rules apply: `NaN` and `Infinity` become `null`, `undefined` members
   * vanish, and typed arrays become objects; put arrays in `tensors`.
   */
  readonly state: unknown;
}

/** Options of the functions that make tensors from a loaded checkpoint. */
export interface LoadOptions {
  /**
   * The device to put the tensors on (default: the reference device).
   * Choose the device the run continues on: the tensors are uploaded there
   * once, as they are read.
   */
  readonly device?: Device;
}

/** What {@link loadCheckpoint} returns. */
export interface LoadedCheckpoint {
  /** Tensors by name, each with its dtype; fresh arrays. */
  tensors: Record<string, SafetensorsTensor>;
  /** The state, parsed from JSON. */
  state: unknown;
}

/**
 * Writes a checkpoint to `path`, atomically.
 *
 * `Tensor` values are read back from their devices first (`await t.read()`),
 * so they must stay alive until the promise resolves. The bytes then go to
 * a new temporary file `path + ".tmp-<random>"` in the same directory,
 * which is flushed to disk (`FsFile.sync`) and then renamed over `path`.
 * Readers see the old file or the new one, never a mix. On any error the
 * temporary file is removed and the previous file at `path`, if any, is
 * left as it was. (The directory entry itself is not fsynced, so after a
 * power cut the rename may be lost, but never half done.)
 *
 * @param path Where to write; its directory must exist.
 * @param checkpoint The tensors (host arrays or tensors on any device) and
 *   the JSON state.
 * @returns A promise that resolves once the file is in place.
 * @throws {TypeError} If `state` cannot be turned into JSON (`undefined`, a
 *   function, a BigInt, a cycle), or a tensor's data is not one of the
 *   typed arrays of a safetensors dtype.
 * @throws {RangeError} If a tensor's shape is bad or does not match its data.
 * @throws {Error} If a `Tensor` was freed (its device scope ended).
 * @throws {Deno.errors.NotFound} If the directory of `path` does not exist.
 * @throws {Deno.errors.PermissionDenied} Without `--allow-read` and
 *   `--allow-write`.
 * @throws {Error} On any other file error (a full disk...); like the two
 *   above, its message names `path` (`Cannot write "<path>": ...`).
 *
 * @example
 * ```ts
 * import { loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
 * import { Tensor } from "../core/tensor.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/model.safetensors`;
 * await saveCheckpoint(path, {
 *   tensors: {
 *     w: { shape: [2], data: new Float32Array([0.5, -1]) },
 *     b: Tensor.from([2, 3, 4, 5], [2, 2]),
 *   },
 *   state: { epoch: 3, rngKey: [1, 2] },
 * });
 * const { tensors, state } = await loadCheckpoint(path);
 * assert.deepEqual([...tensors.w.data], [0.5, -1]);
 * assert.deepEqual(tensors.b.shape, [2, 2]);
 * assert.deepEqual([...tensors.b.data], [2, 3, 4, 5]);
 * assert.deepEqual(state, { epoch: 3, rngKey: [1, 2] });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveCheckpoint(
  path: string,
  checkpoint: Checkpoint,
): Promise<void> {
  // Everything that can fail on the inputs fails here, before any file exists.
  if (JSON.stringify(checkpoint.state) === undefined) {
    throw new TypeError(
      `Cannot save checkpoint "${path}": the state is not JSON-serialisable (got ${typeof checkpoint
        .state})`,
    );
  }
  const tensors = await hostTensors(checkpoint.tensors);
  const bytes = encodeCheckpoint(tensors, checkpoint.state);
  await writeFileAtomic(path, bytes);
}

/**
 * The bytes of a checkpoint file, in memory: what {@link saveCheckpoint}
 * writes for host tensors and a state.
 *
 * @param tensors Host tensors by name.
 * @param state The JSON state.
 * @returns The file's bytes.
 * @throws {TypeError} If `state` is not JSON-serialisable or a tensor's
 *   data is not a safetensors array.
 * @throws {RangeError} On a bad tensor shape or name.
 *
 * @example
 * ```ts
 * import { encodeCheckpoint } from "./checkpoint.ts";
 * import { decodeSafetensors } from "../core/safetensors.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeCheckpoint({ w: { shape: [1], data: new Float32Array([2]) } }, { epoch: 1 });
 * assert.equal(decodeSafetensors(bytes).metadata["bbits.state"], '{"epoch":1}');
 * ```
 */
export function encodeCheckpoint(
  tensors: Readonly<Record<string, SafetensorsInput>>,
  state: unknown,
): Uint8Array {
  const stateJson = JSON.stringify(state);
  if (stateJson === undefined) {
    throw new TypeError(
      `Cannot encode a checkpoint: the state is not JSON-serialisable (got ${typeof state})`,
    );
  }
  return encodeSafetensors(tensors, {
    [CHECKPOINT_KEYS.version]: CHECKPOINT_VERSION,
    [CHECKPOINT_KEYS.state]: stateJson,
    [CHECKPOINT_KEYS.sha256]: checksum(encodeSafetensors(tensors), stateJson),
  });
}

/** The checkpoint's tensors with every `Tensor` read back to the host. */
async function hostTensors(
  tensors: Readonly<Record<string, CheckpointTensor>>,
): Promise<Record<string, SafetensorsInput>> {
  // Inputs that are not tensors pass through untouched: encodeSafetensors
  // checks them (and reads their data) itself.
  const entries = await Promise.all(
    Object.entries(tensors).map(async ([name, t]) => {
      const host: SafetensorsInput = t instanceof Tensor
        ? { shape: t.shape, data: await t.read() }
        : t;
      return [name, host] as const;
    }),
  );
  return Object.fromEntries(entries);
}

/**
 * Reads and checks a checkpoint written by {@link saveCheckpoint}.
 *
 * The tensors come back as host arrays with their safetensors dtypes; make
 * device tensors from them with `paramsFromTensors` (`io/params.ts`),
 * {@link unflattenOptimizerState} or `device.upload`.
 *
 * @param path The checkpoint file.
 * @returns The tensors (fresh arrays, with dtypes) and the parsed state.
 * @throws {Deno.errors.NotFound} If there is no file at `path`; the message
 *   names it.
 * @throws {RangeError} If `path` is not a regular file or is larger than
 *   {@link MAX_CHECKPOINT_BYTES}; if the file is not a valid safetensors file
 *   (truncated, bad header length, bad JSON...), lacks the checkpoint
 *   metadata, has an unknown `"bbits.version"`, or its contents do not
 *   match `"bbits.sha256"` (corruption); every message names `path`.
 * @throws {Deno.errors.PermissionDenied} Without `--allow-read`.
 *
 * @example
 * ```ts
 * import { loadCheckpoint } from "./checkpoint.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(
 *   loadCheckpoint("/no/such/dir/model.safetensors"),
 *   /Cannot load checkpoint "\/no\/such\/dir\/model.safetensors": no such file/,
 * );
 * ```
 */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  const where = `Cannot load checkpoint "${path}"`;
  let bytes: Uint8Array;
  try {
    // A FIFO or device would block or never end; a huge file would be read
    // whole: both are refused before reading.
    const info = await Deno.stat(path);
    if (!info.isFile) {
      throw new RangeError(`${where}: it is not a regular file`);
    }
    if (info.size > MAX_CHECKPOINT_BYTES) {
      throw new RangeError(
        `${where}: it has ${info.size} bytes, more than the ${MAX_CHECKPOINT_BYTES} a checkpoint may have`,
      );
    }
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${where}: no such file`, {
        cause: error,
      });
    }
    throw error;
  }
  let decoded;
  try {
    decoded = decodeSafetensors(bytes);
  } catch (error) {
    throw new RangeError(
      `${where}: the file is corrupt: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const { tensors, metadata } = decoded;
  const version = metadata[CHECKPOINT_KEYS.version];
  if (version !== CHECKPOINT_VERSION) {
    throw new RangeError(
      version === undefined
        ? `${where}: it has no "${CHECKPOINT_KEYS.version}" metadata; it is not a bbits checkpoint`
        : `${where}: unknown version ${
          quote(version)
        }, this library reads version "${CHECKPOINT_VERSION}"`,
    );
  }
  const stateJson = metadata[CHECKPOINT_KEYS.state];
  const expected = metadata[CHECKPOINT_KEYS.sha256];
  if (stateJson === undefined || expected === undefined) {
    throw new RangeError(
      `${where}: the metadata lacks "${CHECKPOINT_KEYS.state}" or "${CHECKPOINT_KEYS.sha256}"`,
    );
  }
  const actual = checksum(encodeSafetensors(tensors), stateJson);
  if (actual !== expected) {
    throw new RangeError(
      `${where}: checksum mismatch, the file is corrupt: "${CHECKPOINT_KEYS.sha256}" is ${
        quote(expected)
      } but the contents hash to ${actual}`,
    );
  }
  // The checksum passed, so the JSON is what saveCheckpoint wrote, or what
  // someone who recomputed the checksum did: its shape is still checked.
  return {
    tensors,
    state: parseJson(stateJson, {
      where: `${where}: "${CHECKPOINT_KEYS.state}"`,
    }),
  };
}

/**
 * Turns optimizer state into tensors and a step count for a checkpoint:
 * slot `slot` of parameter `param` becomes the 1-D tensor
 * `"<prefix><param>/<slot>"` (whatever the slot's shape, as files written
 * by earlier versions have it). Parameter names may contain `/`; slot names
 * may not.
 *
 * The tensors are the state's own slot tensors, reshaped (no copy, nothing
 * read): {@link saveCheckpoint} reads them from their device.
 *
 * @param state The optimizer state (`{ step, slots }`).
 * @param prefix Put before each tensor name; `"opt/"` unless given.
 * @returns `tensors` to merge into the checkpoint's tensors, and `step` to
 *   put in its JSON state.
 * @throws {RangeError} If a slot name is empty or contains `/`.
 * @throws {TypeError} If a slot is not a float32 tensor.
 *
 * @example
 * ```ts
 * import { flattenOptimizerState } from "./checkpoint.ts";
 * import { Tensor } from "../core/tensor.ts";
 * import assert from "node:assert/strict";
 *
 * const state = { step: 5, slots: { "fc/w": { m: Tensor.from([1, 2, 3, 4], [2, 2]) } } };
 * const { tensors, step } = flattenOptimizerState(state);
 * assert.deepEqual(Object.keys(tensors), ["opt/fc/w/m"]);
 * assert.deepEqual(tensors["opt/fc/w/m"].shape, [4]);
 * assert.equal(step, 5);
 * ```
 */
export function flattenOptimizerState(
  state: OptimizerState,
  prefix = "opt/",
): { tensors: Record<string, Tensor>; step: number } {
  const tensors: [string, Tensor][] = [];
  for (const [param, slots] of Object.entries(state.slots)) {
    for (const [slot, t] of Object.entries(slots)) {
      if (slot === "" || slot.includes("/")) {
        throw new RangeError(
          `Cannot flatten optimizer slot ${
            JSON.stringify(slot)
          } of "${param}": slot names must be non-empty and contain no "/"`,
        );
      }
      if (!(t instanceof Tensor) || t.dtype !== "float32") {
        throw new TypeError(
          `Cannot flatten optimizer slot "${slot}" of "${param}": slots must be float32 tensors, got ${
            t instanceof Tensor
              ? `a ${t.dtype} tensor`
              : Object.prototype.toString.call(t)
          }`,
        );
      }
      tensors.push([`${prefix}${param}/${slot}`, t.reshape([t.size])]);
    }
  }
  return { tensors: Object.fromEntries(tensors), step: state.step };
}

/** Options of {@link unflattenOptimizerState}. */
export interface UnflattenOptions extends LoadOptions {
  /** The prefix given to {@link flattenOptimizerState}; `"opt/"` unless given. */
  readonly prefix?: string;
}

/**
 * Rebuilds optimizer state from checkpoint tensors: the inverse of
 * {@link flattenOptimizerState}. Tensors whose names do not start with the
 * prefix are ignored; the rest are split at their last `/` into parameter
 * and slot, and uploaded to `options.device` as 1-D float32 tensors (the
 * optimizers accept a slot of any shape with the parameter's size).
 *
 * @param tensors Tensors by name, e.g. {@link loadCheckpoint}'s.
 * @param step The step count saved with them.
 * @param options The prefix, and the device to put the slots on (default:
 *   the reference device).
 * @returns The optimizer state, its slots on the device.
 * @throws {RangeError} If `step` is not a non-negative integer, or a
 *   prefixed tensor is not F32 data or has no `/` after the prefix.
 *
 * @example
 * ```ts
 * import { unflattenOptimizerState } from "./checkpoint.ts";
 * import assert from "node:assert/strict";
 *
 * const tensors = {
 *   "fc.w": { shape: [1], data: new Float32Array([9]) }, // a parameter: ignored
 *   "opt/fc.w/v": { shape: [1], data: new Float32Array([0.25]) },
 * };
 * const state = unflattenOptimizerState(tensors, 2);
 * assert.equal(state.step, 2);
 * assert.deepEqual(Object.keys(state.slots), ["fc.w"]);
 * const v = state.slots["fc.w"].v;
 * assert.equal(v.device.kind, "reference");
 * assert.deepEqual([...await v.read()], [0.25]);
 * ```
 */
export function unflattenOptimizerState(
  tensors: Readonly<Record<string, { readonly data: unknown }>>,
  step: number,
  options: UnflattenOptions = {},
): OptimizerState {
  const prefix = options.prefix ?? "opt/";
  const device = options.device ?? referenceDevice;
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(
      `Cannot unflatten optimizer state: step must be a non-negative integer, got ${step}`,
    );
  }
  const slots = new Map<string, [string, Float32Array][]>();
  for (const [name, { data }] of Object.entries(tensors)) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    const cut = rest.lastIndexOf("/");
    if (cut <= 0 || cut === rest.length - 1) {
      throw new RangeError(
        `Cannot unflatten optimizer tensor "${name}": expected "${prefix}<param>/<slot>"`,
      );
    }
    if (!(data instanceof Float32Array)) {
      throw new RangeError(
        `Cannot unflatten optimizer tensor "${name}": slots must be F32, got ${
          Object.prototype.toString.call(data)
        }`,
      );
    }
    const param = rest.slice(0, cut);
    if (!slots.has(param)) slots.set(param, []);
    slots.get(param)!.push([rest.slice(cut + 1), data]);
  }
  // Everything is checked before the first upload.
  return {
    step,
    slots: Object.fromEntries(
      [...slots].map(([param, list]) => [
        param,
        Object.fromEntries(
          list.map(([slot, data]) => [
            slot,
            device.upload(data, [data.length]),
          ]),
        ),
      ]),
    ),
  };
}

/** Lowercase hex SHA-256 of the bare tensor encoding followed by the state JSON. */
function checksum(bareTensors: Uint8Array, stateJson: string): string {
  return createHash("sha256").update(bareTensors).update(stateJson, "utf8")
    .digest("hex");
}
