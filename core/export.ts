/**
 * Export of a frozen model (spec section 8), read off its plan whichever
 * method froze it ({@link exportFrozen}): per conv/dense layer the weight
 * bit width, the scale of its grid, the integer codes of the kept output
 * channels and which channels were pruned; per quantized activation its bit
 * width, signedness, range and scale. The exported model runs on its
 * own ({@link runQuantized}, {@link evaluateQuantized}) and is written to
 * disk by `io/quantized.ts`. The format itself (types, grids, the
 * consistency check) is in `core/export_format.ts`, re-exported here.
 *
 * @module
 */

import type { Dataset } from "./data.ts";
import { accuracyOn } from "./frozen.ts";
import type { Device } from "./device.ts";
import {
  checkQuantizedModel,
  codeRange,
  type FloatWeights,
  type GridBits,
  gridScale,
  QUANTIZED_SCHEMA,
  type QuantizedGrid,
  type QuantizedLayer,
  type QuantizedModel,
  type QuantizedWeights,
} from "./export_format.ts";
import { analyzeGraph, type LayerInfo, runGraph } from "./graph.ts";
import type { Frozen, GridPlan, LayerPlan } from "./method.ts";
import { gridGates, quantizeActivationForInference } from "./ops/grid.ts";
import { referenceDevice } from "./reference/device.ts";
import { quantizerConstants, scaleProblem } from "./reference/quantizer.ts";
import { roundHalfEven } from "./round.ts";
import { hostF32, type Tensor } from "./tensor.ts";
import { checkImageShape } from "./train.ts";

export * from "./export_format.ts";

/** A parameter of a frozen model, or a RangeError naming it. */
function needParam(frozen: Frozen, name: string): Tensor {
  const p = frozen.params[name];
  if (!p) throw new RangeError(`Cannot export: missing parameter "${name}"`);
  return p;
}

/** A plan's grid with its step. */
function gridOf(grid: GridPlan, where: string): QuantizedGrid {
  if (grid.kind !== "residual") {
    throw new RangeError(
      `Cannot export ${where}: this format holds residual grids only, got a ${grid.kind} grid`,
    );
  }
  const bits = grid.bits as GridBits;
  if (![2, 4, 8, 16, 32].includes(bits)) {
    throw new RangeError(
      `Cannot export ${where}: a grid has 2, 4, 8, 16 or 32 bits, got ${grid.bits}`,
    );
  }
  const problem = scaleProblem(
    quantizerConstants(grid.xmax, grid.signed, [1, 1, 1, 1]),
    [2, 4, 8, 16, 32].indexOf(bits) + 1,
  );
  if (problem !== null) {
    throw new RangeError(
      `Cannot export ${where}: its ${bits}-bit grid is not representable: ${problem}`,
    );
  }
  return {
    bits,
    signed: grid.signed,
    xmax: grid.xmax,
    scale: gridScale(grid.xmax, grid.signed, bits),
  };
}

/** The grid of one output channel as {@link gridCodes} reads it. */
export interface ChannelCodeGrid {
  /** The grid's width, for error messages. */
  readonly bits: number;
  /** The step between levels. */
  readonly scale: number;
  /** The lowest code. */
  readonly codeMin: number;
  /** The highest code. */
  readonly codeMax: number;
  /** Whether every value must be a grid level (checked to 1e-3 of a step). */
  readonly exact: boolean;
}

/**
 * Integer codes of the kept output channels of quantized weights `xq`
 * (host values, `row` elements per channel): `clamp(round(xq / scale))` on
 * each channel's grid, ties to even.
 *
 * @param where The tensor, for error messages.
 * @param xq The quantized weights, output channels on axis 0.
 * @param kept The output channels to encode, in order.
 * @param row Elements per output channel.
 * @param gridOf The grid of an output channel.
 * @returns The codes, `kept.length * row` of them.
 * @throws {Error} When an `exact` grid's value is not one of its levels.
 */
