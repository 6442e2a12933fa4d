/**
 * Float weights from elsewhere onto a model-zoo graph
 * ({@link importFloatWeights}): a PyTorch-layout safetensors file
 * (`conv1.weight`, `conv1.bias`, ...; F32, F16 or BF16) or an ONNX file's
 * float initializers, matched by name and shape.
 *
 * Names are PyTorch's for a module per layer: `<layer>.weight` (conv
 * `[out, in / groups, k, k]`, dense `[out, in]`, as `nn.Conv2d` and
 * `nn.Linear` store them; a `Gemm(transB=1)` initializer has the same
 * layout) and `<layer>.bias`; a layer with batch norm adds a `bn`
 * submodule: `<layer>.bn.weight`, `.bn.bias`, `.bn.running_mean`,
 * `.bn.running_var` (and `.bn.num_batches_tracked`, ignored). In an ONNX
 * file, a `DequantizeLinear` of initializers counts as the float tensor it
 * outputs (so a QDQ model, e.g. one `exportOnnx` wrote without pruning,
 * imports as its dequantized weights); the scales, zero points and clip
 * bounds of `QuantizeLinear`, `DequantizeLinear` and `Clip` and other
 * integer initializers (shapes for `Reshape` and the like) are ignored. Every other mismatch fails, all
 * of them named in one error.
 *
 * @module
 */

import type { Device } from "../core/device.ts";
import { analyzeGraph, type ModelGraph } from "../core/graph.ts";
import type { BatchNormStats } from "../core/ops/batchnorm.ts";
import { referenceDevice } from "../core/reference/device.ts";
import { decodeSafetensors } from "../core/safetensors.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  bfloat16ToFloat,
  dataTypeName,
  decodeOnnx,
  halfToFloat,
  isFloatType,
  type OnnxNode,
  type OnnxTensor,
} from "./onnx_proto.ts";

/** Float parameters and batch-norm statistics, as `initGraph` returns them. */
export interface ImportedWeights {
  /** Parameters by our names (`conv1.weight`, `conv1.bn.gamma`, ...). */
  readonly params: Record<string, Tensor>;
  /** Batch-norm running statistics by layer name. */
  readonly stats: Record<string, BatchNormStats>;
}

/** Options of {@link importFloatWeights}. */
export interface ImportOptions {
  /** Where the parameters go (default: the reference device). */
  readonly device?: Device;
  /** The file's format (default: from the name, else from the bytes). */
  readonly format?: "safetensors" | "onnx";
}

/** A source tensor: its float32 values, or why it has none. */
interface SourceTensor {
  readonly shape: readonly number[];
  readonly values: Float32Array | null;
  readonly dtype: string;
}

/** What a model expects: source name -> our name and shape. */
function expected(model: ModelGraph): Map<string, [string, number[]]> {
  const out = new Map<string, [string, number[]]>();
  for (const l of analyzeGraph(model).layers) {
    const c = [l.outChannels];
    out.set(`${l.name}.weight`, [`${l.name}.weight`, [...l.weightShape]]);
    out.set(`${l.name}.bias`, [`${l.name}.bias`, c]);
    if (!l.batchNorm) continue;
    out.set(`${l.name}.bn.weight`, [`${l.name}.bn.gamma`, c]);
    out.set(`${l.name}.bn.bias`, [`${l.name}.bn.beta`, c]);
    out.set(`${l.name}.bn.running_mean`, [`stats:${l.name}.mean`, c]);
    out.set(`${l.name}.bn.running_var`, [`stats:${l.name}.variance`, c]);
  }
  return out;
}

function fromSafetensors(bytes: Uint8Array): Map<string, SourceTensor> {
  const out = new Map<string, SourceTensor>();
  for (const [name, t] of Object.entries(decodeSafetensors(bytes).tensors)) {
    const values = t.dtype === "F32"
      ? t.data as Float32Array
      : t.dtype === "F16"
      ? Float32Array.from(t.data, halfToFloat)
      : t.dtype === "BF16"
      ? Float32Array.from(t.data, bfloat16ToFloat)
      : null;
    out.set(name, { shape: t.shape, values, dtype: t.dtype });
  }
  return out;
}

/**
 * A `DequantizeLinear` of initializers as float32: `(q - zero) * scale`,
 * per tensor or along `axis` (default 1); blocked scales are not read.
 */
function dequantized(
  node: OnnxNode,
  init: ReadonlyMap<string, OnnxTensor>,
): SourceTensor {
  const [q, scale, zero] = node.inputs.map((i) => init.get(i));
  const dtype = `DequantizeLinear of ${dataTypeName(q!.dataType)}`;
  const axis = node.attributes.axis;
  let a = axis?.kind === "int" ? axis.value : 1;
  if (a < 0) a += q!.dims.length;
  const inner = q!.dims.slice(a + 1).reduce((x, y) => x * y, 1);
  const channels = scale!.data.length;
  const block = node.attributes.block_size;
  if (
    (block?.kind === "int" && block.value > 0) ||
    (channels !== 1 && channels !== q!.dims[a])
  ) {
    return {
      shape: q!.dims,
      values: null,
      dtype: `${dtype} with blocked or mismatched scales`,
    };
  }
  const values = Float32Array.from(q!.data, (v, i) => {
    const c = channels === 1 ? 0 : Math.floor(i / inner) % channels;
    const z = zero ? zero.data[zero.data.length === 1 ? 0 : c] : 0;
    return (v - z) * scale!.data[c];
  });
  return { shape: q!.dims, values, dtype };
}

