/**
 * A frozen model as an ONNX file that ONNX Runtime runs
 * ({@link exportOnnx}): weights stored as integer codes at their learned
 * widths and dequantized inside the graph (`DequantizeLinear`), each
 * quantized activation as `QuantizeLinear -> DequantizeLinear` after its
 * activation function, pruned channels removed, dense layers as
 * `Gemm(transB=1)`. The graph's input and output are float32; every
 * sub-byte tensor stays inside it. {@link readOnnxExport} reads back what
 * was written; {@link onnxSizes} gives the file's size beside the float
 * model's.
 *
 * Types: codes go on the narrowest of INT2/UINT2 (opset 25), INT4/UINT4,
 * INT8/UINT8, INT16/UINT16 (opset 21) that holds the grid's code range; a
 * width that is not 2, 4, 8 or 16 (or a grid whose codes need the wider
 * type, e.g. odd DoReFa codes) lands on the next wider type and the layer's
 * notes say so. Per-channel grids get per-channel scales (`axis = 0`).
 * Weights on a 32-bit grid, and layers in full precision, stay float32; a
 * 32-bit activation grid becomes a `Clip` to its range.
 *
 * Activations: a uniform grid is exactly `QuantizeLinear` (divide, round
 * half to even, saturate) then `DequantizeLinear`. A residual grid
 * (Bayesian Bits) equals the uniform grid of its width and step except
 * where a coarser level meets an exact rounding tie, and except for the
 * last bits of float32 level sums (spec section 1); the ONNX graph runs
 * the uniform grid. Measured on every activation of a trained LeNet-5 over
 * 1,000 MNIST test images (23,040,000 values, `tests/onnx_agreement.ts`):
 * no value a step apart at 2 and 4 bits, 31 at 8 bits, 10,751 at 16 bits
 * (where float32 cannot hold the level sums); ONNX Runtime's predictions
 * matched the frozen model's on all 10,000 test images at 2, 4 and 8 bits.
 * Folding a pruned channel's constant into the next bias changes the
 * float32 rounding of that sum, which can move a value that sits exactly
 * on a rounding tie of the next grid. A `Clip` before `QuantizeLinear` bounds codes whose
 * range is narrower than the type's (e.g. signed grids, `[-7, 7]` in INT4).
 *
 * @module
 */

import { checkHostVisible, gridCodes } from "../core/export.ts";
import { analyzeGraph, type GraphNode, type LayerInfo } from "../core/graph.ts";
import type { Frozen, GridPlan, LayerPlan } from "../core/method.ts";
import { hostF32 } from "../core/tensor.ts";
import {
  activateNumber,
  activationCodeType,
  channelGrids,
  codeType,
  type Consumer,
  quantizeConstant,
  soleConsumer,
  stepGrid,
} from "./onnx_layers.ts";
import {
  DATA_TYPE,
  type DataTypeName,
  encodeOnnx,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
} from "./onnx_proto.ts";
import { GraphBuilder } from "./onnx_graph.ts";
import { writeFileAtomic } from "./atomic.ts";

export { readOnnxExport } from "./onnx_read.ts";

/** What the file holds for one conv/dense layer. */
export interface OnnxLayer {
  /** The layer's name. */
  readonly name: string;
  /** `"conv"` or `"dense"`. */
  readonly kind: "conv" | "dense";
  /** The plan's weight width, or `null` in full precision. */
  readonly weightBits: number | null;
  /** The stored type of the weights (`"FLOAT"` when not quantized). */
  readonly weightType: DataTypeName;
  /** The weights in the file, `[kept, keptInputs, k, k]` or `[kept, inputs]`. */
  readonly dims: readonly number[];
  /** Integer codes (quantized weights), or `null`. */
  readonly codes: Int32Array | null;
  /** Float32 weights (full precision), or `null`. */
  readonly values: Float32Array | null;
  /** Scales: one, or one per stored output channel. */
  readonly scales: Float32Array;
  /** The stored bias (pruned inputs' constants folded in). */
  readonly bias: Float32Array;
  /** The source model's output channels stored, in order. */
  readonly kept: readonly number[];
  /** The source model's input channels (features) stored, or `null` for all. */
  readonly keptInputs: readonly number[] | null;
  /** The activation's stored type, `"FLOAT"` for a clip only, or `null` when not quantized. */
  readonly activationType: DataTypeName | null;
  /** The activation's scale (`null` when not quantized or a clip). */
  readonly activationScale: number | null;
  /** What an engineer should know (wider types, channels kept). */
  readonly notes: readonly string[];
}

