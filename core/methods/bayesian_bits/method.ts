/**
 * Bayesian Bits as a method of the training loop: gates sampled from the
 * step's key while the logits are learned (deterministic otherwise), the
 * prior as the penalty, three Adam groups, and the frozen model with its
 * plan read off the deterministic gates.
 *
 * @module
 */

import { checkGatedState } from "./state_check.ts";
import {
  checkHostVisible,
  exportFrozen,
  type QuantizedModel,
} from "../../export.ts";
import { withFrozen } from "../../frozen.ts";
import type {
  LayerPlan,
  QuantizationMethod,
  ResidualGrid,
} from "../../method.ts";
import type { Frozen, Penalty, QuantizationPlan } from "../../method.ts";
import { add, scale } from "../../ops/elementwise.ts";
import { maxPool2d } from "../../ops/pool.ts";
import {
  adam,
  constantThenLinearSchedule,
  type Optimizer,
  paramGroups,
  perEpoch,
} from "../../optim.ts";
import type { RunOptions } from "../../graph.ts";
import { effectiveBits, gateProbability } from "../../reference/gates.ts";
import { foldIn, type RandomKey } from "../../rng.ts";
import { hostF32, type Tensor } from "../../tensor.ts";
import { priorSum } from "./cost.ts";
import { gatedBops } from "./cost.ts";
import {
  bayesianBits,
  type BayesianBitsOptions,
  firstParam,
  type GatedModel,
  type GatedParams,
  type GatedState,
  initGated,
  logitTensors,
  parameterGroup,
  plainLogits,
  type QuantizerInfo,
} from "./model.ts";
import { gatesOp, type GateTensors, priorOp, quantizerOp } from "./ops.ts";

/**
 * The gates of every quantizer for one run of the graph: quantizer `i`
 * samples with `foldIn(noiseKey, i)`, or all are deterministic (`null`).
 *
 * @param gated The gated model.
 * @param params Its parameters.
 * @param noiseKey The step's key, or `null`.
 * @returns The gates by quantizer name.
 */
export function gatesFor(
  gated: GatedModel,
  params: GatedParams,
  noiseKey: RandomKey | null,
): Map<string, GateTensors> {
  const gates = new Map<string, GateTensors>();
  gated.quantizers.forEach((q, i) => {
    const k = params[q.logitsParam].device.kernels;
    const noise = noiseKey === null
      ? null
      : k.uniform(foldIn(noiseKey, i), 4 + q.pruneChannels, 0);
    gates.set(q.name, gatesOp(logitTensors(q, params), noise));
  });
  return gates;
}

/**
 * The run options that put the quantizers into the graph: weights and
 * activations quantized with `gates`. An unsigned grid clips at 0, which is
 * what a ReLU before it does: the quantizer on the pre-activation gives the
 * same xq and, since its straight-through mask is 0 wherever the ReLU's is,
 * the same gradients for every input, bit for bit. So the ReLU is skipped.
 *
 * @param gated The gated model.
 * @param state Parameters and signedness.
 * @param gates The gates of every quantizer.
 * @returns Hooks for `runGraph`.
 */
export function gatedHooks(
  gated: GatedModel,
  state: GatedState,
  gates: ReadonlyMap<string, GateTensors>,
): RunOptions {
  const weightQ = new Map<string, QuantizerInfo>();
  const actQ = new Map<string, QuantizerInfo>();
  for (const q of gated.quantizers) {
    (q.kind === "weight" ? weightQ : actQ).set(q.layer, q);
  }
  const { params, signed } = state;
  const apply = (q: QuantizerInfo | undefined, t: Tensor) =>
    q
      ? quantizerOp(t, params[q.xmaxParam], gates.get(q.name)!, {
        signed: signed[q.name],
        name: q.name,
      })
      : t;
  return {
    weight: (layer, w) => apply(weightQ.get(layer.name), w),
    activation: (layer, a) => apply(actQ.get(layer.name), a),
    fused: (layer, z, activation, pool) => {
      const q = actQ.get(layer.name);
      if (!q || signed[q.name] || activation !== "relu") return undefined;
      const a = apply(q, z);
      return pool ? maxPool2d(a, pool.kernel, pool.stride, pool.padding) : a;
    },
  };
}

