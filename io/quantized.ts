/**
 * Exported mixed-precision models on disk: one safetensors file, written
 * atomically with a SHA-256 checksum (the checkpoint format of
 * `io/checkpoint.ts`), checked for consistency when read.
 *
 * Tensors: `<layer>.codes` (`[kept, row]`, the narrowest standard integer
 * dtype of the grid: `I8`/`U8` up to 8 bits, `I16`/`U16` at 16, `I32`/`U32`
 * at 32, signed/unsigned as the grid), `<layer>.bias` (F32) and, for layers
 * left in full precision, `<layer>.weight` (F32). Any safetensors reader
 * (numpy, PyTorch) reads the codes as they are. The JSON state holds the
 * graph and per layer the bit widths, signedness, ranges, scales and kept
 * channels.
 *
 * @module
 */

import {
  checkQuantizedModel,
  type FloatWeights,
  type QuantizedLayer,
  type QuantizedModel,
  type QuantizedWeights,
} from "../core/export.ts";
import type {
  SafetensorsDtype,
  SafetensorsInput,
  SafetensorsTensor,
} from "../core/safetensors.ts";
import { checkModelBudget } from "../core/size_budget.ts";
import { analyzeGraph } from "../core/graph.ts";
import { describeValue, own, quote, validate } from "../core/schema.ts";
import { loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { quantizedStateSchema } from "./quantized_schema.ts";

export * from "../core/export.ts";

/** The dtype of the codes of a grid: the narrowest that holds them. */
function codeDtype(bits: number, signed: boolean): SafetensorsDtype {
  const width = bits <= 8 ? "8" : bits <= 16 ? "16" : "32";
  return `${signed ? "I" : "U"}${width}` as SafetensorsDtype;
}

const NARROW = {
  I8: Int8Array,
  U8: Uint8Array,
  I16: Int16Array,
  U16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
} as const;

/** The `kind` written into an exported model's state. */
export const QUANTIZED_KIND = "bbits.quantized-model";

/**
 * Writes an exported model to `path`, atomically (an existing file stays
 * intact on any failure).
 *
 * @param path The file to write (its directory must exist).
 * @param model The exported model (checked first).
 * @returns A promise resolved once the file is in place.
 * @throws {RangeError} On an inconsistent model.
 *
 * @example
 * ```ts
 * import { loadQuantized, saveQuantized } from "./quantized.ts";
 * import { bayesianBits, exportQuantized, initGated, initGraph, lenet5, randomKey, Tensor } from "../mod.ts";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(784).map((_, i) => (i % 9) / 9), [1, 1, 28, 28]);
 * const exported = exportQuantized(gated, await initGated(gated, initGraph(lenet5(), randomKey(0)), x));
 * const dir = await Deno.makeTempDir();
 * await saveQuantized(`${dir}/model.safetensors`, exported);
 * const loaded = await loadQuantized(`${dir}/model.safetensors`);
 * assert.deepEqual(loaded, exported);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveQuantized(
  path: string,
  model: QuantizedModel,
): Promise<void> {
  checkQuantizedModel(model);
  const tensors: Record<string, SafetensorsInput> = {};
  const layers = model.layers.map((layer) => {
    tensors[`${layer.name}.bias`] = {
      shape: [layer.bias.length],
      data: layer.bias,
    };
    const w = layer.weight;
    if (w.bits === "float") {
      tensors[`${layer.name}.weight`] = { shape: [...w.shape], data: w.values };
      return {
        name: layer.name,
        kind: layer.kind,
        weight: { bits: "float", shape: w.shape },
        activation: layer.activation,
      };
    }
    const row = w.shape.slice(1).reduce((a, b) => a * b, 1);
    const dtype = codeDtype(w.bits, w.signed) as keyof typeof NARROW;
    tensors[`${layer.name}.codes`] = {
      shape: [w.kept.length, row],
      data: NARROW[dtype].from(w.codes),
    };
    return {
      name: layer.name,
      kind: layer.kind,
      weight: {
        bits: w.bits,
        signed: w.signed,
        xmax: w.xmax,
        scale: w.scale,
        shape: w.shape,
        kept: w.kept,
      },
      activation: layer.activation,
    };
  });
  await saveCheckpoint(path, {
    tensors,
    state: {
      kind: QUANTIZED_KIND,
      schema: model.schema,
      inputBits: model.inputBits,
      graph: model.graph,
      layers,
    },
  });
}

/**
 * Reads an exported model written by {@link saveQuantized}.
 *
 * @param path The file.
 * @returns The model, checked.
 * @throws {RangeError} On a corrupt or truncated file (checksum), a file
 *   that is not an exported model, or an inconsistent model.
 * @throws {Deno.errors.NotFound} If the file does not exist.
 *
 * @example
 * ```ts
 * import { loadQuantized } from "./quantized.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(loadQuantized("/no/such/model.safetensors"), /no such file/);
 * ```
 */
export async function loadQuantized(path: string): Promise<QuantizedModel> {
  const { tensors, state } = await loadCheckpoint(path);
  const where = `Cannot load "${path}" as an exported model`;
  const kind = typeof state === "object" && state !== null
    ? own(state, "kind")
    : undefined;
  if (kind !== QUANTIZED_KIND) {
    throw new RangeError(
      `${where}: its state kind is ${
        typeof kind === "string" ? quote(kind) : describeValue(kind)
      }, expected "${QUANTIZED_KIND}"`,
    );
  }
  // Types and ranges first, then the graph's size against the budget, and
  // only then anything sized by the file's numbers.
  const s = validate(quantizedStateSchema, state, where, "state");
  try {
    checkModelBudget(analyzeGraph(s.graph));
  } catch (error) {
    throw new RangeError(`${where}: state.graph: ${(error as Error).message}`);
  }
  const tensor = (name: string, dtype: SafetensorsTensor["dtype"]) => {
    const t = own(tensors, name) as SafetensorsTensor | undefined;
    if (!t || t.dtype !== dtype) {
      throw new RangeError(`${where}: missing ${dtype} tensor ${quote(name)}`);
    }
    return t.data;
  };
  const layers = s.layers.map((l): QuantizedLayer => {
    const w = l.weight;
    const bias = tensor(`${l.name}.bias`, "F32") as Float32Array;
    let weight: QuantizedWeights | FloatWeights;
    if (w.bits === "float") {
      weight = {
        bits: "float",
        shape: w.shape,
        values: tensor(`${l.name}.weight`, "F32") as Float32Array,
      };
    } else {
      const codes = tensor(`${l.name}.codes`, codeDtype(w.bits, w.signed));
      weight = {
        ...w,
        codes: w.signed ? Int32Array.from(codes) : Uint32Array.from(codes),
      };
    }
    return {
      name: l.name,
      kind: l.kind,
      weight,
      bias,
      activation: l.activation,
    };
  });
  const model = { ...s, layers } as unknown as QuantizedModel;
  try {
    return checkQuantizedModel(model);
  } catch (e) {
    throw new RangeError(`${where}: ${(e as Error).message}`);
  }
}
