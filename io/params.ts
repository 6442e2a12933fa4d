/**
 * How model parameters sit in a checkpoint file: one F32 tensor
 * `param/<name>` per parameter. Shared by training snapshots
 * (`io/snapshot.ts`) and the float model files the CLI writes and reads.
 *
 * @module
 */

import type { SafetensorsTensor } from "../core/safetensors.ts";
import { Tensor } from "../core/tensor.ts";

/** The tensor-name prefix of parameters in a checkpoint. */
export const PARAM_PREFIX = "param/";

/**
 * Parameters as checkpoint tensors named `param/<name>`.
 *
 * @param params Parameters by name.
 * @returns Tensors for `saveCheckpoint` (the data is each tensor's own storage copy).
 */
export function paramsToTensors(
  params: Readonly<Record<string, Tensor>>,
): Record<string, { shape: number[]; data: Float32Array }> {
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, t] of Object.entries(params)) {
    tensors[`${PARAM_PREFIX}${name}`] = {
      shape: [...t.shape],
      data: t.toFloat32Array(),
    };
  }
  return tensors;
}

/**
 * The `param/<name>` tensors of a loaded checkpoint as parameters (other
 * tensors are skipped).
 *
 * @param tensors The checkpoint's tensors.
 * @param where Prefix of error messages (e.g. the file).
 * @returns Parameters by name.
 * @throws {RangeError} If a parameter tensor is not F32.
 */
export function paramsFromTensors(
  tensors: Readonly<Record<string, SafetensorsTensor>>,
  where: string,
): Record<string, Tensor> {
  const params: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (!name.startsWith(PARAM_PREFIX)) continue;
    if (!(t.data instanceof Float32Array)) {
      throw new RangeError(`${where}: parameter "${name}" is not F32`);
    }
    params[name.slice(PARAM_PREFIX.length)] = Tensor.adopt(t.data, t.shape);
  }
  return params;
}