/**
 * `mu * sum_q R_q` and the summed prior `R` itself.
 *
 * @param gated The gated model.
 * @param params Its parameters.
 * @returns The penalty, or `null` when `mu` is 0 or there are no quantizers.
 */
export function gatedPenalty(
  gated: GatedModel,
  params: GatedParams,
): Penalty | null {
  if (gated.options.mu === 0) return null;
  let r: Tensor | null = null;
  for (const q of gated.quantizers) {
    const rq = priorOp(logitTensors(q, params), {
      macRatio: q.macRatio,
      mode: gated.options.prior,
    });
    r = r ? add(r, rq) : rq;
  }
  if (r === null) return null;
  return { value: scale(r, gated.options.mu), metrics: { prior: r } };
}

function probabilities(q: QuantizerInfo | undefined, params: GatedParams) {
  if (!q) return null;
  const l = plainLogits(q, params);
  return {
    chain: [l.g4, l.g8, l.g16, l.g32].map(gateProbability),
    prune: l.g2 ? Array.from(l.g2, gateProbability) : null,
  };
}

/** One layer's plan from its quantizers' deterministic gates. */
function layerPlan(
  gated: GatedModel,
  state: GatedState,
  layer: { name: string; outChannels: number },
): LayerPlan {
  const find = (kind: QuantizerInfo["kind"]) =>
    gated.quantizers.find((q) => q.layer === layer.name && q.kind === kind);
  const w = find("weight");
  const a = find("activation");
  const grid = (q: QuantizerInfo, bits: number): ResidualGrid => ({
    kind: "residual",
    bits,
    signed: state.signed[q.name] ?? false,
    xmax: hostF32(state.params[q.xmaxParam])[0],
  });
  const all = Array.from({ length: layer.outChannels }, (_, i) => i);
  const we = w ? effectiveBits(plainLogits(w, state.params)) : null;
  return {
    name: layer.name,
    weight: w && we ? grid(w, we.bits) : null,
    keptChannels: we?.channelBits
      ? all.filter((c) => we.channelBits![c] > 0)
      : all,
    activation: a
      ? grid(a, effectiveBits(plainLogits(a, state.params)).bits)
      : null,
    details: {
      weightGates: probabilities(w, state.params),
      activationGates: probabilities(a, state.params),
    },
  };
}

/**
 * The plan of a gated model under its deterministic gates: per layer the
 * weight and activation grids and the kept channels; gate probabilities
 * ride along as details. Reads the logits and ranges on the host.
 *
 * @param gated The gated model.
 * @param state Its state.
 * @returns The plan (network input at 8 bits).
 */
export function gatedPlan(
  gated: GatedModel,
  state: GatedState,
): QuantizationPlan {
  return {
    method: "bayesian-bits",
    inputBits: 8,
    layers: gated.layers.map((l) => layerPlan(gated, state, l)),
  };
}

/**
 * The gated model frozen: weights quantized once with the deterministic
 * gates (pruned channels zero), on the parameters' device, and the plan.
 *
 * @param gated The gated model.
 * @param state Its state.
 * @returns The frozen model.
 */
export function freezeGated(gated: GatedModel, state: GatedState): Frozen {
  const params: Record<string, Tensor> = { ...state.params };
  const gates = gatesFor(gated, state.params, null);
  for (const q of gated.quantizers) {
    if (q.kind !== "weight") continue;
    const w = `${q.layer}.weight`;
    params[w] = quantizerOp(
      state.params[w],
      state.params[q.xmaxParam],
      gates.get(q.name)!,
      { signed: state.signed[q.name], name: q.name },
    );
  }
  return { model: gated.model, params, plan: gatedPlan(gated, state) };
}