export function gridCodes(
  where: string,
  xq: Float32Array,
  kept: readonly number[],
  row: number,
  gridOf: (channel: number) => ChannelCodeGrid,
): Int32Array {
  const codes = new Int32Array(kept.length * row);
  kept.forEach((c, r) => {
    const { bits, scale, codeMin, codeMax, exact } = gridOf(c);
    for (let j = 0; j < row; j++) {
      const v = xq[c * row + j] / scale;
      const k = Math.min(codeMax, Math.max(codeMin, roundHalfEven(v)));
      if (exact && Math.abs(v - k) > 1e-3) {
        throw new Error(
          `Cannot export ${where}: element ${c * row + j} (${
            xq[c * row + j]
          }) is not on the ${bits}-bit grid of step ${scale}`,
        );
      }
      codes[r * row + j] = k;
    }
  });
  return codes;
}

/**
 * Integer codes of the kept channels of quantized weights `xq` (host
 * values): `round(xq / s_b)`, checked to be grid levels up to 8 bits.
 */
function codesOf(
  where: string,
  grid: QuantizedGrid,
  xq: Float32Array,
  kept: readonly number[],
  row: number,
): Int32Array | Uint32Array {
  const [codeMin, codeMax] = codeRange(grid.bits, grid.signed);
  const codes = gridCodes(where, xq, kept, row, () => ({
    bits: grid.bits,
    scale: grid.scale,
    codeMin,
    codeMax,
    exact: grid.bits <= 8,
  }));
  return grid.signed ? codes : Uint32Array.from(codes);
}

/** One conv/dense layer of a frozen model, exported from its plan. */
function exportLayer(
  frozen: Frozen,
  info: LayerInfo,
  plan: LayerPlan,
): QuantizedLayer {
  const w = needParam(frozen, `${info.name}.weight`);
  const bias = hostF32(needParam(frozen, `${info.name}.bias`)).slice();
  const activation = plan.activation
    ? gridOf(plan.activation, `${info.name} activation`)
    : null;
  let weight: QuantizedWeights | FloatWeights;
  if (plan.weight) {
    const where = `${info.name}.weight`;
    const grid = gridOf(plan.weight, where);
    const kept = [...plan.keptChannels];
    const codes = codesOf(where, grid, hostF32(w), kept, w.size / w.shape[0]);
    weight = { ...grid, shape: [...w.shape], kept, codes };
  } else {
    weight = { bits: "float", shape: [...w.shape], values: hostF32(w).slice() };
  }
  return { name: info.name, kind: info.kind, weight, bias, activation };
}

/**
 * Exports a frozen model as its plan says, whichever method froze it: each
 * layer whose weights are on a grid is written as the integer codes of its
 * kept output channels (pruned channels are listed by omission from
 * `kept` and carry no codes), with the grid's bits, signedness, range and
 * scale; a layer in full precision as float32 weights; each quantized
 * activation as its grid. The values are read on the host, so the
 * parameters must live on a device whose memory the host sees (reference
 * or WASM; move them there first with `tensor.to(device)`).
 *
 * The codes are `round(xq / s_b)` of the frozen float32 weights `xq`. Up to
 * 8 bits every `xq` is a grid level (checked); at 16 and 32 bits the grid is
 * finer than float32 near `xmax`, and the code is the level nearest to the
 * float32 value.
 *
 * @param frozen The frozen model (`method.freeze(...)`): weights already on
 *   their grids, pruned channels zero.
 * @returns The exported model.
 * @throws {RangeError} On a missing parameter, a layer the plan lacks or a
 *   grid of another bit width.
 * @throws {TypeError} When the parameters live on a device the host cannot
 *   read synchronously (WebGPU).
 *
 * @example A float model exports as float32 layers
 * ```ts
 * import { exportFrozen, floatMethod, initGraph, lenet5, randomKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const method = floatMethod();
 * const model = method.attach(lenet5());
 * const exported = exportFrozen(method.freeze(model, initGraph(lenet5(), randomKey(0))));
 * assert.equal(exported.inputBits, 32);
 * assert.equal(exported.layers[0].weight.bits, "float");
 * assert.equal(exported.layers[0].activation, null);
 * ```
 */
