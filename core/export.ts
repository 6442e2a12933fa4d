/**
 * Export of a trained gated model (spec section 8): per conv/dense layer the
 * weight bit width, the scale of its grid, the integer codes of the kept
 * output channels and which channels were pruned; per quantized activation
 * its bit width, signedness, range and scale. The exported model runs on its
 * own ({@link runQuantized}, {@link evaluateQuantized}) and is written to
 * disk by `io/quantized.ts`.
 *
 * @module
 */

import type { QuantizerBackend } from "./backend.ts";
import { quantizerConstants } from "./backend.ts";
import type { GatedModel, GatedState, QuantizerInfo } from "./bayesian_bits.ts";
import { batches, type Dataset } from "./data.ts";
import { effectiveBits } from "./gates.ts";
import { analyzeGraph, type ModelGraph, runGraph } from "./graph.ts";
import {
  gatesOp,
  quantizeActivationForInference,
  quantizerOp,
} from "./ops/bayesian.ts";
import { type GemmFn, withGemm } from "./ops/gemm.ts";
import { type OpKernels, withKernels } from "./ops/kernels.ts";
import { referenceBackend } from "./reference.ts";
import { roundHalfEven } from "./round.ts";
import { type Shape, Tensor, tensorStorage } from "./tensor.ts";
import { checkImageShape, countCorrect } from "./train.ts";

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

