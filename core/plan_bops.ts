/**
 * The one counter: what a frozen model's plan costs, whichever method
 * produced it. {@link planBops} counts bit operations in Bayesian Bits'
 * convention (spec section 4: `MACs * ba * bw * ko * ki`, pruned channels
 * leave their layer and the next one's input, the network input at the
 * plan's bits) and, beside it, in the `MACs * bw * ba` convention of
 * HAWQ, AIMET and FracBits (no discount for the input channels a pruned
 * layer no longer feeds), in an "executable" variant with every width
 * rounded up to 2, 4, 8, 16 or 32 bits, and the weights' memory.
 *
 * @module
 */

import { layerBops } from "./bops.ts";
import {
  analyzeGraph,
  type GraphNode,
  type LayerInfo,
  type ModelGraph,
} from "./graph.ts";
import type { LayerPlan, QuantizationPlan } from "./method.ts";

/** One layer's cost under a plan. */
export interface PlanLayerCost {
  /** The layer. */
  readonly layer: LayerInfo;
  /**
   * Weight bits of the kept channels (32 in full precision; with a width
   * per channel, the widest).
   */
  readonly weightBits: number;
  /** Output activation bits, or `null` when not quantized. */
  readonly activationBits: number | null;
  /** Input bits as counted (network input: the plan's; unquantized input: 32). */
  readonly inputBits: number;
  /** Kept output channels. */
  readonly keptChannels: number;
  /** Kept fraction of the input channels. */
  readonly keptInputFraction: number;
  /** BOPs per sample (Bayesian Bits' convention). */
  readonly bops: number;
  /** BOPs per sample as `MACs * bw * ba` over the kept channels (no `ki`). */
  readonly macsBitsBops: number;
  /** BOPs per sample with each width rounded up to 2, 4, 8, 16 or 32. */
  readonly executableBops: number;
  /** Bytes of the kept weights at their widths (32 bits in full precision). */
  readonly weightBytes: number;
}

/** BOPs of a planned model. */
export interface PlanCost {
  /** Per conv/dense layer, in execution order. */
  readonly layers: PlanLayerCost[];
  /** BOPs per sample (Bayesian Bits' convention). */
  readonly bops: number;
  /** BOPs per sample at 32 x 32 bits, nothing pruned. */
  readonly baselineBops: number;
  /** `100 * bops / baselineBops`, in percent. */
  readonly relativeGbops: number;
  /** `100 * sum macsBitsBops / baselineBops`, in percent. */
  readonly macsBitsRelativeGbops: number;
  /** `100 * sum executableBops / baselineBops`, in percent. */
  readonly executableRelativeGbops: number;
  /** Bytes of the kept weights at their widths. */
  readonly weightBytes: number;
  /** Bytes of every weight in float32. */
  readonly floatWeightBytes: number;
}

/**
 * The narrowest of 2, 4, 8, 16 and 32 bits that holds a width (0 stays 0:
 * a pruned channel costs nothing).
 *
 * @param bits A width in [0, 32].
 * @returns The executable width.
 */
export function executableBits(bits: number): number {
  if (bits === 0) return 0;
  return [2, 4, 8, 16, 32].find((b) => b >= bits) ?? 32;
}

/**
 * Follows a node's input back through pools and flattens to the node
 * producing it (a layer, or an add), or `null` for the network input.
 *
 * @param nodes The graph's nodes by name.
 * @param input A node's input name.
 * @returns The producing node, or `null`.
 */
export function producerOf(
  nodes: ReadonlyMap<string, GraphNode>,
  input: string,
): GraphNode | null {
  let name = input;
  for (;;) {
    if (name === "input") return null;
    const node = nodes.get(name)!;
    if (
      node.op === "maxpool" || node.op === "avgpool" || node.op === "flatten"
    ) {
      name = node.input;
      continue;
    }
    return node;
  }
}

/** Input bits and kept input fraction of a layer, from what produced its input. */
function inputOf(
  nodes: ReadonlyMap<string, GraphNode>,
  node: Extract<GraphNode, { input: string }>,
  costs: ReadonlyMap<string, PlanLayerCost>,
  inputBits: number,
): { inputBits: number; keptInputFraction: number } {
  const producer = producerOf(nodes, node.input);
  if (!producer) return { inputBits, keptInputFraction: 1 };
  const before = costs.get(producer.name);
  if (!before) return { inputBits: 32, keptInputFraction: 1 };
  return {
    inputBits: before.activationBits ?? 32,
    keptInputFraction: before.keptChannels / before.layer.outChannels,
  };
}

/** The widths of a layer's kept channels, one per kept channel. */
function keptWidths(layer: LayerInfo, p: LayerPlan | undefined): number[] {
  if (!p) return Array(layer.outChannels).fill(32);
  const w = p.weight;
  const channels = w?.kind === "uniform" ? w.channels : null;
  if (!channels) return p.keptChannels.map(() => w?.bits ?? 32);
  if (channels.length !== layer.outChannels) {
    throw new RangeError(
      `Invalid plan for layer "${layer.name}": ${channels.length} channel grids for ${layer.outChannels} output channels`,
    );
  }
  return p.keptChannels.map((c) => channels[c].bits);
}

