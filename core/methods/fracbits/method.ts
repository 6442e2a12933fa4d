/**
 * FracBits as a method of the training loop (spec `fracbits.md`): blended
 * weights and activations at the fractional widths, the penalty `kappa
 * |cost - target|` while the widths learn, the hard assignment after the
 * protocol's epoch (`afterEpoch`), then fixed integer widths, and the frozen
 * model on uniform grids.
 *
 * @module
 */

import { runGraph, type RunOptions } from "../../graph.ts";
import type {
  ChannelGrid,
  Frozen,
  LayerPlan,
  Penalty,
  QuantizationMethod,
  QuantizationPlan,
  UniformGrid,
} from "../../method.ts";
import { add } from "../../ops/elementwise.ts";
import { maxPool2d } from "../../ops/pool.ts";
import {
  adam,
  constantThenLinearSchedule,
  type Optimizer,
  paramGroups,
  perEpoch,
} from "../../optim.ts";
import { doReFaScale, fracWeightFactor } from "../../reference/fracbits.ts";
import { executableBits } from "../../plan_bops.ts";
import { hostF32, type Tensor } from "../../tensor.ts";
import {
  assignWidths,
  type LayerWidths,
  nativeCost,
  readWidths,
  roundWidths,
  widthBops,
} from "./assign.ts";
import {
  fracBits,
  type FracBitsModel,
  type FracBitsOptions,
  type FracBitsState,
  type FracLayer,
  initFracBits,
  INPUT_BITS,
  parameterGroup,
  stateParam,
} from "./model.ts";
import { fracWeightOp, pactOp, targetPenaltyOp, widthCostOp } from "./ops.ts";

/** The weight width tensor a step uses: fixed after the assignment. */
function weightBitsOf(l: FracLayer, state: FracBitsState): Tensor {
  return stateParam(
    state.params,
    state.assignment ? l.fixedWeightBits : l.weightBits,
  );
}

function weightOptions(l: FracLayer) {
  return {
    minBits: l.weightRange.min,
    maxBits: l.weightRange.max,
    fanOut: l.fanOut,
  };
}

/**
 * The run options that put FracBits' quantizers into the graph: each
 * layer's weights blended at its widths, and each layer's input quantized
 * where it enters the layer (after the max-pool that may sit between the
 * two layers, whose pool then runs here).
 *
 * @param fm The prepared model.
 * @param state Its state.
 * @returns Hooks for `runGraph`.
 */
export function fracBitsHooks(
  fm: FracBitsModel,
  state: FracBitsState,
): RunOptions {
  const byName = new Map(fm.layers.map((l) => [l.name, l]));
  const byProducer = new Map(
    fm.layers.filter((l) => l.input).map((l) => [l.input!.producer, l]),
  );
  const p = state.params;
  const quantizeInput = (producer: string, a: Tensor) => {
    const input = byProducer.get(producer)?.input;
    if (!input) return a;
    const bits = state.assignment ? input.fixedBits : input.bits;
    return pactOp(
      a,
      stateParam(p, input.clip),
      stateParam(p, bits),
      { minBits: input.range.min, maxBits: input.range.max },
      input.bits.slice(0, -".bits".length),
    );
  };
  return {
    weight: (layer, w) => {
      const l = byName.get(layer.name)!;
      return fracWeightOp(
        w,
        weightBitsOf(l, state),
        weightOptions(l),
        `${l.name}.weight`,
      );
    },
    activation: (layer, a) => quantizeInput(layer.name, a),
    // A max-pool between two layers: FracBits quantizes the next layer's
    // input, after the pool (max-pool commutes with the monotone quantizer,
    // so the values are those of quantizing before it); the clip at 0 is
    // the ReLU.
    fused: (layer, z, activation, pool) => {
      if (!pool || activation !== "relu" || !byProducer.has(layer.name)) {
        return undefined;
      }
      return quantizeInput(
        layer.name,
        maxPool2d(z, pool.kernel, pool.stride, pool.padding),
      );
    },
  };
}