/** A mixed-precision model as exported from a gated model. */
export interface QuantizedModel {
  /** {@link QUANTIZED_SCHEMA}. */
  readonly schema: typeof QUANTIZED_SCHEMA;
  /** The model graph the layers belong to (batch norm folded away). */
  readonly graph: ModelGraph;
  /** Bits of the network input as the BOP count assumes them (8). */
  readonly inputBits: 8;
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
 * import { codeRange } from "@bbits/core";
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
 * import { gridScale } from "@bbits/core";
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

function chainOf(bits: GridBits): Tensor {
  return Tensor.from([
    bits >= 4 ? 1 : 0,
    bits >= 8 ? 1 : 0,
    bits >= 16 ? 1 : 0,
    bits >= 32 ? 1 : 0,
  ]);
}

function logitsOf(q: QuantizerInfo, state: GatedState) {
  const chain = state.params[q.logitsParam];
  const prune = q.pruneParam ? state.params[q.pruneParam] : undefined;
  const c = tensorStorage(chain);
  return {
    tensors: prune ? { chain, g2: prune } : { chain },
    plain: {
      g4: c[0],
      g8: c[1],
      g16: c[2],
      g32: c[3],
      ...(prune ? { g2: tensorStorage(prune) } : {}),
    },
  };
}

function gridOf(q: QuantizerInfo, state: GatedState): QuantizedGrid {
  const bits = effectiveBits(logitsOf(q, state).plain).bits;
  const xmax = tensorStorage(state.params[q.xmaxParam])[0];
  const signed = state.signed[q.name];
  return { bits, signed, xmax, scale: gridScale(xmax, signed, bits) };
}

/** Options of {@link exportQuantized}. */
export interface ExportOptions {
  /** The quantizer backend that quantizes the weights (default: reference). */
  readonly backend?: QuantizerBackend;
}

/**
 * Exports a gated model under its deterministic gates: each quantized
 * layer's weights are quantized as evaluation quantizes them and written as
 * integer codes on the grid of their bit width; pruned output channels are
 * listed by omission from `kept` and carry no codes.
 *
 * The codes are `round(xq / s_b)` of the quantized float32 weights `xq`. Up
 * to 8 bits every `xq` is a grid level (checked); at 16 and 32 bits the grid
 * is finer than float32 near `xmax`, and the code is the level nearest to
 * the float32 value.
 *
 * @param gated The gated model.
 * @param state Its trained state.
 * @param options The backend.
 * @returns The exported model.
 * @throws {RangeError} On a missing parameter.
 *
 * @example
 * ```ts
 * import { bayesianBits, exportQuantized, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(2 * 784).map((_, i) => (i % 9) / 9), [2, 1, 28, 28]);
 * const state = initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * const exported = exportQuantized(gated, state);
 * const conv1 = exported.layers[0];
 * assert.equal(conv1.weight.bits, 8); // the recipe starts at 8 bits
 * assert.equal(conv1.activation?.bits, 8);
 * assert.equal(exported.layers[3].activation, null); // logits
 * ```
 */
export function exportQuantized(
  gated: GatedModel,
  state: GatedState,
  options: ExportOptions = {},
): QuantizedModel {
  const backend = options.backend ?? referenceBackend;
  const param = (name: string) => {
    const p = state.params[name];
    if (!p) throw new RangeError(`Cannot export: missing parameter "${name}"`);
    return p;
  };
  const layers = gated.layers.map((layer): QuantizedLayer => {
    const wq = gated.quantizers.find((q) =>
      q.layer === layer.name && q.kind === "weight"
    );
    const aq = gated.quantizers.find((q) =>
      q.layer === layer.name && q.kind === "activation"
    );
    const w = param(`${layer.name}.weight`);
    const bias = param(`${layer.name}.bias`).toFloat32Array();
    const activation = aq ? gridOf(aq, state) : null;
    if (!wq) {
      return {
        name: layer.name,
        kind: layer.kind,
        weight: {
          bits: "float",
          shape: [...w.shape],
          values: w.toFloat32Array(),
        },
        bias,
        activation,
      };
    }
    const logits = logitsOf(wq, state);
    const grid = gridOf(wq, state);
    const xq = tensorStorage(
      quantizerOp(w, param(wq.xmaxParam), gatesOp(logits.tensors, null), {
        signed: grid.signed,
        backend,
        name: wq.name,
      }),
    );
    const channelBits = effectiveBits(logits.plain).channelBits;
    const rows = w.shape[0];
    const row = w.size / rows;
    const kept: number[] = [];
    for (let c = 0; c < rows; c++) {
      if (!channelBits || channelBits[c] > 0) kept.push(c);
    }
    const codes = grid.signed
      ? new Int32Array(kept.length * row)
      : new Uint32Array(kept.length * row);
    const [lo, hi] = codeRange(grid.bits, grid.signed);
    kept.forEach((c, r) => {
      for (let j = 0; j < row; j++) {
        const v = xq[c * row + j] / grid.scale;
        const k = Math.min(hi, Math.max(lo, roundHalfEven(v)));
        if (grid.bits <= 8 && Math.abs(v - k) > 1e-3) {
          throw new Error(
            `Cannot export ${wq.name}: element ${c * row + j} (${
              xq[c * row + j]
            }) is not on the ${grid.bits}-bit grid of step ${grid.scale}`,
          );
        }
        codes[r * row + j] = k;
      }
    });
    return {
      name: layer.name,
      kind: layer.kind,
      weight: { ...grid, shape: [...w.shape], kept, codes },
      bias,
      activation,
    };
  });
  return {
    schema: QUANTIZED_SCHEMA,
    graph: gated.model,
    inputBits: 8,
    layers,
  };
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
 * import { bayesianBits, checkQuantizedModel, exportQuantized, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(784).map((_, i) => (i % 9) / 9), [1, 1, 28, 28]);
 * const exported = exportQuantized(gated, initGated(gated, initGraph(lenet5(), randomKey(0)), x));
 * checkQuantizedModel(exported);
 * const broken = { ...exported, layers: exported.layers.slice(1) };
 * assert.throws(() => checkQuantizedModel(broken), /layers/);
 * ```
 */
export function checkQuantizedModel(model: QuantizedModel): QuantizedModel {
  const fail = (message: string): never => {
    throw new RangeError(`Bad quantized model: ${message}`);
  };
  if (model.schema !== QUANTIZED_SCHEMA) {
    fail(
      `schema ${JSON.stringify(model.schema)}, expected ${QUANTIZED_SCHEMA}`,
    );
  }
  if (!Array.isArray(model.layers)) fail("no layers");
  if (model.inputBits !== 8) fail(`input bits ${model.inputBits}, expected 8`);
  let info;
  try {
    info = analyzeGraph(model.graph);
  } catch (e) {
    fail(`graph: ${(e as Error).message}`);
  }
  const graphLayers = info!.layers;
  if (
    graphLayers.map((l) => l.name).join() !==
      model.layers.map((l) => l.name).join()
  ) {
    fail(
      `layers [${
        model.layers.map((l) => l.name).join(", ")
      }] are not the graph's [${graphLayers.map((l) => l.name).join(", ")}]`,
    );
  }
  const checkGrid = (where: string, g: QuantizedGrid) => {
    if (!GRID_BITS.includes(g.bits)) fail(`${where}: bit width ${g.bits}`);
    if (typeof g.signed !== "boolean") {
      fail(`${where}: signed must be a boolean`);
    }
    if (!(Number.isFinite(g.xmax) && g.xmax > 0)) {
      fail(`${where}: range ${g.xmax} is not finite and positive`);
    }
    const expected = gridScale(g.xmax, g.signed, g.bits);
    if (g.scale !== expected) {
      fail(`${where}: scale ${g.scale} does not match the range's ${expected}`);
    }
  };
  model.layers.forEach((layer, i) => {
    const info = graphLayers[i];
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
      checkGrid(`${where} weights`, w);
      const rows = info.outChannels;
      const row = size / rows;
      if (!Array.isArray(w.kept)) {
        fail(`${where}: kept channels must be an array`);
      }
      let previous = -1;
      for (const c of w.kept) {
        if (!Number.isInteger(c) || c <= previous || c >= rows) {
          fail(
            `${where}: kept channels must be ascending integers below ${rows}`,
          );
        }
        previous = c;
      }
      const codeType = w.signed ? Int32Array : Uint32Array;
      if (
        !(w.codes instanceof codeType) || w.codes.length !== w.kept.length * row
      ) {
        fail(
          `${where}: needs ${w.kept.length * row} codes in a ${codeType.name}`,
        );
      }
      const [lo, hi] = codeRange(w.bits, w.signed);
      for (let j = 0; j < w.codes.length; j++) {
        if (w.codes[j] < lo || w.codes[j] > hi) {
          fail(
            `${where}: code ${w.codes[j]} at ${j} is outside [${lo}, ${hi}]`,
          );
        }
      }
    }
    if (layer.activation !== null) {
      checkGrid(`${where} activation`, layer.activation);
    }
  });
  return model;
}