/**
 * Exports a gated model under its deterministic gates: frozen
 * ({@link freezeGated}, the weights quantized as evaluation quantizes them,
 * on the device the parameters live on), then exported from the plan
 * (`exportFrozen`): integer codes of the kept channels on the grid of each
 * layer's bit width, pruned channels omitted. The parameters must live on a
 * device whose memory the host sees (reference or WASM).
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
  checkHostVisible(dev);
  checkGatedState(gated, state, "Cannot export");
  return withFrozen(
    state.params,
    () => freezeGated(gated, state),
    exportFrozen,
  );
}

/** Options of {@link bayesianBitsMethod}. */
export interface BayesianBitsMethodOptions extends BayesianBitsOptions {
  /**
   * The weights' learning-rate schedule: `"two-thirds"` (default, the
   * recipe: constant for the first two thirds of the epochs, then linear
   * to 0, per epoch) or `"constant"`.
   */
  readonly weightSchedule?: "two-thirds" | "constant";
}

/** The recipe's three Adam groups. */
function recipeOptimizer(
  gated: GatedModel,
  weightSchedule: "two-thirds" | "constant",
  plan: { epochs: number; steps: number },
): Optimizer {
  const rates = gated.options.learningRates;
  const weightLr = weightSchedule === "two-thirds"
    ? perEpoch(
      constantThenLinearSchedule({ lr: rates.weights, total: plan.epochs }),
      plan.steps,
    )
    : rates.weights;
  const groupOf = new Map<string, string>();
  const group = (name: string) => {
    let g = groupOf.get(name);
    if (!g) groupOf.set(name, g = parameterGroup(gated, name));
    return g;
  };
  return paramGroups([
    ["weights", weightLr],
    ["logits", rates.logits],
    ["ranges", rates.ranges],
  ].map(([name, lr]) => ({
    name: name as string,
    optimizer: adam({ lr: lr as number | ((t: number) => number) }),
    match: (n: string) => group(n) === name,
  })));
}

/**
 * Bayesian Bits as a method: groups `weights`, `logits`, `ranges`. While the
 * logits are learned the gates are sampled (one hard-concrete sample per
 * gate per step from the step's key) and the prior `mu * sum R` is the
 * penalty; otherwise (fine-tuning with fixed gates) the gates are the
 * deterministic ones and there is no penalty.
 *
 * @param options The recipe's knobs (for `attach`) and the weights' schedule.
 * @returns The method.
 *
 * @example The fixed-gates phase learns weights and ranges only
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { bayesianBitsMethod } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const method = bayesianBitsMethod({ mu: 0.01 });
 * const gated = method.attach(lenet5());
 * assert.equal(method.group(gated, "conv1.weight.logits"), "logits");
 * assert.deepEqual(method.groups, ["weights", "logits", "ranges"]);
 * ```
 */
export function bayesianBitsMethod(
  options: BayesianBitsMethodOptions = {},
): QuantizationMethod<GatedModel, GatedState> {
  const schedule = options.weightSchedule ?? "two-thirds";
  const sampled = (trainable: ReadonlySet<string>) => trainable.has("logits");
  return {
    name: "bayesian-bits",
    groups: ["weights", "logits", "ranges"],
    stochastic: true,
    metrics: { prior: "steps" },
    attach: (model) => bayesianBits(model, options),
    model: (gated) => gated.model,
    init: (gated, float, first) => initGated(gated, float, first),
    withParams: (_gated, state, params) => ({ params, signed: state.signed }),
    group: (gated, name) => parameterGroup(gated, name),
    optimizer: (gated, plan) => recipeOptimizer(gated, schedule, plan),
    hooks: (gated, state, { key, trainable }) =>
      gatedHooks(
        gated,
        state,
        gatesFor(gated, state.params, sampled(trainable) ? key : null),
      ),
    penalty: (gated, state, { trainable }) =>
      sampled(trainable) ? gatedPenalty(gated, state.params) : null,
    measure: (gated, state, names) => {
      const out: Record<string, number> = {};
      if (!names || names.has("relativeGbops")) {
        out.relativeGbops = gatedBops(gated, state.params).relativeGbops;
      }
      if (!names || names.has("prior")) {
        out.prior = priorSum(gated, state.params);
      }
      return out;
    },
    freeze: freezeGated,
  };
}