/** The result of {@link exportOnnx}. */
export interface OnnxExport {
  /** The `.onnx` file. */
  readonly bytes: Uint8Array;
  /** The model as written. */
  readonly model: OnnxModel;
  /** The default-domain opset (25 with 2-bit types, else 21). */
  readonly opset: number;
  /** Per conv/dense layer, what was stored. */
  readonly layers: readonly OnnxLayer[];
}

/** Options of {@link exportOnnx}. */
export interface ExportOnnxOptions {
  /**
   * `false` writes the float model: every layer float32, nothing removed,
   * no activation quantized (default `true`).
   */
  readonly quantize?: boolean;
}

/** One layer's decisions before its nodes are written. */
interface LayerWork {
  readonly info: LayerInfo;
  readonly plan: LayerPlan;
  readonly weights: Float32Array;
  readonly bias: Float32Array;
  kept: number[];
  keptInputs: number[] | null;
  block: number;
  readonly correction: Float64Array;
  readonly notes: string[];
}

/** The plan of a layer, or a float plan for the float model. */
function planFor(
  frozen: Frozen,
  info: LayerInfo,
  quantize: boolean,
): LayerPlan {
  const all = Array.from({ length: info.outChannels }, (_, i) => i);
  if (!quantize) {
    return {
      name: info.name,
      weight: null,
      keptChannels: all,
      activation: null,
      details: {},
    };
  }
  const plan = frozen.plan.layers.find((l) => l.name === info.name);
  if (!plan) {
    throw new RangeError(
      `Cannot export ONNX: the plan has no layer "${info.name}"`,
    );
  }
  return plan;
}

/** Host weights and bias of every layer, and their plans. */
function layerWork(frozen: Frozen, quantize: boolean): Map<string, LayerWork> {
  const work = new Map<string, LayerWork>();
  for (const info of analyzeGraph(frozen.model).layers) {
    if (info.batchNorm) {
      throw new RangeError(
        `Cannot export ONNX: layer "${info.name}" has batch norm; freeze with a method that folds it`,
      );
    }
    const param = (suffix: string) => {
      const t = frozen.params[`${info.name}.${suffix}`];
      if (!t) {
        throw new RangeError(
          `Cannot export ONNX: missing parameter "${info.name}.${suffix}"`,
        );
      }
      return hostF32(t);
    };
    work.set(info.name, {
      info,
      plan: planFor(frozen, info, quantize),
      weights: param("weight"),
      bias: param("bias"),
      kept: Array.from({ length: info.outChannels }, (_, i) => i),
      keptInputs: null,
      block: 1,
      correction: new Float64Array(info.outChannels),
      notes: [],
    });
  }
  return work;
}

/** Removes `layer`'s pruned channels and folds their constants into `consumer`. */
function removePruned(w: LayerWork, c: LayerWork, consumer: Consumer): void {
  const pruned = w.kept.filter((ch) => !w.plan.keptChannels.includes(ch));
  const row = w.weights.length / w.info.outChannels;
  const cRow = c.weights.length / c.info.outChannels;
  const perInput = cRow / c.info.inChannels; // k * k for a conv, 1 for dense
  const span = consumer.block * perInput;
  for (const ch of pruned) {
    for (let j = 0; j < row; j++) {
      if (w.weights[ch * row + j] !== 0) {
        throw new RangeError(
          `Cannot export ONNX: pruned channel ${ch} of "${w.info.name}" has nonzero weights`,
        );
      }
    }
    const constant = quantizeConstant(
      w.plan.activation,
      activateNumber(w.info.activation, w.bias[ch]),
    );
    if (constant === 0) continue;
    for (let o = 0; o < c.info.outChannels; o++) {
      let sum = 0;
      for (let p = 0; p < span; p++) sum += c.weights[o * cRow + ch * span + p];
      c.correction[o] += constant * sum;
    }
  }
  w.kept = [...w.plan.keptChannels];
  c.keptInputs = [...w.plan.keptChannels];
  c.block = consumer.block;
  if (pruned.length > 0) {
    w.notes.push(
      `${pruned.length} pruned channels removed (and ${c.info.name}'s inputs)`,
    );
  }
}

/** Decides, for every layer, which channels leave the file. */
function planRemovals(frozen: Frozen, work: Map<string, LayerWork>): void {
  const { shapes } = analyzeGraph(frozen.model);
  for (const w of work.values()) {
    const all = w.info.outChannels;
    if (w.plan.keptChannels.length === all) continue;
    const consumer = w.plan.keptChannels.length === 0
      ? "every channel is pruned"
      : soleConsumer(frozen.model, shapes, w.info);
    if (typeof consumer === "string") {
      w.notes.push(
        `${
          all - w.plan.keptChannels.length
        } pruned channels stay as zeros: ${consumer}`,
      );
      continue;
    }
    removePruned(w, work.get(consumer.layer)!, consumer);
  }
}

