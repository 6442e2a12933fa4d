/**
 * Export of a trained gated model (spec section 8): per conv/dense layer the
 * weight bit width, the scale of its grid, the integer codes of the kept
 * output channels and which channels were pruned; per quantized activation
 * its bit width, signedness, range and scale. The exported model runs on its
 * own ({@link runQuantized}, {@link evaluateQuantized}) and is written to
 * disk by `io/quantized.ts`. The format itself (types, grids, the
 * consistency check) is in `core/export_format.ts`, re-exported here.
 *
 * @module
 */

import { batches, type Dataset } from "./data.ts";
import type { Device } from "./device.ts";
import {
  checkQuantizedModel,
  codeRange,
  gridScale,
  QUANTIZED_SCHEMA,
  type QuantizedGrid,
  type QuantizedLayer,
  type QuantizedModel,
  type QuantizedWeights,
} from "./export_format.ts";
import { type LayerInfo, runGraph } from "./graph.ts";
import {
  firstParam,
  type GatedModel,
  type GatedState,
  logitTensors,
  plainLogits,
  type QuantizerInfo,
} from "./methods/bayesian_bits/model.ts";
import {
  gatesOp,
  quantizeActivationForInference,
  quantizerOp,
} from "./methods/bayesian_bits/ops.ts";
import { effectiveBits } from "./reference/gates.ts";
import { referenceDevice } from "./reference/device.ts";
import { roundHalfEven } from "./round.ts";
import { hostF32, type Tensor } from "./tensor.ts";
import { checkImageShape } from "./train.ts";

export * from "./export_format.ts";

/** A parameter of a gated state, or a RangeError naming it. */
function needParam(state: GatedState, name: string): Tensor {
  const p = state.params[name];
  if (!p) throw new RangeError(`Cannot export: missing parameter "${name}"`);
  return p;
}

/** The grid a quantizer's deterministic gates and range give. */
function gridOf(q: QuantizerInfo, state: GatedState): QuantizedGrid {
  needParam(state, q.logitsParam);
  if (q.pruneParam) needParam(state, q.pruneParam);
  const bits = effectiveBits(plainLogits(q, state.params)).bits;
  const xmax = hostF32(needParam(state, q.xmaxParam))[0];
  const signed = state.signed[q.name];
  return { bits, signed, xmax, scale: gridScale(xmax, signed, bits) };
}

/**
 * Integer codes of the kept channels of quantized weights `xq` (host
 * values): `round(xq / s_b)`, checked to be grid levels up to 8 bits.
 */
function codesOf(
  q: QuantizerInfo,
  grid: QuantizedGrid,
  xq: Float32Array,
  kept: readonly number[],
  row: number,
): Int32Array | Uint32Array {
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
          `Cannot export ${q.name}: element ${c * row + j} (${
            xq[c * row + j]
          }) is not on the ${grid.bits}-bit grid of step ${grid.scale}`,
        );
      }
      codes[r * row + j] = k;
    }
  });
  return codes;
}

/**
 * A layer's weights quantized as evaluation quantizes them (deterministic
 * gates, on the parameters' device), as codes of the kept channels.
 */
function quantizedWeights(
  q: QuantizerInfo,
  state: GatedState,
  w: Tensor,
): QuantizedWeights {
  const grid = gridOf(q, state);
  const dev = w.device;
  const xmax = needParam(state, q.xmaxParam);
  const xqTensor = dev.scope(() =>
    quantizerOp(w, xmax, gatesOp(logitTensors(q, state.params), null), {
      signed: grid.signed,
      name: q.name,
    })
  );
  try {
    const channelBits = effectiveBits(plainLogits(q, state.params))
      .channelBits;
    const rows = w.shape[0];
    const kept: number[] = [];
    for (let c = 0; c < rows; c++) {
      if (!channelBits || channelBits[c] > 0) kept.push(c);
    }
    // The view is taken after the last allocation on the device.
    const xq = hostF32(xqTensor);
    const codes = codesOf(q, grid, xq, kept, w.size / rows);
    return { ...grid, shape: [...w.shape], kept, codes };
  } finally {
    dev.free(xqTensor);
  }
}

