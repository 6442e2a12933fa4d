/**
 * BSQ as a method of the training loop: weights composed from bit planes
 * (or, once the scheme is fixed, from normalised weights) through the
 * straight-through unit quantizer, activations through the batch-max
 * quantizer, `alpha R` as the penalty while the planes train, one Adam over
 * the trainable groups followed by the clip of planes to `[0, 2]` (or of
 * normalised weights to `[-1, 1]`), the re-quantization as `afterEpoch`,
 * and the frozen model on uniform grids.
 *
 * @module
 */

import type {
  Frozen,
  LayerPlan,
  Penalty,
  QuantizationMethod,
  UniformGrid,
} from "../../method.ts";
import { add, scale } from "../../ops/elementwise.ts";
import {
  adam,
  constantThenLinearSchedule,
  type Optimizer,
  perEpoch,
} from "../../optim.ts";
import { planeLevels } from "../../reference/bitplanes.ts";
import { hostF32, type Tensor } from "../../tensor.ts";
import { bsqCost, INPUT_BITS, memoryWeight, regularizerValue } from "./cost.ts";
import {
  bsq,
  bsqGroup,
  type BsqModel,
  type BsqOptions,
  bsqRunHooks,
  type BsqState,
  bsqWeight,
  initBsq,
  layerParams,
  requantizeState,
} from "./model.ts";
import { groupLassoOp } from "./ops.ts";

/** The optimizer groups of BSQ. */
export const BSQ_GROUPS: readonly string[] = Object.freeze([
  "planes",
  "weights",
  "scales",
  "float",
  "calibration",
]);

/** Options of {@link bsqMethod}. */
export interface BsqMethodOptions extends BsqOptions {
  /** Adam's learning rate (default 1e-3). */
  readonly learningRate?: number;
  /**
   * The epoch of the run after which `afterEpoch` re-quantizes (spec
   * section 4), or none (default). Re-quantizing changes the planes'
   * shapes, so it must end the run: the next run starts a fresh optimizer,
   * as the reference code rebuilds its optimizer (`trainBsq` runs the
   * protocol this way).
   */
  readonly requantizeAfter?: number;
  /**
   * The protocol's schedule over the whole method (spec section 11):
   * constant for two thirds of `totalEpochs`, then linear to 0; this run
   * starts at epoch `firstEpoch` of it. Default: one run of its own
   * epochs (`firstEpoch` 0, `totalEpochs` the run's).
   */
  readonly schedule?: {
    readonly totalEpochs: number;
    readonly firstEpoch: number;
  };
}

/** The `alpha R` penalty of the planes, and `R` itself. */
export function bsqPenalty(q: BsqModel, state: BsqState): Penalty | null {
  if (state.stage !== "planes" || q.options.alpha === 0) return null;
  let r: Tensor | null = null;
  for (const layer of q.layers) {
    const names = layerParams(layer.info.name);
    const n = state.bits[layer.info.name];
    const term = groupLassoOp(
      state.params[names.pos],
      state.params[names.neg],
      memoryWeight(q, layer.info.name, n),
    );
    r = r ? add(r, term) : term;
  }
  if (r === null) return null;
  return { value: scale(r, q.options.alpha), metrics: { regularizer: r } };
}

/**
 * An optimizer whose update is followed by a clip of the planes to
 * `[0, 2]` and of normalised weights to `[-1, 1]` (spec sections 1, 4c).
 */
export function clippedOptimizer(q: BsqModel, inner: Optimizer): Optimizer {
  const bounds = (name: string): [number, number] | null => {
    const group = bsqGroup(q, name);
    return group === "planes" ? [0, 2] : group === "weights" ? [-1, 1] : null;
  };
  return {
    init: inner.init,
    update: (params, grads, state) => {
      const r = inner.update(params, grads, state);
      const out: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(r.params)) {
        const b = bounds(name);
        out[name] = b ? t.device.kernels.clip(t, b[0], b[1]) : t;
      }
      return { params: out, state: r.state };
    },
  };
}

/** The protocol's Adam: constant, then linear to 0 over the method's epochs. */
function bsqOptimizer(
  q: BsqModel,
  options: BsqMethodOptions,
  plan: { epochs: number; steps: number },
): Optimizer {
  const lr = options.learningRate ?? 1e-3;
  const { totalEpochs, firstEpoch } = options.schedule ??
    { totalEpochs: plan.epochs, firstEpoch: 0 };
  const overall = constantThenLinearSchedule({ lr, total: totalEpochs });
  const schedule = perEpoch((e) => overall(firstEpoch + e), plan.steps);
  return clippedOptimizer(q, adam({ lr: schedule }));
}

