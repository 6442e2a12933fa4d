/**
 * The exported model's format (spec section 8): its types, the grids its
 * codes live on ({@link codeRange}, {@link gridScale}) and the consistency
 * check every reader and writer applies ({@link checkQuantizedModel}).
 * Plain host data: nothing here touches a device. `core/export.ts` makes
 * and runs such models and re-exports this module.
 *
 * @module
 */

import { checkModelBudget } from "./size_budget.ts";
import { analyzeGraph, type LayerInfo, type ModelGraph } from "./graph.ts";
import { quantizerConstants, scaleProblem } from "./reference/quantizer.ts";
import type { Shape } from "./tensor.ts";

/** The `schema` of a {@link QuantizedModel}. */
export const QUANTIZED_SCHEMA = "bbits.quantized/1";

/** Bit widths of a quantizer's grid. */
export type GridBits = 2 | 4 | 8 | 16 | 32;

/** A uniform grid: `value = code * scale`, codes in {@link codeRange}. */
export interface QuantizedGrid {
  /** Bit width of the grid. */
  readonly bits: GridBits;
  /** Symmetric (`2^b - 1` levels around 0) or unsigned (`2^b` levels from 0). */
  readonly signed: boolean;
  /** The learned range. */
  readonly xmax: number;
  /** The grid step `s_b` (float32), as the quantizer derives it from `xmax`. */
  readonly scale: number;
}

/** A layer's quantized weights. */
export interface QuantizedWeights extends QuantizedGrid {
  /** The weight shape, output channels on axis 0. */
  readonly shape: Shape;
  /** The kept output channels, ascending; the others are pruned (0 bits). */
  readonly kept: readonly number[];
  /**
   * Integer codes of the kept channels, row after row (`kept.length` rows of
   * `shape[1] * shape[2] * ...`): an `Int32Array` on a signed grid, a
   * `Uint32Array` on an unsigned one.
   */
  readonly codes: Int32Array | Uint32Array;
}

/** The weights of a layer left in full precision. */
export interface FloatWeights {
  /** Marks unquantized weights. */
  readonly bits: "float";
  /** The weight shape. */
  readonly shape: Shape;
  /** The float32 weights. */
  readonly values: Float32Array;
}

/** One conv/dense layer of an exported model. */
export interface QuantizedLayer {
  /** The layer's node name in {@link QuantizedModel.graph}. */
  readonly name: string;
  /** `"conv"` or `"dense"`. */
  readonly kind: "conv" | "dense";
  /** The weights: quantized, or float for a full-precision layer. */
  readonly weight: QuantizedWeights | FloatWeights;
  /**
   * The bias of every output channel, pruned ones included: a pruned channel
   * outputs the constant `activation(bias)` (its weights are 0), which a
   * deployment may fold into the next layer's bias.
   */
  readonly bias: Float32Array;
  /** The output activation's grid, or `null` when it is not quantized (logits). */
  readonly activation: QuantizedGrid | null;
}

/** A mixed-precision model as exported from a frozen model's plan. */
export interface QuantizedModel {
  /** {@link QUANTIZED_SCHEMA}. */
  readonly schema: typeof QUANTIZED_SCHEMA;
  /** The model graph the layers belong to (batch norm folded away). */
  readonly graph: ModelGraph;
  /** Bits of the network input as the BOP count assumes them (the plan's, e.g. 8). */
  readonly inputBits: number;
  /** The conv/dense layers in execution order. */
  readonly layers: readonly QuantizedLayer[];
}

const GRID_BITS: readonly GridBits[] = [2, 4, 8, 16, 32];

/**
 * The codes a grid allows: signed `[-(2^(b-1) - 1), 2^(b-1) - 1]`, unsigned
 * `[0, 2^b - 1]`.
 *
 * @param bits The bit width.
 * @param signed Whether the grid is signed.
 * @returns The smallest and largest code.
 *
 * @example
 * ```ts
 * import { codeRange } from "@bbits/core/quantized";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(codeRange(2, true), [-1, 1]); // 3 levels
 * assert.deepEqual(codeRange(4, false), [0, 15]); // 16 levels
 * ```
 */
export function codeRange(bits: GridBits, signed: boolean): [number, number] {
  return signed
    ? [-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1]
    : [0, 2 ** bits - 1];
}

/**
 * The grid step `s_b` of a range (spec section 1, float32).
 *
 * @param xmax The range, finite and positive.
 * @param signed Whether the grid is signed.
 * @param bits The bit width.
 * @returns `s_b`.
 *
 * @example
 * ```ts
 * import { gridScale } from "@bbits/core/quantized";
 * import assert from "node:assert/strict";
 *
 * assert.equal(gridScale(3, true, 2), 2); // s2 = 2 * 3 / 3
 * assert.equal(gridScale(3, false, 4), Math.fround(Math.fround(3 / 3) / 5));
 * ```
 */
export function gridScale(
  xmax: number,
  signed: boolean,
  bits: GridBits,
): number {
  return quantizerConstants(xmax, signed, [0, 0, 0, 0])
    .scales[GRID_BITS.indexOf(bits)];
}

function fail(message: string): never {
  throw new RangeError(`Bad quantized model: ${message}`);
}

