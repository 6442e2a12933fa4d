/**
 * What every frozen model shares, whichever method produced it: its BOPs
 * from the plan ({@link planBops}, spec section 4) and its test accuracy
 * ({@link evaluateFrozen}), activations quantized on the plan's grids.
 *
 * @module
 */

import { layerBops } from "./bops.ts";
import { batches, type Dataset } from "./data.ts";
import {
  analyzeGraph,
  type GraphNode,
  type LayerInfo,
  type ModelGraph,
  runGraph,
  type RunOptions,
} from "./graph.ts";
import type { Device } from "./device.ts";
import type {
  ChannelGrid,
  Frozen,
  LayerPlan,
  QuantizationPlan,
  ResidualGrid,
  UniformGrid,
} from "./method.ts";
import { gridGates, quantizeActivationForInference } from "./ops/grid.ts";
import type { ParamRecord } from "./loop.ts";
import type { Tensor } from "./tensor.ts";

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
  /** BOPs per sample. */
  readonly bops: number;
}

/** BOPs of a planned model. */
export interface PlanCost {
  /** Per conv/dense layer, in execution order. */
  readonly layers: PlanLayerCost[];
  /** BOPs per sample. */
  readonly bops: number;
  /** BOPs per sample at 32 x 32 bits, nothing pruned. */
  readonly baselineBops: number;
  /** `100 * bops / baselineBops`, in percent. */
  readonly relativeGbops: number;
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

/**
 * BOPs of a layer with a width per output channel (FracBits' kernel-wise
 * widths, spec fracbits.md section 7): `(MACs / C_out) * ba * ki * sum of
 * the kept channels' widths`.
 */
function channelBops(
  layer: LayerInfo,
  channels: readonly ChannelGrid[],
  kept: readonly number[],
  input: { inputBits: number; keptInputFraction: number },
): number {
  if (channels.length !== layer.outChannels) {
    throw new RangeError(
      `Invalid plan for layer "${layer.name}": ${channels.length} channel grids for ${layer.outChannels} output channels`,
    );
  }
  let bops = 0;
  for (const c of kept) {
    bops += layerBops({
      name: layer.name,
      macs: layer.macs / layer.outChannels,
      weightBits: channels[c].bits,
      inputBits: input.inputBits,
      keptInput: input.keptInputFraction,
    });
  }
  return bops;
}

/**
 * BOPs per layer and in total of a model under a plan (spec section 4): a
 * layer's input bits are those of the activation grid that feeds it (the
 * network input counts as `plan.inputBits`, an unquantized activation as
 * 32), and pruned channels leave both their layer and the next one. A
 * weight grid with a width per output channel costs each kept channel at
 * its own width.
 *
 * @param model The graph that runs.
 * @param plan Grids and kept channels per layer.
 * @returns The per-layer costs, the total, the 32-bit baseline and the ratio.
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
 * ```
 */
export function planBops(model: ModelGraph, plan: QuantizationPlan): PlanCost {
  const nodes = new Map(model.nodes.map((n) => [n.name, n]));
  const planOf = new Map(plan.layers.map((l) => [l.name, l]));
  const costs = new Map<string, PlanLayerCost>();
  let bops = 0;
  let baselineBops = 0;
  for (const layer of analyzeGraph(model).layers) {
    const node = nodes.get(layer.name) as Extract<GraphNode, { input: string }>;
    const p = planOf.get(layer.name);
    const weightBits = p?.weight?.bits ?? 32;
    const kept = p ? p.keptChannels.length : layer.outChannels;
    const input = inputOf(nodes, node, costs, plan.inputBits);
    const channels = p?.weight?.kind === "uniform" ? p.weight.channels : null;
    const layerCost = channels
      ? channelBops(layer, channels, p!.keptChannels, input)
      : layerBops({
        name: layer.name,
        macs: layer.macs,
        weightBits,
        inputBits: input.inputBits,
        keptOutput: kept / layer.outChannels,
        keptInput: input.keptInputFraction,
      });
    bops += layerCost;
    baselineBops += layer.macs * 32 * 32;
    costs.set(layer.name, {
      layer,
      weightBits,
      activationBits: p?.activation?.bits ?? null,
      ...input,
      keptChannels: kept,
      bops: layerCost,
    });
  }
  return {
    layers: [...costs.values()],
    bops,
    baselineBops,
    relativeGbops: (100 * bops) / baselineBops,
  };
}

/** A plan's activation grid as tensors on a device. */
type GridTensors =
  | {
    readonly grid: ResidualGrid;
    readonly xmax: Tensor;
    readonly chain: Tensor;
  }
  | { readonly grid: UniformGrid; readonly scale: Tensor };

/** The activation grids of a plan as tensors on a device. */
function gridTensors(
  dev: Device,
  layers: readonly LayerPlan[],
): Map<string, GridTensors> {
  const out = new Map<string, GridTensors>();
  for (const l of layers) {
    const grid = l.activation;
    if (!grid) continue;
    out.set(
      l.name,
      grid.kind === "uniform"
        ? { grid, scale: dev.upload([grid.scale], [1]) }
        : {
          grid,
          xmax: dev.upload([grid.xmax], [1]),
          chain: dev.upload(gridGates(grid.bits), [4]),
        },
    );
  }
  return out;
}

/** Frees the tensors of {@link gridTensors}. */
function freeGrids(dev: Device, grids: Map<string, GridTensors>): void {
  for (const g of grids.values()) {
    if ("scale" in g) dev.free(g.scale);
    else dev.free(g.xmax, g.chain);
  }
}

/**
 * The run options that quantize a frozen model's activations on its grids:
 * a residual grid by the decomposition, a uniform grid by `uniformQuantize`.
 * An unsigned residual grid after a ReLU takes the pre-activation (its clip
 * at 0 is the ReLU) and joins the max-pool that follows, bit for bit as the
 * three steps.
 */
function frozenHooks(
  frozen: Frozen,
  grids: Map<string, GridTensors>,
): RunOptions {
  const k = Object.values(frozen.params)[0].device.kernels;
  return {
    mode: "eval",
    stats: frozen.stats ?? {},
    activation: (layer, a) => {
      const g = grids.get(layer.name);
      if (!g) return a;
      if ("scale" in g) {
        return k.uniformQuantize(a, g.scale, g.grid.codeMin, g.grid.codeMax);
      }
      return k.residualQuantize(a, g.xmax, g.chain, null, g.grid.signed);
    },
    fused: (layer, z, activation, pool) => {
      const g = grids.get(layer.name);
      if (!g || "scale" in g || g.grid.signed || activation !== "relu") {
        return undefined;
      }
      return quantizeActivationForInference(z, g.xmax, g.chain, {
        relu: true,
        pool,
        name: `${layer.name} activation`,
      });
    },
  };
}

/**
 * The fraction of a dataset a model classifies correctly: batches uploaded
 * to `dev`, each forward pass and count in a device scope, the counts read
 * back one batch at a time.
 *
 * @param dev The device the model lives on.
 * @param data The dataset.
 * @param batchSize Images per batch.
 * @param forward The logits `[N, K]` of a batch `[N, ...shape]`.
 * @returns The accuracy in [0, 1].
 * @throws {RangeError} On an empty dataset.
 */
export async function accuracyOn(
  dev: Device,
  data: Dataset,
  batchSize: number,
  forward: (x: Tensor) => Tensor,
): Promise<number> {
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  let correct = 0;
  for (const batch of batches(data, batchSize)) {
    const count = dev.scope(() => {
      const x = dev.upload(batch.images, [batch.size, ...data.shape]);
      const labels = dev.upload(batch.labels, [batch.size], "int32");
      return dev.kernels.countCorrect(forward(x), labels);
    });
    correct += (await count.read())[0];
    dev.free(count);
  }
  return correct / data.count;
}

/**
 * Freezes a state in a device scope, hands the frozen model to `body`, and
 * frees what freezing made (the quantized weights; the state's own
 * parameters stay) once `body` returns or its promise settles.
 *
 * @param params The state's parameters (kept).
 * @param freeze Makes the frozen model from them.
 * @param body Uses it (evaluation, export).
 * @returns What `body` returns.
 */
export function withFrozen<T>(
  params: ParamRecord,
  freeze: () => Frozen,
  body: (frozen: Frozen) => T,
): T {
  const dev = Object.values(params)[0].device;
  const frozen = dev.scope(freeze);
  const release = () => {
    const kept = new Set(Object.values(params));
    dev.free(...Object.values(frozen.params).filter((t) => !kept.has(t)));
  };
  let result: T;
  try {
    result = body(frozen);
  } catch (error) {
    release();
    throw error;
  }
  if (result instanceof Promise) return result.finally(release) as T;
  release();
  return result;
}

/**
 * Test accuracy of a frozen model on the device its parameters live on:
 * weights as frozen, activations quantized on the plan's grids.
 *
 * @param frozen The frozen model.
 * @param data The dataset (host images, uploaded batch by batch).
 * @param options Batch size (default 1000).
 * @returns The fraction of correctly classified samples.
 * @throws {RangeError} On an empty dataset.
 */
export async function evaluateFrozen(
  frozen: Frozen,
  data: Dataset,
  options: { readonly batchSize?: number } = {},
): Promise<number> {
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  const dev = Object.values(frozen.params)[0].device;
  const grids = gridTensors(dev, frozen.plan.layers);
  const hooks = frozenHooks(frozen, grids);
  try {
    return await accuracyOn(
      dev,
      data,
      options.batchSize ?? 1000,
      (x) => runGraph(frozen.model, frozen.params, x, hooks).output,
    );
  } finally {
    freeGrids(dev, grids);
  }
}