/**
 * The state with every clip at the largest input its layer sees on `x`
 * (a clip stays where it was when that is not positive): the graph runs in
 * evaluation mode with the weights at their current widths and the inputs
 * not quantized, as Bayesian Bits starts its ranges.
 *
 * @param fm The prepared model.
 * @param state Its state (before the assignment).
 * @param x A batch of training inputs.
 * @returns The state with the new clips.
 */
export async function clipsFromBatch(
  fm: FracBitsModel,
  state: FracBitsState,
  x: Tensor,
): Promise<FracBitsState> {
  const dev = Object.values(state.params)[0].device;
  const hooks = fracBitsHooks(fm, state);
  const byProducer = new Map(
    fm.layers.filter((l) => l.input).map((l) => [l.input!.producer, l]),
  );
  const seen = new Map<string, Tensor>();
  const batch = await x.to(dev);
  dev.scope(() => {
    runGraph(fm.model, state.params, batch, {
      mode: "eval",
      stats: state.stats,
      weight: hooks.weight,
      activation: (layer, a) => {
        if (byProducer.has(layer.name)) seen.set(layer.name, a);
        return a;
      },
    });
    return [...seen.values()];
  });
  const params: Record<string, Tensor> = { ...state.params };
  for (const [producer, a] of seen) {
    const values = await a.read();
    dev.free(a);
    let max = 0;
    for (const v of values) if (v > max) max = v;
    const input = byProducer.get(producer)!.input!;
    if (max > 0) params[input.clip] = dev.upload([max], [1]);
  }
  if (batch !== x) dev.free(batch);
  return { ...state, params };
}

/**
 * The penalty `kappa |cost - target|` on the fractional widths' expected
 * cost, reported as `penalty`; `null` after the assignment.
 *
 * @param fm The prepared model.
 * @param state Its state.
 * @returns The penalty, or null.
 */
export function fracBitsPenalty(
  fm: FracBitsModel,
  state: FracBitsState,
): Penalty | null {
  if (state.assignment) return null;
  const o = fm.options;
  let cost: Tensor | null = null;
  for (const l of fm.layers) {
    const bits = stateParam(state.params, l.weightBits);
    const perWidth = 1 / bits.size;
    const size = o.cost === "size";
    const input = !size && l.input
      ? stateParam(state.params, l.input.bits)
      : null;
    const coefficient = size
      ? l.weightCount * perWidth / 8e6
      : 1e-9 * l.macs * perWidth * (input ? 1 : l.inputConstantBits);
    const c = widthCostOp(bits, input, {
      weightRange: l.weightRange,
      inputRange: l.input?.range ?? l.weightRange,
      coefficient,
    });
    cost = cost ? add(cost, c) : c;
  }
  if (cost === null) return null;
  const constant = o.cost === "size" ? 4e-6 * fm.biasCount : 0;
  const value = targetPenaltyOp(cost, o.target - constant, o.kappa);
  return { value, metrics: { penalty: value } };
}

/** The integer widths a state computes with: assigned, or rounded at offset 0. */
export function integerWidths(
  fm: FracBitsModel,
  state: FracBitsState,
): readonly LayerWidths[] {
  if (state.assignment) return state.assignment.widths;
  return roundWidths(fm, readWidths(fm.layers, state.params), 0);
}

/**
 * The hard assignment of a state (spec section 5): the fractional widths
 * read on the host, the offset found by bisection, the integer widths
 * stored as the `.bits.fixed` parameters (learned by no optimizer) and the
 * record as `assignment`.
 *
 * @param fm The prepared model.
 * @param state A state before its assignment.
 * @returns The assigned state.
 * @throws {RangeError} When the state is already assigned.
 */
export function hardAssign(
  fm: FracBitsModel,
  state: FracBitsState,
): FracBitsState {
  if (state.assignment) {
    throw new RangeError("The FracBits state is already assigned");
  }
  const fractional = readWidths(fm.layers, state.params);
  const assignment = assignWidths(
    fm,
    fractional,
    fm.options.target,
    fm.options.cost,
  );
  const dev = Object.values(state.params)[0].device;
  const params: Record<string, Tensor> = { ...state.params };
  fm.layers.forEach((l, i) => {
    const w = assignment.widths[i];
    params[l.fixedWeightBits] = dev.upload(w.weight, [w.weight.length]);
    if (l.input) params[l.input.fixedBits] = dev.upload([w.input!], [1]);
  });
  return { params, stats: state.stats, assignment };
}

