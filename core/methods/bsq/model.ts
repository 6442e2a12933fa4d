/**
 * A BSQ model (spec `bsq.md`): which layers carry bit planes, the options,
 * the state, the conversion from a float model ({@link initBsq}) and the
 * periodic re-quantization ({@link requantizeState}).
 *
 * Parameter names, for a quantized layer `<l>`:
 * - `<l>.weight.pos`, `<l>.weight.neg`: the bit planes `[N, ...weightShape]`
 *   (plane 0 the most significant; group `"planes"`);
 * - `<l>.weight`: the normalised weight `wn` in `[-1, 1]`. While the planes
 *   train it is the value of the last re-quantization (`k / m`, not used by
 *   the forward pass); once the scheme is fixed it is what trains (group
 *   `"weights"`, spec section 4c);
 * - `<l>.weight.scale`: `[1]`, the scale `s` (group `"scales"`);
 * - `<l>.act.max`: `[1]`, the running maximum of the activation quantizer's
 *   `S` that a frozen model quantizes with (group `"calibration"`, never
 *   trained; see {@link calibrateBsq});
 * - `<l>.bias` and batch-norm parameters stay float (group `"float"`).
 *
 * The state's JSON fields: `bits` (`N` per layer) and `stage` (`"planes"`
 * while the planes train, `"fixed"` once the scheme is fixed).
 *
 * @module
 */

import type { Dataset } from "../../data.ts";
import { batches } from "../../data.ts";
import {
  analyzeGraph,
  type LayerInfo,
  type ModelGraph,
  runGraph,
  type RunOptions,
} from "../../graph.ts";
import type { ParamRecord } from "../../loop.ts";
import type { MethodState, StatsRecord } from "../../method.ts";
import { planeLevels } from "../../reference/bitplanes.ts";
import { hostF32, type Tensor } from "../../tensor.ts";
import {
  codesFromFloat,
  dropZeroPlanes,
  type LayerCodes,
  normalizedWeights,
  planesFromCodes,
  requantizePlanes,
} from "./planes.ts";
import { maxAbsQuantizeOp, planeSumOp, unitQuantizeOp } from "./ops.ts";

/** Options of {@link bsq}. */
export interface BsqOptions {
  /** `alpha`, the regulariser's strength (`>= 0`); default 0.01. */
  readonly alpha?: number;
  /**
   * `a`, the fixed activation precision of every hidden layer's output,
   * an integer in 0..16; 0 leaves activations in float. Default 4.
   */
  readonly activationBits?: number;
  /** `N0`, planes of the converted float model, 1..maxBits; default 8. */
  readonly initialBits?: number;
  /** `maxbit`, the most planes a layer may grow to, 1..16; default 8. */
  readonly maxBits?: number;
}

/** {@link BsqOptions} with every default filled in. */
export type ResolvedBsqOptions = Required<BsqOptions>;

/** One quantized conv/dense layer. */
export interface BsqLayer {
  /** The layer (shapes and MACs). */
  readonly info: LayerInfo;
  /** `n_l`: weights of the layer. */
  readonly size: number;
  /** Whether its output is quantized (every layer but the last, when `a > 0`). */
  readonly quantizeActivation: boolean;
  /** Whether that output is non-negative (after a ReLU or ReLU6). */
  readonly unsignedActivation: boolean;
}

/** A float model with BSQ attached. */
export interface BsqModel {
  /** The graph that trains and runs. */
  readonly model: ModelGraph;
  /** The quantized layers, in execution order. */
  readonly layers: readonly BsqLayer[];
  /** `TP`: weights and biases of the quantized layers. */
  readonly totalParams: number;
  /** The options. */
  readonly options: ResolvedBsqOptions;
}

/** The training state of a BSQ model. */
export interface BsqState extends MethodState {
  /** Parameters (see the module's names). */
  readonly params: ParamRecord;
  /** Batch-norm running statistics, if any. */
  readonly stats?: StatsRecord;
  /** `N` per layer: magnitude planes (0: a layer fixed at zero). */
  readonly bits: Readonly<Record<string, number>>;
  /** `"planes"` while the planes train, `"fixed"` once the scheme is fixed. */
  readonly stage: "planes" | "fixed";
}

