/**
 * The float model a run starts from (`--from`): a checkpoint written by
 * `deno task float -- --out DIR`.
 *
 * @module
 */

import type { Device } from "../core/device.ts";
import type { Tensor } from "../core/tensor.ts";
import { loadCheckpoint } from "../io/checkpoint.ts";
import { paramsFromTensors } from "../io/params.ts";

/**
 * Loads a float model checkpoint for a model of the zoo.
 *
 * @param path The checkpoint.
 * @param model The model the run trains (its graph name).
 * @param dev The device the parameters go to.
 * @returns The parameters.
 * @throws {RangeError} When the file holds another model or no parameters.
 */
export async function loadFloat(
  path: string,
  model: string,
  dev: Device,
): Promise<{ params: Record<string, Tensor> }> {
  const { tensors, state } = await loadCheckpoint(path);
  const stored = (state as { model?: unknown } | null)?.model;
  if (typeof stored === "string" && stored !== model) {
    throw new RangeError(
      `${path} holds a ${stored} model, but the run trains ${model}`,
    );
  }
  const params = paramsFromTensors(tensors, path, { device: dev });
  if (Object.keys(params).length === 0) {
    throw new RangeError(
      `${path} holds no "param/..." tensors: it is not a float model checkpoint`,
    );
  }
  return { params };
}