/** The stored weights: kept output rows, kept input channels (blocks). */
function sliceWeights(w: LayerWork): Float32Array {
  const row = w.weights.length / w.info.outChannels;
  const inputs = w.keptInputs;
  const span = (row / w.info.inChannels) * w.block;
  const cols = inputs === null
    ? Array.from({ length: row }, (_, j) => j)
    : inputs.flatMap((ch) =>
      Array.from({ length: span }, (_, p) => ch * span + p)
    );
  const out = new Float32Array(w.kept.length * cols.length);
  w.kept.forEach((o, r) => {
    cols.forEach((j, k) => out[r * cols.length + k] = w.weights[o * row + j]);
  });
  return out;
}

/** The stored weight dims. */
function storedDims(w: LayerWork, size: number): number[] {
  const rows = w.kept.length;
  if (w.info.kind === "dense") return [rows, size / Math.max(rows, 1)];
  const [, , k1, k2] = w.info.weightShape;
  return [rows, size / Math.max(rows * k1 * k2, 1), k1, k2];
}

/** The file's view of one layer's weights, bias and activation. */
function storeLayer(w: LayerWork): OnnxLayer {
  const grids = channelGrids(w.info, w.plan);
  const sliced = sliceWeights(w);
  const dims = storedDims(w, sliced.length);
  const bias = Float32Array.from(w.kept, (o) => w.bias[o] + w.correction[o]);
  const notes = [...w.notes];
  let weightType: DataTypeName = "FLOAT";
  let codes: Int32Array | null = null;
  let scales = new Float32Array(0);
  if (grids === null && w.plan.weight !== null) {
    notes.push(
      `${w.plan.weight.bits}-bit weights are finer than float32: stored as float32`,
    );
  }
  if (grids !== null) {
    const kept = w.kept.map((o) => grids[o]);
    const lo = Math.min(...kept.map((g) => g.codeMin), 0);
    const hi = Math.max(...kept.map((g) => g.codeMax), 0);
    const type = codeType(lo, hi);
    const bits = w.plan.weight!.bits;
    if (type === null) {
      notes.push(`${bits}-bit codes need more than 16 bits: stored as float32`);
    } else {
      weightType = type;
      const row = sliced.length / Math.max(w.kept.length, 1);
      codes = gridCodes(
        `${w.info.name}.weight`,
        sliced,
        kept.map((_, r) => r),
        row,
        (r) => kept[r],
      );
      const perChannel = w.plan.weight!.kind === "uniform" &&
        w.plan.weight!.channels !== null;
      scales = Float32Array.from(perChannel ? kept : [kept[0]], (g) => g.scale);
      const width = Number(type.replace(/\D/g, ""));
      if (width !== bits) {
        notes.push(
          `${bits}-bit weights stored as ${type} (codes ${lo}..${hi})`,
        );
      }
    }
  }
  return {
    name: w.info.name,
    kind: w.info.kind,
    weightBits: w.plan.weight?.bits ?? null,
    weightType,
    dims,
    codes,
    values: codes === null ? sliced : null,
    scales,
    bias,
    kept: w.kept,
    keptInputs: w.keptInputs,
    ...activationStorage(w.plan.activation, notes),
    notes,
  };
}

/** The stored type and scale of an activation grid. */
function activationStorage(
  grid: GridPlan | null,
  notes: string[],
): Pick<OnnxLayer, "activationType" | "activationScale"> {
  if (grid === null) return { activationType: null, activationScale: null };
  const step = stepGrid(grid);
  if (step === null) {
    notes.push(`${grid.bits}-bit activations: a clip to the range only`);
    return { activationType: "FLOAT", activationScale: null };
  }
  const type = activationCodeType(step.codeMin, step.codeMax);
  if (type === null) {
    throw new RangeError(
      `Cannot export ONNX: activation codes ${step.codeMin}..${step.codeMax} need more than 16 bits`,
    );
  }
  return { activationType: type, activationScale: step.scale };
}

/** Whether a grid has negative levels. */
function gridSigned(grid: GridPlan): boolean {
  return grid.kind === "uniform" ? grid.codeMin < 0 : grid.signed;
}