/** Throws unless `value` is an integer in `[lo, hi]` (or a number passing `ok`). */
function checkOption(
  what: string,
  value: unknown,
  ok: (v: number) => boolean,
  rule: string,
): number {
  if (typeof value !== "number" || !ok(value)) {
    throw new RangeError(
      `Invalid BSQ option ${what} ${String(value)}: it must be ${rule}`,
    );
  }
  return value;
}

const integerIn = (lo: number, hi: number) => (v: number) =>
  Number.isInteger(v) && v >= lo && v <= hi;

/**
 * The options with defaults, checked.
 *
 * @param options The options given.
 * @returns Every option.
 * @throws {RangeError} Naming the option and the value that breaks its rule.
 */
export function resolveBsqOptions(
  options: BsqOptions = {},
): ResolvedBsqOptions {
  const alpha = checkOption(
    "alpha",
    options.alpha ?? 0.01,
    (v) => Number.isFinite(v) && v >= 0,
    "a finite number >= 0",
  );
  const activationBits = checkOption(
    "activationBits",
    options.activationBits ?? 4,
    integerIn(0, 16),
    "an integer in 0..16 (0: activations in float)",
  );
  const maxBits = checkOption(
    "maxBits",
    options.maxBits ?? 8,
    integerIn(1, 16),
    "an integer in 1..16",
  );
  const initialBits = checkOption(
    "initialBits",
    options.initialBits ?? 8,
    integerIn(1, maxBits),
    `an integer in 1..maxBits (${maxBits})`,
  );
  return { alpha, activationBits, initialBits, maxBits };
}

/**
 * Attaches BSQ to a float model: every conv/dense layer's weights become
 * bit planes; every layer's output but the last one's gets the fixed-
 * precision activation quantizer (none when `activationBits` is 0).
 *
 * @param model The float model.
 * @param options `alpha`, `activationBits`, `initialBits`, `maxBits`.
 * @returns The BSQ model (no parameters yet: see {@link initBsq}).
 * @throws {RangeError} On a bad option or a model that does not analyse.
 *
 * @example LeNet-5: four layers, `TP` = 582 026 weights and biases
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { bsq } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const q = bsq(lenet5(), { alpha: 0.01, activationBits: 4 });
 * assert.deepEqual(q.layers.map((l) => l.quantizeActivation), [true, true, true, false]);
 * assert.equal(q.totalParams, 582026);
 * assert.throws(() => bsq(lenet5(), { alpha: -1 }), /alpha -1/);
 * ```
 */
export function bsq(model: ModelGraph, options: BsqOptions = {}): BsqModel {
  const resolved = resolveBsqOptions(options);
  const infos = analyzeGraph(model).layers;
  const layers = infos.map((info, i): BsqLayer => ({
    info,
    size: info.weightShape.reduce((a, b) => a * b, 1),
    quantizeActivation: resolved.activationBits > 0 && i < infos.length - 1,
    unsignedActivation: info.activation === "relu" ||
      info.activation === "relu6",
  }));
  const totalParams = layers.reduce(
    (s, l) => s + l.size + l.info.outChannels,
    0,
  );
  return { model, layers, totalParams, options: resolved };
}

/** The parameter names of one quantized layer. */
export interface LayerParamNames {
  /** The normalised weight. */
  readonly weight: string;
  /** The positive planes. */
  readonly pos: string;
  /** The negative planes. */
  readonly neg: string;
  /** The scale. */
  readonly scale: string;
  /** The activation quantizer's running maximum. */
  readonly actMax: string;
}

/** The parameter names of a quantized layer. */
export function layerParams(layer: string): LayerParamNames {
  return {
    weight: `${layer}.weight`,
    pos: `${layer}.weight.pos`,
    neg: `${layer}.weight.neg`,
    scale: `${layer}.weight.scale`,
    actMax: `${layer}.act.max`,
  };
}

/**
 * The optimizer group of a parameter: `"planes"`, `"weights"` (the
 * normalised weights), `"scales"`, `"calibration"` (activation maxima) or
 * `"float"` (biases, batch norm).
 */
export function bsqGroup(q: BsqModel, name: string): string {
  if (name.endsWith(".weight.pos") || name.endsWith(".weight.neg")) {
    return "planes";
  }
  if (name.endsWith(".weight.scale")) return "scales";
  if (name.endsWith(".act.max")) return "calibration";
  if (q.layers.some((l) => name === `${l.info.name}.weight`)) return "weights";
  return "float";
}