/**
 * The float parameters of an exported model, for `runGraph` on its graph:
 * weights `code * scale` (float32) in the kept channels and 0 in the pruned
 * ones, biases as exported. Up to 8 bits they equal the quantized weights
 * of evaluation to within float32 rounding of the level sums (a few units in
 * the last place of `xmax`).
 *
 * @param model The exported model.
 * @returns Parameters by name (`<layer>.weight`, `<layer>.bias`).
 *
 * @example
 * ```ts
 * import { dequantizeParams, type QuantizedModel } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const model: QuantizedModel = {
 *   schema: "bbits.quantized/1",
 *   graph: { name: "tiny", inputShape: [1, 1, 2], nodes: [
 *     { op: "flatten", name: "f", input: "input" },
 *     { op: "dense", name: "d", input: "f", outFeatures: 2 },
 *   ] },
 *   inputBits: 8,
 *   layers: [{
 *     name: "d", kind: "dense", bias: new Float32Array([0.5, 0]), activation: null,
 *     weight: { bits: 2, signed: true, xmax: 3, scale: 2, shape: [2, 2], kept: [1], codes: new Int32Array([-1, 1]) },
 *   }],
 * };
 * const params = dequantizeParams(model);
 * assert.deepEqual([...params["d.weight"].toFloat32Array()], [0, 0, -2, 2]); // channel 0 pruned
 * ```
 */
export function dequantizeParams(
  model: QuantizedModel,
): Record<string, Tensor> {
  const params: Record<string, Tensor> = {};
  for (const layer of model.layers) {
    const w = layer.weight;
    let values: Float32Array;
    if (w.bits === "float") {
      values = w.values.slice();
    } else {
      values = new Float32Array(w.shape.reduce((a, b) => a * b, 1));
      const row = values.length / w.shape[0];
      w.kept.forEach((c, r) => {
        for (let j = 0; j < row; j++) {
          values[c * row + j] = w.codes[r * row + j] * w.scale;
        }
      });
    }
    params[`${layer.name}.weight`] = Tensor.adopt(values, w.shape);
    params[`${layer.name}.bias`] = Tensor.from(layer.bias);
  }
  return params;
}

/** Options of {@link runQuantized} and {@link evaluateQuantized}. */
export interface RunQuantizedOptions {
  /** Quantizer backend of the activations (default: reference). */
  readonly backend?: QuantizerBackend;
  /** The matrix multiply (default: reference). */
  readonly gemm?: GemmFn;
  /** Op kernels (default: reference). */
  readonly kernels?: OpKernels;
}