/** A uniform grid `{ scale k : k = codeMin..codeMax }` counted `bits` wide. */
function uniformGrid(
  bits: number,
  step: number,
  codeMin: number,
  codeMax: number,
): UniformGrid {
  return {
    kind: "uniform",
    bits,
    scale: step,
    codeMin,
    codeMax,
    channels: null,
  };
}

/** One layer's plan: weights on `s / m` steps, the activation on `S / (2^a - 1)`. */
function layerPlan(q: BsqModel, state: BsqState, index: number): LayerPlan {
  const layer = q.layers[index];
  const names = layerParams(layer.info.name);
  const n = state.bits[layer.info.name];
  const m = planeLevels(n);
  const s = hostF32(state.params[names.scale])[0];
  const all = Array.from({ length: layer.info.outChannels }, (_, c) => c);
  const a = q.options.activationBits;
  const am = planeLevels(a);
  const activation = layer.quantizeActivation
    ? uniformGrid(
      a,
      Math.fround(hostF32(state.params[names.actMax])[0] / am),
      layer.unsignedActivation ? 0 : -am,
      am,
    )
    : null;
  return {
    name: layer.info.name,
    weight: n === 0 ? uniformGrid(0, 1, 0, 0) : uniformGrid(
      n + 1,
      Math.fround(s / m),
      -m,
      m,
    ),
    keptChannels: n === 0 ? [] : all,
    activation: activation,
    details: { planes: n, scale: s, stage: state.stage },
  };
}

/**
 * The frozen model: each layer's weight quantized once as the forward pass
 * does (exactly `fround(s / m) k`), planes and BSQ's own tensors left out;
 * the plan's weight grids count `N + 1` bits (`N` in the details), the
 * activation grids use the running maxima.
 *
 * @param q The BSQ model.
 * @param state Its state.
 * @returns The frozen model.
 */
export function freezeBsq(q: BsqModel, state: BsqState): Frozen {
  const own = new Set(
    Object.keys(state.params).filter((n) => bsqGroup(q, n) !== "float"),
  );
  const params: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(state.params)) {
    if (!own.has(name)) params[name] = t;
  }
  for (const layer of q.layers) {
    params[`${layer.info.name}.weight`] = bsqWeight(state, layer.info.name);
  }
  return {
    model: q.model,
    params,
    stats: state.stats,
    plan: {
      method: "bsq",
      inputBits: INPUT_BITS,
      layers: q.layers.map((_, i) => layerPlan(q, state, i)),
    },
  };
}

/**
 * BSQ as a method: groups `planes`, `weights` (normalised weights, the
 * fixed-scheme phase), `scales`, `float` (biases, batch norm) and
 * `calibration` (activation maxima, never trained). Deterministic.
 *
 * @param options The method's knobs (for `attach`), learning rate, schedule.
 * @returns The method.
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { bsqMethod } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const method = bsqMethod({ alpha: 0.01 });
 * const q = method.attach(lenet5());
 * assert.equal(method.group(q, "conv1.weight.pos"), "planes");
 * assert.equal(method.group(q, "conv1.bias"), "float");
 * ```
 */
export function bsqMethod(
  options: BsqMethodOptions = {},
): QuantizationMethod<BsqModel, BsqState> {
  return {
    name: "bsq",
    groups: BSQ_GROUPS,
    stochastic: false,
    metrics: { regularizer: "steps" },
    attach: (model) => bsq(model, options),
    model: (q) => q.model,
    init: (q, float, first) => initBsq(q, float, first),
    withParams: (_q, state, params, stats) => ({ ...state, params, stats }),
    group: bsqGroup,
    optimizer: (q, plan) => bsqOptimizer(q, options, plan),
    hooks: (q, state) => bsqRunHooks(q, state),
    penalty: (q, state) => bsqPenalty(q, state),
    measure: (q, state, names) => {
      const out: Record<string, number> = {};
      if (!names || names.has("relativeGbops") || names.has("compression")) {
        const cost = bsqCost(q, state.bits);
        out.relativeGbops = cost.relativeGbops;
        out.compression = cost.compression;
      }
      if (!names || names.has("regularizer")) {
        out.regularizer = regularizerValue(q, state);
      }
      return out;
    },
    afterEpoch: (q, state, epoch) =>
      epoch === options.requantizeAfter ? requantizeState(q, state) : state,
    freeze: freezeBsq,
  };
}