/** The nodes of one graph node, in the builder. */
function emitNode(
  g: GraphBuilder,
  node: GraphNode,
  stored: ReadonlyMap<string, OnnxLayer>,
  plans: ReadonlyMap<string, LayerPlan>,
): void {
  switch (node.op) {
    case "conv":
    case "dense": {
      const out = g.layer(node, stored.get(node.name)!);
      const grid = plans.get(node.name)!.activation;
      const act = `${node.name}/act`;
      if (grid === null) {
        g.alias(node.name, g.activation(act, out, node.activation));
      } else if (node.activation === "relu" && !gridSigned(grid)) {
        // An unsigned grid saturates negative values to 0, so the ReLU
        // moves after the dequantization unchanged in value; there it keeps
        // ONNX Runtime from fusing the dequantized activation and weights
        // into an integer QLinearConv/QGemm (which rejects INT2 weights and
        // rounds its own way).
        g.alias(
          node.name,
          g.activation(act, g.quantize(node.name, out, grid), "relu"),
        );
      } else {
        const a = g.activation(act, out, node.activation);
        g.alias(node.name, g.quantize(node.name, a, grid));
      }
      return;
    }
    case "maxpool":
      return g.maxPool(node);
    case "avgpool":
      return g.globalAveragePool(node);
    case "flatten":
      return g.flatten(node);
    case "add":
      return g.add(node);
  }
}

/**
 * Exports a frozen model as an ONNX model with QuantizeLinear /
 * DequantizeLinear at the plan's widths (see the module documentation).
 * The parameters must live on a device the host reads (reference or WASM).
 *
 * @param frozen The frozen model (`method.freeze(...)`), batch norm folded.
 * @param options `quantize: false` writes the float model instead.
 * @returns The file's bytes, the model and what each layer stores.
 * @throws {RangeError} On batch norm, a layer the plan lacks, a pruned
 *   channel with nonzero weights, or activation codes beyond 16 bits.
 * @throws {TypeError} When the parameters live on a WebGPU device.
 *
 * @example
 * ```ts
 * import { floatMethod, initGraph, lenet5, randomKey } from "@bbits/core";
 * import { exportOnnx } from "./onnx.ts";
 * import assert from "node:assert/strict";
 *
 * const method = floatMethod();
 * const frozen = method.freeze(lenet5(), initGraph(lenet5(), randomKey(0)));
 * const { layers, opset } = exportOnnx(frozen);
 * assert.equal(opset, 21);
 * assert.equal(layers[3].weightType, "FLOAT");
 * ```
 */
export function exportOnnx(
  frozen: Frozen,
  options: ExportOnnxOptions = {},
): OnnxExport {
  checkHostVisible(Object.values(frozen.params)[0].device);
  const quantize = options.quantize ?? true;
  const work = layerWork(frozen, quantize);
  if (quantize) planRemovals(frozen, work);
  const stored = new Map([...work].map(([n, w]) => [n, storeLayer(w)]));
  const plans = new Map([...work].map(([n, w]) => [n, w.plan]));
  const g = new GraphBuilder(frozen.model);
  for (const node of frozen.model.nodes) emitNode(g, node, stored, plans);
  const layers = [...stored.values()];
  const uses2 = layers.some((l) =>
    [l.weightType, l.activationType].some((t) => t === "INT2" || t === "UINT2")
  );
  const opset = uses2 ? 25 : 21;
  const model = g.finish({
    irVersion: uses2 ? 13 : 10,
    opset,
    metadata: {
      "bbits.method": quantize ? frozen.plan.method : "float",
      "bbits.layers": JSON.stringify(
        layers.map((l) => ({
          name: l.name,
          kind: l.kind,
          weightBits: l.weightBits,
          kept: l.kept,
          keptInputs: l.keptInputs,
        })),
      ),
    },
  });
  return { bytes: encodeOnnx(model), model, opset, layers };
}

/**
 * The exported ONNX file's size next to the float model's (the same graph
 * with float32 weights, nothing pruned, no activation quantized).
 *
 * @param frozen The frozen model.
 * @returns Both sizes in bytes and their ratio.
 */
export function onnxSizes(
  frozen: Frozen,
): {
  readonly bytes: number;
  readonly floatBytes: number;
  readonly ratio: number;
} {
  const bytes = exportOnnx(frozen).bytes.length;
  const floatBytes = exportOnnx(frozen, { quantize: false }).bytes.length;
  return { bytes, floatBytes, ratio: bytes / floatBytes };
}

/**
 * Exports a frozen model as ONNX ({@link exportOnnx}) and writes the file.
 *
 * @param path Where to write.
 * @param frozen The frozen model.
 * @returns What was written.
 */
export async function saveOnnx(
  path: string,
  frozen: Frozen,
): Promise<OnnxExport> {
  const exported = exportOnnx(frozen);
  await writeFileAtomic(path, exported.bytes);
  return exported;
}

export type { DataTypeName, Frozen, OnnxModel, OnnxNode, OnnxTensor };
export type { OnnxAttribute, OnnxValueInfo } from "./onnx_proto.ts";
export type { OnnxReadBack, OnnxStoredLayer } from "./onnx_read.ts";
export type { ProtoLimits } from "./protobuf.ts";
export { DATA_TYPE };