function forwardQuantized(
  model: QuantizedModel,
  params: Record<string, Tensor>,
  x: Tensor,
  backend: QuantizerBackend,
): Tensor {
  const grids = new Map(model.layers.map((l) => [l.name, l.activation]));
  return runGraph(model.graph, params, x, {
    activation: (layer, a) => {
      const g = grids.get(layer.name);
      return g
        ? quantizerOp(a, Tensor.from([g.xmax]), { chain: chainOf(g.bits) }, {
          signed: g.signed,
          backend,
          name: `${layer.name}.act`,
        })
        : a;
    },
    fused: (layer, z, activation, pool) => {
      const g = grids.get(layer.name);
      if (
        !g || g.signed || (activation !== "relu" && activation !== undefined)
      ) return undefined;
      const [z4, z8, z16, z32] = chainOf(g.bits).toFloat32Array();
      return quantizeActivationForInference(z, g.xmax, [z4, z8, z16, z32], {
        relu: activation === "relu",
        pool,
        backend,
        name: `${layer.name}.act`,
      });
    },
  }).output;
}

/**
 * Runs an exported model on a batch: dequantized weights, each quantized
 * activation on its grid (the decomposition of spec section 1 with the gates
 * of its bit width, as in evaluation).
 *
 * @param model The exported model.
 * @param x A batch `[N, C, H, W]`.
 * @param options Backend, GEMM and kernels.
 * @returns The logits `[N, classes]`.
 * @throws {RangeError} On an inconsistent model or a batch of the wrong shape.
 *
 * @example
 * ```ts
 * import { bayesianBits, exportQuantized, initGated, initGraph, lenet5, randomKey, runQuantized, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(2 * 784).map((_, i) => (i % 9) / 9), [2, 1, 28, 28]);
 * const exported = exportQuantized(gated, initGated(gated, initGraph(lenet5(), randomKey(0)), x));
 * assert.deepEqual(runQuantized(exported, x).shape, [2, 10]);
 * ```
 */
export function runQuantized(
  model: QuantizedModel,
  x: Tensor,
  options: RunQuantizedOptions = {},
): Tensor {
  checkQuantizedModel(model);
  const params = dequantizeParams(model);
  return withKernels(
    options.kernels ?? null,
    () =>
      withGemm(
        options.gemm ?? null,
        () =>
          forwardQuantized(
            model,
            params,
            x,
            options.backend ?? referenceBackend,
          ),
      ),
  );
}

/**
 * Test accuracy of an exported model.
 *
 * @param model The exported model.
 * @param data The dataset.
 * @param options Batch size (default 1000), backend, GEMM, kernels.
 * @returns The fraction of correctly classified samples.
 * @throws {RangeError} On an inconsistent model, an empty dataset or images
 *   of the wrong shape.
 *
 * @example
 * ```ts
 * import { bayesianBits, evaluateQuantized, exportQuantized, initGated, initGraph, lenet5, makeDataset, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const images = new Float32Array(4 * 784).map((_, i) => (i % 11) / 11);
 * const data = makeDataset(images, new Int32Array([0, 1, 2, 3]), [1, 28, 28]);
 * const gated = bayesianBits(lenet5());
 * const state = initGated(gated, initGraph(lenet5(), randomKey(0)), Tensor.from(images, [4, 1, 28, 28]));
 * const accuracy = evaluateQuantized(exportQuantized(gated, state), data);
 * assert.ok(accuracy >= 0 && accuracy <= 1);
 * ```
 */
export function evaluateQuantized(
  model: QuantizedModel,
  data: Dataset,
  options: RunQuantizedOptions & { readonly batchSize?: number } = {},
): number {
  checkQuantizedModel(model);
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  checkImageShape(model.graph, "test", data);
  const params = dequantizeParams(model);
  const backend = options.backend ?? referenceBackend;
  return withKernels(
    options.kernels ?? null,
    () =>
      withGemm(options.gemm ?? null, () => {
        let correct = 0;
        for (const batch of batches(data, options.batchSize ?? 1000)) {
          const x = Tensor.adopt(batch.images, [batch.size, ...data.shape]);
          correct += countCorrect(
            forwardQuantized(model, params, x, backend),
            batch.labels,
          );
        }
        return correct / data.count;
      }),
  );
}