export function exportFrozen(frozen: Frozen): QuantizedModel {
  checkHostVisible(Object.values(frozen.params)[0].device);
  const planOf = new Map(frozen.plan.layers.map((l) => [l.name, l]));
  const layers = analyzeGraph(frozen.model).layers.map((info) => {
    const plan = planOf.get(info.name);
    if (!plan) {
      throw new RangeError(
        `Cannot export: the plan has no layer "${info.name}"`,
      );
    }
    return exportLayer(frozen, info, plan);
  });
  return {
    schema: QUANTIZED_SCHEMA,
    graph: frozen.model,
    inputBits: frozen.plan.inputBits,
    layers,
  };
}

/**
 * Throws unless the host can read a device's memory synchronously, as
 * export does (the reference and WASM devices).
 *
 * @param dev The parameters' device.
 * @throws {TypeError} For a WebGPU device.
 */
export function checkHostVisible(dev: Device): void {
  if (dev.kind === "webgpu") {
    throw new TypeError(
      `Cannot export from the ${dev.name} device: the codes are read on the host; move the parameters to the reference or wasm device first (tensor.to(device))`,
    );
  }
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
 * import { type QuantizedModel } from "@bbits/core";
 * import { dequantizeParams } from "@bbits/core/quantized";
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
      chain: device.upload(gridGates(grid.bits), [4]),
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
        ? a.device.kernels.residualQuantize(
          a,
          g.xmax,
          g.chain,
          null,
          g.grid.signed,
        )
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
 * @throws {RangeError} On an inconsistent model, a batch of the wrong shape,
 *   or a batch holding NaN or an infinity (checked where the host sees the
 *   batch: the reference and WASM devices).
 *
 * @example
 * ```ts
 * import { exportFrozen, floatMethod, initGraph, lenet5, randomKey, runQuantized, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const method = floatMethod();
 * const model = method.attach(lenet5());
 * const exported = exportFrozen(method.freeze(model, initGraph(lenet5(), randomKey(0))));
 * const x = Tensor.from(new Float32Array(2 * 784).map((_, i) => (i % 9) / 9), [2, 1, 28, 28]);
 * assert.deepEqual(runQuantized(exported, x).shape, [2, 10]);
 * ```
 */
export function runQuantized(model: QuantizedModel, x: Tensor): Tensor {
  checkQuantizedModel(model);
  const dev = x.device;
  if (dev.kind !== "webgpu") {
    const values = hostF32(x);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new RangeError(
        `Cannot run the exported model on a batch with ${
          values[bad]
        } at element ${bad} (inputs must be finite)`,
      );
    }
  }
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
 * import { evaluate, evaluateQuantized, exportFrozen, floatMethod, initGraph, lenet5, makeDataset, randomKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const images = new Float32Array(4 * 784).map((_, i) => (i % 11) / 11);
 * const data = makeDataset(images, new Int32Array([0, 1, 2, 3]), [1, 28, 28]);
 * const method = floatMethod();
 * const model = method.attach(lenet5());
 * const float = initGraph(lenet5(), randomKey(0));
 * const accuracy = await evaluateQuantized(exportFrozen(method.freeze(model, float)), data);
 * assert.equal(accuracy, await evaluate(lenet5(), float.params, data));
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
  try {
    return await accuracyOn(
      dev,
      data,
      options.batchSize ?? 1000,
      (x) => forwardQuantized(model, params, grids, x),
    );
  } finally {
    dev.free(
      ...Object.values(params),
      ...[...grids.values()].flatMap((g) => [g.xmax, g.chain]),
    );
  }
}
