/**
 * How model parameters sit in a checkpoint file: one F32 tensor
 * `param/<name>` per parameter. Shared by training snapshots
 * (`io/snapshot.ts`) and the float model files the CLI writes and reads.
 *
 * @module
 */

import { referenceDevice } from "../core/reference/device.ts";
import type { SafetensorsTensor } from "../core/safetensors.ts";
import type { Tensor } from "../core/tensor.ts";
import type { LoadOptions } from "./checkpoint.ts";

/** The tensor-name prefix of parameters in a checkpoint. */
export const PARAM_PREFIX = "param/";

/**
 * Parameters as checkpoint tensors named `param/<name>`.
 *
 * @param params Parameters by name, on any device.
 * @returns The same tensors under their checkpoint names, for
 *   `saveCheckpoint` (which reads them from their device).
 */
export function paramsToTensors(
  params: Readonly<Record<string, Tensor>>,
): Record<string, Tensor> {
  const tensors: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(params)) {
    tensors[`${PARAM_PREFIX}${name}`] = t;
  }
  return tensors;
}

/**
 * The `param/<name>` tensors of a loaded checkpoint as parameters on a
 * device (other tensors are skipped).
 *
 * @param tensors The checkpoint's tensors (`loadCheckpoint`'s, host arrays).
 * @param where Prefix of error messages (e.g. the file).
 * @param options The device to put the parameters on (default: the
 *   reference device).
 * @returns Parameters by name, on the device.
 * @throws {RangeError} If a parameter tensor is not F32.
 */
export function paramsFromTensors(
  tensors: Readonly<Record<string, SafetensorsTensor>>,
  where: string,
  options: LoadOptions = {},
): Record<string, Tensor> {
  const device = options.device ?? referenceDevice;
  const found: [string, SafetensorsTensor][] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (!name.startsWith(PARAM_PREFIX)) continue;
    if (!(t.data instanceof Float32Array)) {
      throw new RangeError(`${where}: parameter "${name}" is not F32`);
    }
    found.push([name.slice(PARAM_PREFIX.length), t]);
  }
  // Everything is checked before the first upload.
  return Object.fromEntries(
    found.map(([name, t]) => [name, device.upload(t.data, t.shape)]),
  );
}