/** A layer's costs in every convention from its kept channels' widths. */
function layerCosts(
  layer: LayerInfo,
  widths: readonly number[],
  perChannel: boolean,
  input: { inputBits: number; keptInputFraction: number },
): Pick<
  PlanLayerCost,
  "bops" | "macsBitsBops" | "executableBops" | "weightBytes"
> {
  const out = layer.outChannels;
  // Bayesian Bits' convention, as one product for a width per tensor (the
  // figures of every earlier release), channel by channel otherwise.
  const count = (bits: (b: number) => number, keptInput: number) =>
    perChannel || widths.length === 0
      ? widths.reduce(
        (sum, b) =>
          sum + layerBops({
            name: layer.name,
            macs: layer.macs / out,
            weightBits: bits(b),
            inputBits: bits(input.inputBits),
            keptInput,
          }),
        0,
      )
      : layerBops({
        name: layer.name,
        macs: layer.macs,
        weightBits: bits(widths[0]),
        inputBits: bits(input.inputBits),
        keptOutput: widths.length / out,
        keptInput,
      });
  const row = layer.weightShape.reduce((a, b) => a * b, 1) / out;
  return {
    bops: count((b) => b, input.keptInputFraction),
    macsBitsBops: count((b) => b, 1),
    executableBops: count(executableBits, input.keptInputFraction),
    weightBytes: (row * widths.reduce((a, b) => a + b, 0)) / 8,
  };
}

/**
 * BOPs per layer and in total of a model under a plan (spec section 4): a
 * layer's input bits are those of the activation grid that feeds it (the
 * network input counts as `plan.inputBits`, an unquantized activation as
 * 32), and pruned channels leave both their layer and the next one. A
 * weight grid with a width per output channel costs each kept channel at
 * its own width. Beside it: the `MACs * bw * ba` convention, the
 * executable widths, and the weights' bytes.
 *
 * @param model The graph that runs.
 * @param plan Grids and kept channels per layer.
 * @returns The per-layer costs, the totals, the 32-bit baseline and the ratios.
 * @throws {RangeError} On widths that are not integers in [0, 32], or a
 *   per-channel grid whose length is not the layer's channel count.
 *
 * @example A float LeNet-5 costs 100 % of itself
 * ```ts
 * import { lenet5, planBops } from "@bbits/core";
 * import { analyzeGraph } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const model = lenet5();
 * const layers = analyzeGraph(model).layers.map((l) => ({
 *   name: l.name, weight: null, activation: null, details: {},
 *   keptChannels: Array.from({ length: l.outChannels }, (_, i) => i),
 * }));
 * const cost = planBops(model, { method: "float", inputBits: 32, layers });
 * assert.equal(cost.relativeGbops, 100);
 * assert.equal(cost.weightBytes, cost.floatWeightBytes);
 * ```
 */
export function planBops(model: ModelGraph, plan: QuantizationPlan): PlanCost {
  const nodes = new Map(model.nodes.map((n) => [n.name, n]));
  const planOf = new Map(plan.layers.map((l) => [l.name, l]));
  const costs = new Map<string, PlanLayerCost>();
  let baselineBops = 0;
  let floatWeightBytes = 0;
  for (const layer of analyzeGraph(model).layers) {
    const node = nodes.get(layer.name) as Extract<GraphNode, { input: string }>;
    const p = planOf.get(layer.name);
    const widths = keptWidths(layer, p);
    const perChannel = p?.weight?.kind === "uniform" &&
      p.weight.channels !== null;
    const input = inputOf(nodes, node, costs, plan.inputBits);
    baselineBops += layer.macs * 32 * 32;
    floatWeightBytes += 4 * layer.weightShape.reduce((a, b) => a * b, 1);
    costs.set(layer.name, {
      layer,
      weightBits: p?.weight?.bits ?? 32,
      activationBits: p?.activation?.bits ?? null,
      ...input,
      keptChannels: widths.length,
      ...layerCosts(layer, widths, perChannel, input),
    });
  }
  const layers = [...costs.values()];
  const total = (key: "bops" | "macsBitsBops" | "executableBops") =>
    layers.reduce((sum, l) => sum + l[key], 0);
  const bops = total("bops");
  return {
    layers,
    bops,
    baselineBops,
    relativeGbops: (100 * bops) / baselineBops,
    macsBitsRelativeGbops: (100 * total("macsBitsBops")) / baselineBops,
    executableRelativeGbops: (100 * total("executableBops")) / baselineBops,
    weightBytes: layers.reduce((sum, l) => sum + l.weightBytes, 0),
    floatWeightBytes,
  };
}