/** One conv/dense layer of a gated model, exported. */
function exportLayer(
  gated: GatedModel,
  state: GatedState,
  layer: LayerInfo,
): QuantizedLayer {
  const find = (kind: QuantizerInfo["kind"]) =>
    gated.quantizers.find((q) => q.layer === layer.name && q.kind === kind);
  const wq = find("weight");
  const aq = find("activation");
  const w = needParam(state, `${layer.name}.weight`);
  const bias = hostF32(needParam(state, `${layer.name}.bias`)).slice();
  const activation = aq ? gridOf(aq, state) : null;
  const weight = wq ? quantizedWeights(wq, state, w) : {
    bits: "float" as const,
    shape: [...w.shape],
    values: hostF32(w).slice(),
  };
  return { name: layer.name, kind: layer.kind, weight, bias, activation };
}

/**
 * Exports a gated model under its deterministic gates: each quantized
 * layer's weights are quantized as evaluation quantizes them, on the device
 * the parameters live on, and written as integer codes on the grid of their
 * bit width; pruned output channels are listed by omission from `kept` and
 * carry no codes. The values are read on the host, so the parameters must
 * live on a device whose memory the host sees (reference or WASM; move them
 * there first with `tensor.to(device)`).
 *
 * The codes are `round(xq / s_b)` of the quantized float32 weights `xq`. Up
 * to 8 bits every `xq` is a grid level (checked); at 16 and 32 bits the grid
 * is finer than float32 near `xmax`, and the code is the level nearest to
 * the float32 value.
 *
 * @param gated The gated model.
 * @param state Its trained state.
 * @returns The exported model.
 * @throws {RangeError} On a missing parameter.
 * @throws {TypeError} When the parameters live on a device the host cannot
 *   read synchronously (WebGPU).
 *
 * @example
 * ```ts
 * import { bayesianBits, exportQuantized, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(2 * 784).map((_, i) => (i % 9) / 9), [2, 1, 28, 28]);
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), x);
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
): QuantizedModel {
  const dev = firstParam(state.params).device;
  if (dev.kind === "webgpu") {
    throw new TypeError(
      `Cannot export from the ${dev.name} device: the codes are read on the host; move the parameters to the reference or wasm device first (tensor.to(device))`,
    );
  }
  return {
    schema: QUANTIZED_SCHEMA,
    graph: gated.model,
    inputBits: 8,
    layers: gated.layers.map((layer) => exportLayer(gated, state, layer)),
  };
}

/**
 * The float parameters of an exported model, for `runGraph` on its graph,
 * uploaded to `device`: weights `code * scale` (float32) in the kept
 * channels and 0 in the pruned ones, biases as exported. Up to 8 bits they
 * equal the quantized weights of evaluation to within float32 rounding of
 * the level sums (a few units in the last place of `xmax`).
 *
 * @param model The exported model.
 * @param device Where the parameters go (default: the reference device).
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
  device: Device = referenceDevice,
): Record<string, Tensor> {
  const params: Record<string, Tensor> = {};
  for (const layer of model.layers) {
    const w = layer.weight;
    let values: Float32Array;
    if (w.bits === "float") {
      values = w.values;
    } else {
      values = new Float32Array(w.shape.reduce((a, b) => a * b, 1));
      const row = values.length / w.shape[0];
      w.kept.forEach((c, r) => {
        for (let j = 0; j < row; j++) {
          values[c * row + j] = w.codes[r * row + j] * w.scale;
        }
      });
    }
    params[`${layer.name}.weight`] = device.upload(values, w.shape);
    params[`${layer.name}.bias`] = device.upload(layer.bias, [
      layer.bias.length,
    ]);
  }
  return params;
}

/** An activation grid with its range and gates as tensors on the run's device. */
interface DeviceGrid {
  readonly grid: QuantizedGrid;
  readonly xmax: Tensor;
  readonly chain: Tensor;
}

/** The gates `[z4, z8, z16, z32]` that select a bit width. */
function chainOf(bits: number): number[] {
  return [4, 8, 16, 32].map((b) => (bits >= b ? 1 : 0));
}

/** Each quantized activation's grid, uploaded to `device`, by layer name. */
function deviceGrids(
  model: QuantizedModel,
  device: Device,
): Map<string, DeviceGrid> {
  const grids = new Map<string, DeviceGrid>();
  for (const { name, activation: grid } of model.layers) {
    if (!grid) continue;
    grids.set(name, {
      grid,
      xmax: device.upload([grid.xmax], [1]),
      chain: device.upload(chainOf(grid.bits), [4]),
    });
  }
  return grids;
}

