/**
 * The float model a run starts from (`--from`): a checkpoint written by
 * `deno task float -- --out DIR`, a PyTorch-layout safetensors file
 * (`conv1.weight`, `conv1.bias`, ...; F32, F16 or BF16) or an ONNX file's
 * initializers (see `io/import.ts`).
 *
 * @module
 */

import type { Device } from "../core/device.ts";
import type { Tensor } from "../core/tensor.ts";
import { decodeSafetensors } from "../core/safetensors.ts";
import { loadCheckpoint } from "../io/checkpoint.ts";
import { importFloatWeights } from "../io/import.ts";
import { paramsFromTensors } from "../io/params.ts";
import { MODELS } from "./config.ts";

/** The metadata key our checkpoints carry (others are imported). */
const OURS = "bbits.version";

/** Whether a file is one of our checkpoints (else a foreign weights file). */
async function isCheckpoint(path: string): Promise<boolean> {
  if (path.toLowerCase().endsWith(".onnx")) return false;
  const bytes = await Deno.readFile(path);
  try {
    return OURS in decodeSafetensors(bytes).metadata;
  } catch {
    return true; // let the checkpoint loader name what is wrong
  }
}

/**
 * Loads a float model for a model of the zoo: our float checkpoint, or
 * weights imported from PyTorch-layout safetensors or ONNX by name and
 * shape.
 *
 * @param path The file.
 * @param model The model the run trains (its graph name).
 * @param dev The device the parameters go to.
 * @returns The parameters (and batch-norm statistics when imported).
 * @throws {RangeError} When the file holds another model, no parameters, or
 *   weights that do not fit the model (naming each tensor).
 */
export async function loadFloat(
  path: string,
  model: string,
  dev: Device,
): Promise<{ params: Record<string, Tensor> }> {
  if (!(await isCheckpoint(path))) {
    const imported = await importFloatWeights(path, MODELS[model].build(), {
      device: dev,
    });
    console.error(`Imported float weights for ${model} from ${path}`);
    return imported;
  }
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