/** The schema, input bits and graph; returns the graph's conv/dense layers. */
function checkHeader(model: QuantizedModel): readonly LayerInfo[] {
  if (model.schema !== QUANTIZED_SCHEMA) {
    fail(
      `schema ${JSON.stringify(model.schema)}, expected ${QUANTIZED_SCHEMA}`,
    );
  }
  if (!Array.isArray(model.layers)) fail("no layers");
  if (
    !Number.isInteger(model.inputBits) || model.inputBits < 1 ||
    model.inputBits > 32
  ) {
    fail(`input bits ${model.inputBits}, expected an integer in [1, 32]`);
  }
  let graphLayers: readonly LayerInfo[] = [];
  try {
    const info = analyzeGraph(model.graph);
    checkModelBudget(info);
    graphLayers = info.layers;
  } catch (e) {
    fail(`graph: ${(e as Error).message}`);
  }
  const names = model.layers.map((l) => l.name);
  if (graphLayers.map((l) => l.name).join() !== names.join()) {
    fail(
      `layers [${names.join(", ")}] are not the graph's [${
        graphLayers.map((l) => l.name).join(", ")
      }]`,
    );
  }
  return graphLayers;
}

function checkGrid(where: string, g: QuantizedGrid): void {
  if (!GRID_BITS.includes(g.bits)) fail(`${where}: bit width ${g.bits}`);
  if (typeof g.signed !== "boolean") {
    fail(`${where}: signed must be a boolean`);
  }
  if (!(Number.isFinite(g.xmax) && g.xmax > 0)) {
    fail(`${where}: range ${g.xmax} is not finite and positive`);
  }
  const problem = scaleProblem(
    quantizerConstants(g.xmax, g.signed, [1, 1, 1, 1]),
    GRID_BITS.indexOf(g.bits) + 1,
  );
  if (problem !== null) {
    fail(`${where}: the grid is not representable: ${problem}`);
  }
  const expected = gridScale(g.xmax, g.signed, g.bits);
  if (g.scale !== expected) {
    fail(`${where}: scale ${g.scale} does not match the range's ${expected}`);
  }
}

/** Grid, kept channels and codes of quantized weights of `size` elements. */
function checkQuantizedWeights(
  where: string,
  w: QuantizedWeights,
  rows: number,
  size: number,
): void {
  checkGrid(`${where} weights`, w);
  const row = size / rows;
  if (!Array.isArray(w.kept)) {
    fail(`${where}: kept channels must be an array`);
  }
  let previous = -1;
  for (const c of w.kept) {
    if (!Number.isInteger(c) || c <= previous || c >= rows) {
      fail(`${where}: kept channels must be ascending integers below ${rows}`);
    }
    previous = c;
  }
  const codeType = w.signed ? Int32Array : Uint32Array;
  if (
    !(w.codes instanceof codeType) || w.codes.length !== w.kept.length * row
  ) {
    fail(`${where}: needs ${w.kept.length * row} codes in a ${codeType.name}`);
  }
  const [lo, hi] = codeRange(w.bits, w.signed);
  for (let j = 0; j < w.codes.length; j++) {
    if (w.codes[j] < lo || w.codes[j] > hi) {
      fail(`${where}: code ${w.codes[j]} at ${j} is outside [${lo}, ${hi}]`);
    }
  }
}

/** One layer against the graph's view of it. */
function checkLayer(layer: QuantizedLayer, info: LayerInfo): void {
  const where = `layer ${layer.name}`;
  if (layer.kind !== info.kind) {
    fail(`${where}: kind ${layer.kind}, graph says ${info.kind}`);
  }
  if (info.batchNorm) fail(`${where}: batch norm must be folded away`);
  const w = layer.weight;
  if (!w || !Array.isArray(w.shape)) fail(`${where}: no weight shape`);
  if (w.shape.join() !== info.weightShape.join()) {
    fail(
      `${where}: weight shape [${w.shape.join(", ")}], graph says [${
        info.weightShape.join(", ")
      }]`,
    );
  }
  const size = w.shape.reduce((a, b) => a * b, 1);
  if (
    !(layer.bias instanceof Float32Array) ||
    layer.bias.length !== info.outChannels
  ) {
    fail(`${where}: needs a Float32Array bias of ${info.outChannels}`);
  }
  if (!layer.bias.every(Number.isFinite)) {
    fail(`${where}: bias is not finite`);
  }
  if (w.bits === "float") {
    if (!(w.values instanceof Float32Array) || w.values.length !== size) {
      fail(`${where}: needs ${size} float32 weights`);
    }
    if (!w.values.every(Number.isFinite)) {
      fail(`${where}: weights are not finite`);
    }
  } else {
    checkQuantizedWeights(where, w, info.outChannels, size);
  }
  if (layer.activation !== null) {
    checkGrid(`${where} activation`, layer.activation);
  }
}

/**
 * Checks an exported model's consistency: a graph without batch norm whose
 * conv/dense layers are the model's layers, in order; shapes, bit widths,
 * signedness, scales that match their ranges, kept channels, codes on their
 * grids, finite biases and float weights.
 *
 * @param model The model to check (e.g. just read from a file).
 * @returns The model.
 * @throws {RangeError} Naming the first inconsistency.
 *
 * @example
 * ```ts
 * import { exportFrozen, floatMethod, initGraph, lenet5, randomKey } from "@bbits/core";
 * import { checkQuantizedModel } from "@bbits/core/quantized";
 * import assert from "node:assert/strict";
 *
 * const method = floatMethod();
 * const model = method.attach(lenet5());
 * const exported = exportFrozen(method.freeze(model, initGraph(lenet5(), randomKey(0))));
 * checkQuantizedModel(exported);
 * const broken = { ...exported, layers: exported.layers.slice(1) };
 * assert.throws(() => checkQuantizedModel(broken), /layers/);
 * ```
 */
export function checkQuantizedModel(model: QuantizedModel): QuantizedModel {
  const graphLayers = checkHeader(model);
  model.layers.forEach((layer, i) => checkLayer(layer, graphLayers[i]));
  return model;
}