/** The uniform grid of a k-bit DoReFa weight under `factor`. */
function weightGrid(factor: number, bits: number): ChannelGrid {
  const levels = bits === 0 ? 0 : 2 ** bits - 1;
  return {
    bits,
    scale: doReFaScale(factor, bits),
    codeMin: -levels,
    codeMax: levels,
  };
}

/** The uniform grid of a k-bit PACT activation with clip `alpha`. */
function activationGrid(alpha: number, bits: number): UniformGrid {
  const levels = 2 ** bits - 1;
  return {
    kind: "uniform",
    bits,
    scale: Math.fround(Math.abs(alpha) / levels),
    codeMin: 0,
    codeMax: levels,
    channels: null,
  };
}

/** One layer's plan from its integer widths. */
function layerPlan(
  fm: FracBitsModel,
  state: FracBitsState,
  index: number,
  widths: readonly LayerWidths[],
  factor: number,
): LayerPlan {
  const l = fm.layers[index];
  const w = widths[index];
  const channelBits = w.weight.length === 1
    ? new Array(l.outChannels).fill(w.weight[0])
    : w.weight;
  const kept = channelBits.flatMap((b, c) => b > 0 ? [c] : []);
  const top = Math.max(...channelBits);
  const channels = w.weight.length === 1
    ? null
    : channelBits.map((b) => weightGrid(factor, b));
  const weight: UniformGrid = {
    kind: "uniform",
    ...weightGrid(factor, top),
    channels,
  };
  const consumer = fm.layers.find((c) => c.input?.producer === l.name);
  const ci = consumer ? fm.layers.indexOf(consumer) : -1;
  const activation = consumer
    ? activationGrid(
      hostF32(stateParam(state.params, consumer.input!.clip))[0],
      widths[ci].input!,
    )
    : null;
  const fractional = state.assignment?.fractional[index] ??
    readWidths([l], state.params)[0];
  return {
    name: l.name,
    weight,
    keptChannels: kept,
    activation,
    details: {
      weightBits: w.weight.length === 1 ? w.weight[0] : [...w.weight],
      fractionalWeightBits: fractional.weight.length === 1
        ? fractional.weight[0]
        : [...fractional.weight],
      inputBits: w.input ?? l.inputConstantBits,
      fractionalInputBits: fractional.input,
      executableWeightBits: executableBits(top),
      rescale: factor,
      offset: state.assignment?.offset ?? 0,
    },
  };
}

/**
 * The plan of a state's integer widths: uniform DoReFa weight grids (per
 * channel kernel-wise, 0-bit kernels pruned), each layer's output grid the
 * PACT grid of the layer it feeds, the network input at 8 bits; fractional
 * widths, rescale and offset ride along as details.
 *
 * @param fm The prepared model.
 * @param state Its state.
 * @returns The plan.
 */
export function fracBitsPlan(
  fm: FracBitsModel,
  state: FracBitsState,
): QuantizationPlan {
  const widths = integerWidths(fm, state);
  return {
    method: "fracbits",
    inputBits: INPUT_BITS,
    layers: fm.layers.map((l, i) => {
      const w = hostF32(stateParam(state.params, `${l.name}.weight`));
      const factor = fracWeightFactor(
        w,
        Float32Array.from(widths[i].weight),
        weightOptions(l),
      );
      return layerPlan(fm, state, i, widths, factor);
    }),
  };
}

/**
 * The frozen model: weights quantized once at the integer widths on the
 * parameters' device (exactly `fround(scale) * code`, 0-bit kernels 0),
 * and the plan.
 *
 * @param fm The prepared model.
 * @param state Its state.
 * @returns The frozen model.
 */