function fromOnnx(bytes: Uint8Array): Map<string, SourceTensor> {
  const model = decodeOnnx(bytes);
  const init = new Map(model.initializers.map((t) => [t.name, t]));
  const out = new Map<string, SourceTensor>();
  const used = new Set<string>();
  for (const node of model.nodes) {
    // Scales, zero points and clip bounds are the graph's, not weights.
    if (["QuantizeLinear", "DequantizeLinear", "Clip"].includes(node.opType)) {
      node.inputs.slice(1).forEach((i) => used.add(i));
    }
    if (
      node.opType !== "DequantizeLinear" ||
      !node.inputs.every((i) => i === "" || init.has(i))
    ) continue;
    out.set(node.outputs[0], dequantized(node, init));
    node.inputs.forEach((i) => used.add(i));
  }
  for (const t of model.initializers) {
    // Integer initializers are shapes and indices; a dequantized one's
    // codes, scale and zero point are read above.
    if (!isFloatType(t.dataType) || used.has(t.name)) continue;
    out.set(t.name, {
      shape: t.dims,
      values: t.data as Float32Array,
      dtype: dataTypeName(t.dataType),
    });
  }
  return out;
}

/** Every mismatch between the source and the model, as sentences. */
function mismatches(
  source: ReadonlyMap<string, SourceTensor>,
  want: ReadonlyMap<string, [string, number[]]>,
  modelName: string,
): string[] {
  const problems: string[] = [];
  for (const [name, [, shape]] of want) {
    const t = source.get(name);
    if (!t) {
      problems.push(`missing "${name}" [${shape.join(", ")}]`);
    } else if (t.values === null) {
      problems.push(
        `"${name}" has dtype ${t.dtype}, expected F32, F16 or BF16`,
      );
    } else if (t.shape.join() !== shape.join()) {
      problems.push(
        `"${name}" has shape [${t.shape.join(", ")}], ${modelName} needs [${
          shape.join(", ")
        }]`,
      );
    }
  }
  for (const name of source.keys()) {
    if (want.has(name) || name.endsWith(".bn.num_batches_tracked")) continue;
    problems.push(`"${name}" is not a parameter of ${modelName}`);
  }
  return problems;
}

/** Which format a file is in: by its name, else by its first bytes. */
function formatOf(
  path: string | null,
  bytes: Uint8Array,
): "safetensors" | "onnx" {
  if (path?.endsWith(".safetensors")) return "safetensors";
  if (path?.endsWith(".onnx")) return "onnx";
  // A safetensors header is JSON right after its 8-byte length.
  return bytes.length > 8 && bytes[8] === 0x7b ? "safetensors" : "onnx";
}

/**
 * Reads float weights for a model-zoo graph from a PyTorch-layout
 * safetensors file or an ONNX file's initializers (names and layouts in the
 * module documentation), converted to float32 and uploaded to a device.
 *
 * @param source A file path, or the file's bytes.
 * @param model The graph the weights are for.
 * @param options The device and, for bytes without a name, the format.
 * @returns Parameters and batch-norm statistics, ready for `initGated`,
 *   `trainFloat` or a method's `init`.
 * @throws {RangeError} Naming every missing, extra, misshapen or
 *   non-float tensor, or a malformed file.
 *
 * @example
 * ```ts
 * import { encodeSafetensors } from "../core/safetensors.ts";
 * import { importFloatWeights } from "./import.ts";
 * import assert from "node:assert/strict";
 *
 * const model = { name: "tiny", inputShape: [1, 1, 2] as [number, number, number], nodes: [
 *   { op: "flatten" as const, name: "f", input: "input" },
 *   { op: "dense" as const, name: "fc", input: "f", outFeatures: 1 },
 * ] };
 * const bytes = encodeSafetensors({
 *   "fc.weight": { shape: [1, 2], data: new Float32Array([0.5, -1]) },
 *   "fc.bias": { shape: [1], data: new Float32Array([2]) },
 * });
 * const { params } = await importFloatWeights(bytes, model);
 * assert.deepEqual([...params["fc.weight"].toFloat32Array()], [0.5, -1]);
 * await assert.rejects(importFloatWeights(bytes.slice(0, 20), model), RangeError);
 * ```
 */
export async function importFloatWeights(
  source: string | Uint8Array,
  model: ModelGraph,
  options: ImportOptions = {},
): Promise<ImportedWeights> {
  const path = typeof source === "string" ? source : null;
  const bytes = path === null
    ? source as Uint8Array
    : await Deno.readFile(path);
  const format = options.format ?? formatOf(path, bytes);
  const where = `Cannot import float weights from ${
    path === null ? `${format} bytes` : `"${path}"`
  } into ${model.name}`;
  let tensors: Map<string, SourceTensor>;
  try {
    tensors = format === "safetensors"
      ? fromSafetensors(bytes)
      : fromOnnx(bytes);
  } catch (e) {
    throw new RangeError(`${where}: ${(e as Error).message}`, { cause: e });
  }
  const want = expected(model);
  const problems = mismatches(tensors, want, model.name);
  if (problems.length > 0) {
    throw new RangeError(`${where}: ${problems.join("; ")}`);
  }
  const device = options.device ?? referenceDevice;
  const params: Record<string, Tensor> = {};
  const halves: Record<string, { mean?: Tensor; variance?: Tensor }> = {};
  for (const [name, [ours, shape]] of want) {
    const t = device.upload(tensors.get(name)!.values!, shape);
    if (!ours.startsWith("stats:")) {
      params[ours] = t;
      continue;
    }
    const [layer, kind] = ours.slice(6).split(/\.(?=[a-z]+$)/);
    (halves[layer] ??= {})[kind as "mean" | "variance"] = t;
  }
  const stats: Record<string, BatchNormStats> = {};
  for (const [layer, s] of Object.entries(halves)) {
    stats[layer] = { mean: s.mean!, variance: s.variance! };
  }
  return { params, stats };
}