/** A layer's tensors from its codes: planes, the normalised weight, the scale. */
function layerTensors(
  dev: Tensor["device"],
  layer: BsqLayer,
  codes: LayerCodes,
  withPlanes: boolean,
): Record<string, Tensor> {
  const names = layerParams(layer.info.name);
  const shape = layer.info.weightShape;
  const out: Record<string, Tensor> = {
    [names.weight]: dev.upload(
      normalizedWeights(codes.codes, codes.planes),
      shape,
    ),
    [names.scale]: dev.upload([codes.scale], [1]),
  };
  if (withPlanes) {
    const { pos, neg } = planesFromCodes(codes.codes, codes.planes);
    out[names.pos] = dev.upload(pos, [codes.planes, ...shape]);
    out[names.neg] = dev.upload(neg, [codes.planes, ...shape]);
  }
  return out;
}

/**
 * The conversion from a float model (spec section 2) followed by the
 * precision pass the code runs right after loading (section 4b): `N0`
 * planes per layer, all-zero planes dropped; activation maxima from a
 * forward pass over `firstBatch` (refine them with {@link calibrateBsq}).
 *
 * @param q The BSQ model.
 * @param float Float parameters (and batch-norm statistics).
 * @param firstBatch A batch of training inputs.
 * @returns The state, planes training.
 * @throws {RangeError} On a missing parameter.
 */
export async function initBsq(
  q: BsqModel,
  float: MethodState,
  firstBatch: Tensor,
): Promise<BsqState> {
  const params: Record<string, Tensor> = { ...float.params };
  const bits: Record<string, number> = {};
  for (const layer of q.layers) {
    const name = `${layer.info.name}.weight`;
    const w = float.params[name];
    if (!w) {
      throw new RangeError(
        `Cannot convert to BSQ: missing parameter "${name}"`,
      );
    }
    const values = (await w.read()) as Float32Array;
    const codes = dropZeroPlanes(codesFromFloat(values, q.options.initialBits));
    Object.assign(params, layerTensors(w.device, layer, codes, true));
    bits[layer.info.name] = codes.planes;
  }
  const state: BsqState = { params, stats: float.stats, bits, stage: "planes" };
  const x = await firstBatch.to(w0(params));
  const maxima = await activationMaxima(q, state, [x], x !== firstBatch);
  return withMaxima(q, state, maxima);
}

function w0(params: ParamRecord): Tensor["device"] {
  return Object.values(params)[0].device;
}

/**
 * The quantized weight of a layer in the current stage: planes composed
 * and quantized, or the normalised weight quantized; zeros at `N = 0`.
 */
export function bsqWeight(state: BsqState, layer: string): Tensor {
  const names = layerParams(layer);
  const n = state.bits[layer];
  const p = state.params;
  if (n === 0) return p[names.weight].device.zeros(p[names.weight].shape);
  const wt = state.stage === "planes"
    ? planeSumOp(p[names.pos], p[names.neg])
    : p[names.weight];
  return unitQuantizeOp(wt, p[names.scale], planeLevels(n));
}

/**
 * Run options for a forward pass: every layer's weight from its planes (or
 * normalised weight), each hidden output through the batch-max quantizer;
 * `onMax` sees each quantizer's `S`.
 */
export function bsqRunHooks(
  q: BsqModel,
  state: BsqState,
  onMax?: (layer: string, maxAbs: Tensor) => void,
): Required<Pick<RunOptions, "weight" | "activation">> {
  const levels = planeLevels(q.options.activationBits);
  const quantized = new Set(
    q.layers.filter((l) => l.quantizeActivation).map((l) => l.info.name),
  );
  return {
    weight: (layer: LayerInfo) => bsqWeight(state, layer.name),
    activation: (layer: LayerInfo, a: Tensor) => {
      if (!quantized.has(layer.name)) return a;
      const r = maxAbsQuantizeOp(a, levels);
      onMax?.(layer.name, r.maxAbs);
      return r.y;
    },
  };
}

/**
 * The largest `S` of each activation quantizer over the batches `inputs`
 * (the forward pass of training, evaluation batch norm); with `owned`, each
 * batch is freed once used.
 */