export function freezeFracBits(
  fm: FracBitsModel,
  state: FracBitsState,
): Frozen {
  const widths = integerWidths(fm, state);
  const params: Record<string, Tensor> = { ...state.params };
  const dev = Object.values(state.params)[0].device;
  fm.layers.forEach((l, i) => {
    const name = `${l.name}.weight`;
    const bits = widths[i].weight;
    params[name] = dev.kernels.fracWeightQuantize(
      stateParam(state.params, name),
      dev.upload(bits, [bits.length]),
      weightOptions(l),
    );
  });
  return {
    model: fm.model,
    params,
    stats: state.stats,
    plan: fracBitsPlan(fm, state),
  };
}

/** Host measures: fractional and assigned costs, relative GBOPs. */
export function fracBitsMeasure(
  fm: FracBitsModel,
  state: FracBitsState,
): Record<string, number> {
  const integer = integerWidths(fm, state);
  const cost = state.assignment
    ? state.assignment.cost
    : nativeCost(fm, readWidths(fm.layers, state.params), fm.options.cost);
  return {
    cost,
    relativeGbops: widthBops(fm, integer).relativeGbops,
    penalty: state.assignment ? 0 : fm.options.kappa *
      Math.abs(cost - fm.options.target),
  };
}

/** The protocol's optimizer: one Adam per group, constant for two thirds, then linear to 0. */
function fracBitsOptimizer(
  fm: FracBitsModel,
  plan: { epochs: number; steps: number },
): Optimizer {
  const lr = perEpoch(
    constantThenLinearSchedule({
      lr: fm.options.learningRate,
      total: plan.epochs,
    }),
    plan.steps,
  );
  return paramGroups(["weights", "widths", "clips", "fixed"].map((name) => ({
    name,
    optimizer: adam({ lr }),
    match: (n: string) => parameterGroup(n) === name,
  })));
}

/**
 * FracBits as a method: groups `weights`, `widths`, `clips` (one Adam each,
 * the protocol's schedule); the penalty while the widths learn and before
 * the assignment, which `afterEpoch` makes after epoch `assignAfterEpoch`.
 *
 * @param options The method's knobs (see {@link FracBitsOptions}).
 * @returns The method.
 * @throws {RangeError} On a bad option when it attaches.
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { fracBitsMethod } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const method = fracBitsMethod({ targetRelativeGbops: 0.5172 });
 * const fm = method.attach(lenet5());
 * assert.equal(method.group(fm, "conv2.input.bits"), "widths");
 * assert.deepEqual(method.groups, ["weights", "widths", "clips"]);
 * ```
 */
export function fracBitsMethod(
  options: FracBitsOptions,
): QuantizationMethod<FracBitsModel, FracBitsState> {
  return {
    name: "fracbits",
    groups: ["weights", "widths", "clips"],
    stochastic: false,
    metrics: { penalty: "steps", cost: "steps" },
    attach: (model) => fracBits(model, options),
    model: (fm) => fm.model,
    init: (fm, float, first) => {
      const state = initFracBits(fm, float);
      return fm.options.clipInit === "batch"
        ? clipsFromBatch(fm, state, first)
        : Promise.resolve(state);
    },
    withParams: (_fm, state, params, stats) => ({
      params,
      stats,
      assignment: state.assignment,
    }),
    group: (_fm, name) => parameterGroup(name),
    optimizer: (fm, plan) => fracBitsOptimizer(fm, plan),
    hooks: (fm, state) => fracBitsHooks(fm, state),
    penalty: (fm, state, { trainable }) =>
      trainable.has("widths") ? fracBitsPenalty(fm, state) : null,
    measure: (fm, state, names) => {
      const all = fracBitsMeasure(fm, state);
      return names
        ? Object.fromEntries(Object.entries(all).filter(([n]) => names.has(n)))
        : all;
    },
    afterEpoch: (fm, state, epoch) =>
      epoch === fm.options.assignAfterEpoch && !state.assignment
        ? hardAssign(fm, state)
        : state,
    freeze: freezeFracBits,
  };
}