/** The exported model's forward pass on `x`'s device. */
function forwardQuantized(
  model: QuantizedModel,
  params: Record<string, Tensor>,
  grids: ReadonlyMap<string, DeviceGrid>,
  x: Tensor,
): Tensor {
  return runGraph(model.graph, params, x, {
    activation: (layer, a) => {
      const g = grids.get(layer.name);
      return g
        ? quantizerOp(a, g.xmax, { chain: g.chain }, {
          signed: g.grid.signed,
          name: `${layer.name}.act`,
        })
        : a;
    },
    // An unsigned grid clips at 0, which is the ReLU: quantizer (and the
    // max-pool after it) in one pass, bit for bit the two steps.
    fused: (layer, z, activation, pool) => {
      const g = grids.get(layer.name);
      if (
        !g || g.grid.signed ||
        (activation !== "relu" && activation !== undefined)
      ) return undefined;
      return quantizeActivationForInference(z, g.xmax, g.chain, {
        relu: activation === "relu",
        pool,
        name: `${layer.name}.act`,
      });
    },
  }).output;
}

/**
 * Runs an exported model on a batch, on the batch's device: dequantized
 * weights, each quantized activation on its grid (the decomposition of spec
 * section 1 with the gates of its bit width, as in evaluation).
 *
 * @param model The exported model.
 * @param x A batch `[N, C, H, W]`.
 * @returns The logits `[N, classes]`, on `x`'s device.
 * @throws {RangeError} On an inconsistent model or a batch of the wrong shape.
 *
 * @example
 * ```ts
 * import { bayesianBits, exportQuantized, initGated, initGraph, lenet5, randomKey, runQuantized, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(2 * 784).map((_, i) => (i % 9) / 9), [2, 1, 28, 28]);
 * const exported = exportQuantized(gated, await initGated(gated, initGraph(lenet5(), randomKey(0)), x));
 * assert.deepEqual(runQuantized(exported, x).shape, [2, 10]);
 * ```
 */
export function runQuantized(model: QuantizedModel, x: Tensor): Tensor {
  checkQuantizedModel(model);
  const dev = x.device;
  return dev.scope(() =>
    forwardQuantized(
      model,
      dequantizeParams(model, dev),
      deviceGrids(model, dev),
      x,
    )
  );
}

/** Options of {@link evaluateQuantized}. */
export interface EvaluateQuantizedOptions {
  /** Batch size (default 1000). */
  readonly batchSize?: number;
  /**
   * The device to run on (default: the reference device); the parameters
   * are uploaded to it once, the batches as they come.
   */
  readonly device?: Device;
}

/**
 * Test accuracy of an exported model, on `options.device`.
 *
 * @param model The exported model.
 * @param data The dataset (host arrays).
 * @param options Batch size (default 1000) and device (default: reference).
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
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), Tensor.from(images, [4, 1, 28, 28]));
 * const accuracy = await evaluateQuantized(exportQuantized(gated, state), data);
 * assert.ok(accuracy >= 0 && accuracy <= 1);
 * ```
 */
export async function evaluateQuantized(
  model: QuantizedModel,
  data: Dataset,
  options: EvaluateQuantizedOptions = {},
): Promise<number> {
  checkQuantizedModel(model);
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  checkImageShape(model.graph, "test", data);
  const dev = options.device ?? referenceDevice;
  // Uploaded once, outside any scope, and freed when done.
  const params = dequantizeParams(model, dev);
  const grids = deviceGrids(model, dev);
  let correct = 0;
  try {
    for (const batch of batches(data, options.batchSize ?? 1000)) {
      const count = dev.scope(() => {
        const x = dev.upload(batch.images, [batch.size, ...data.shape]);
        const labels = dev.upload(batch.labels, [batch.size], "int32");
        const logits = forwardQuantized(model, params, grids, x);
        return dev.kernels.countCorrect(logits, labels);
      });
      correct += (await count.read())[0];
      dev.free(count);
    }
  } finally {
    dev.free(
      ...Object.values(params),
      ...[...grids.values()].flatMap((g) => [g.xmax, g.chain]),
    );
  }
  return correct / data.count;
}