async function activationMaxima(
  q: BsqModel,
  state: BsqState,
  inputs: Iterable<Tensor>,
  owned: boolean,
): Promise<Map<string, number>> {
  const maxima = new Map<string, number>();
  const dev = w0(state.params);
  for (const x of inputs) {
    const found = dev.scope(() => {
      const seen: [string, Tensor][] = [];
      runGraph(q.model, state.params, x, {
        mode: "eval",
        stats: state.stats ?? {},
        ...bsqRunHooks(q, state, (layer, s) => seen.push([layer, s])),
      });
      return seen;
    });
    if (owned) dev.free(x);
    for (const [layer, s] of found) {
      const v = (await s.read())[0];
      maxima.set(layer, Math.max(maxima.get(layer) ?? 0, v));
      dev.free(s);
    }
  }
  return maxima;
}

/** The state with new activation maxima (the old tensors are left to the caller). */
function withMaxima(
  q: BsqModel,
  state: BsqState,
  maxima: ReadonlyMap<string, number>,
): BsqState {
  const params: Record<string, Tensor> = { ...state.params };
  const dev = w0(params);
  for (const layer of q.layers) {
    if (!layer.quantizeActivation) continue;
    const v = maxima.get(layer.info.name) ?? 0;
    params[layerParams(layer.info.name).actMax] = dev.upload([v], [1]);
  }
  return { ...state, params };
}

/**
 * The running maximum of each activation quantizer's `S` (spec section 9,
 * item 4: a frozen model quantizes with it) over the first `maxBatches`
 * batches of `data` in order, the forward pass as in training (evaluation
 * batch norm).
 *
 * @param q The BSQ model.
 * @param state Its state.
 * @param data Usually the training set.
 * @param options Batch size (default 1000) and how many batches (default all).
 * @returns The state with new `<l>.act.max` tensors.
 */
export async function calibrateBsq(
  q: BsqModel,
  state: BsqState,
  data: Dataset,
  options: { readonly batchSize?: number; readonly maxBatches?: number } = {},
): Promise<BsqState> {
  if (q.options.activationBits === 0) return state;
  const dev = w0(state.params);
  const limit = options.maxBatches ?? Infinity;
  function* inputs() {
    let count = 0;
    for (const batch of batches(data, options.batchSize ?? 1000)) {
      if (count++ >= limit) return;
      yield dev.upload(batch.images, [batch.size, ...data.shape]);
    }
  }
  return withMaxima(q, state, await activationMaxima(q, state, inputs(), true));
}

/**
 * One re-quantization of every layer (spec section 4, steps 4a and 4b):
 * planes rounded to exact 0/1 planes, grown on overflow up to `maxBits`,
 * all-zero MSB and LSB planes dropped with the exact scale correction. The
 * normalised weights become `k / m`. A no-op once the scheme is fixed.
 *
 * @param q The BSQ model.
 * @param state The state (parameters readable on the host).
 * @returns The new state (new plane, weight and scale tensors).
 */
export function requantizeState(q: BsqModel, state: BsqState): BsqState {
  if (state.stage !== "planes") return state;
  const params: Record<string, Tensor> = { ...state.params };
  const bits: Record<string, number> = {};
  for (const layer of q.layers) {
    const names = layerParams(layer.info.name);
    const codes = requantizePlanes(
      hostF32(params[names.pos]),
      hostF32(params[names.neg]),
      state.bits[layer.info.name],
      hostF32(params[names.scale])[0],
      q.options.maxBits,
    );
    Object.assign(
      params,
      layerTensors(params[names.pos].device, layer, codes, true),
    );
    bits[layer.info.name] = codes.planes;
  }
  return { ...state, params, bits };
}

/**
 * Fixes the scheme (spec section 4c): the planes (exact after
 * {@link requantizeState}) go, the normalised weights `k / m` and scales
 * stay and train from here; a one-plane all-zero layer becomes `N = 0`.
 *
 * @param q The BSQ model.
 * @param state A state right after a re-quantization.
 * @returns The state with the scheme fixed.
 */
export function fixScheme(q: BsqModel, state: BsqState): BsqState {
  if (state.stage === "fixed") return state;
  const params: Record<string, Tensor> = { ...state.params };
  const bits: Record<string, number> = { ...state.bits };
  for (const layer of q.layers) {
    const names = layerParams(layer.info.name);
    delete params[names.pos];
    delete params[names.neg];
    const zero = hostF32(params[names.weight]).every((v) => v === 0);
    if (bits[layer.info.name] === 1 && zero) bits[layer.info.name] = 0;
  }
  return { ...state, params, bits, stage: "fixed" };
}
