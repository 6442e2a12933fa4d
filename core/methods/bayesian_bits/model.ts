/**
 * A gated model: {@link bayesianBits} turns a float model into one (spec
 * section 5) and {@link initGated} initialises its gate logits and ranges.
 *
 * Parameter names: a gated model keeps the float model's `<layer>.weight`
 * and `<layer>.bias`, and adds for each quantizer `<q>.xmax` (`[1]`, the
 * range), `<q>.logits` (`[4]`: g4, g8, g16, g32) and, for weights with
 * pruning, `<q>.prune` (`[C]`: one g2 per output channel), where `<q>` is
 * `<layer>.weight` or `<layer>.act`.
 *
 * @module
 */

import {
  analyzeGraph,
  type LayerInfo,
  type ModelGraph,
  runGraph,
} from "../../graph.ts";
import type { Device } from "../../device.ts";
import { foldBatchNorm } from "../../ops/batchnorm.ts";
import type { GateLogits } from "../../reference/gates.ts";
import type { PriorMode } from "../../reference/prior.ts";
import { hostF32, type Tensor } from "../../tensor.ts";
import { gatesOp, type LogitTensors, quantizerOp } from "./ops.ts";
import { initRange } from "./quantizer.ts";
import {
  type BayesianBitsOptions,
  type InitialLogits,
  type LearningRates,
  resolveOptions,
} from "./options.ts";

export {
  type BayesianBitsOptions,
  checkNumber,
  DEFAULT_INITIAL_LOGITS,
  GATE_BIT_WIDTHS,
  type InitialLogits,
  type LearningRates,
} from "./options.ts";

/** Parameters of a gated model as tensors, by name. */
export type GatedParams = Readonly<Record<string, Tensor>>;

/** One quantizer of a gated model. */
export interface QuantizerInfo {
  /** `<layer>.weight` or `<layer>.act`. */
  readonly name: string;
  /** The conv/dense layer it belongs to. */
  readonly layer: string;
  /** What it quantizes. */
  readonly kind: "weight" | "activation";
  /** Pruning gates (weights only): the number of output channels, else 0. */
  readonly pruneChannels: number;
  /** MACs per sample of the layers the quantized tensor feeds. */
  readonly macs: number;
  /** `macs / Mmax`, the prior's weight (spec section 3). */
  readonly macRatio: number;
  /** Parameter name of the range `[1]`. */
  readonly xmaxParam: string;
  /** Parameter name of the chain logits `[4]`. */
  readonly logitsParam: string;
  /** Parameter name of the pruning logits `[C]`, or `null`. */
  readonly pruneParam: string | null;
}

/** A gated model: the graph (batch norm folded away) and its quantizers. */
export interface GatedModel {
  /** The float model as given. */
  readonly source: ModelGraph;
  /** The model that is trained: `source` with batch norm folded into the convs. */
  readonly model: ModelGraph;
  /** The conv/dense layers of `model`. */
  readonly layers: readonly LayerInfo[];
  /** The quantizers in execution order (per layer: weights, then activation). */
  readonly quantizers: readonly QuantizerInfo[];
  /** The largest layer MAC count, `Mmax`. */
  readonly maxMacs: number;
  /** Resolved options. */
  readonly options: {
    readonly mu: number;
    readonly pruning: boolean;
    readonly initialLogits: InitialLogits;
    readonly prior: PriorMode;
    readonly fullPrecision: readonly string[];
    readonly learningRates: LearningRates;
  };
}

/** A gated model's learned state: parameters and each quantizer's signedness. */
export interface GatedState {
  /** All parameters (weights, biases, ranges, logits). */
  readonly params: GatedParams;
  /** Signed (true) or unsigned, per quantizer name; fixed at initialisation. */
  readonly signed: Readonly<Record<string, boolean>>;
}

/** The conv/dense layers a node's output feeds, through pools, flattens and adds. */
function consumersOf(graph: ModelGraph, name: string): Set<string> {
  const out = new Set<string>();
  const visit = (from: string) => {
    for (const node of graph.nodes) {
      const inputs = node.op === "add" ? node.inputs : [node.input];
      if (!inputs.includes(from)) continue;
      if (node.op === "conv" || node.op === "dense") out.add(node.name);
      else visit(node.name);
    }
  };
  visit(name);
  return out;
}

/** The quantizers of a folded model, in execution order. */
function quantizersOf(
  folded: ModelGraph,
  layers: readonly LayerInfo[],
  fullPrecision: readonly string[],
  pruning: boolean,
): QuantizerInfo[] {
  const maxMacs = Math.max(...layers.map((l) => l.macs));
  const macsOf = new Map(layers.map((l) => [l.name, l.macs]));
  const last = layers[layers.length - 1].name;
  const quantizers: QuantizerInfo[] = [];
  for (const layer of layers) {
    if (fullPrecision.includes(layer.name)) continue;
    const prune = pruning && layer.name !== last;
    const w = `${layer.name}.weight`;
    quantizers.push({
      name: w,
      layer: layer.name,
      kind: "weight",
      pruneChannels: prune ? layer.outChannels : 0,
      macs: layer.macs,
      macRatio: layer.macs / maxMacs,
      xmaxParam: `${w}.xmax`,
      logitsParam: `${w}.logits`,
      pruneParam: prune ? `${w}.prune` : null,
    });
    if (layer.name === last) continue;
    const fed = [...consumersOf(folded, layer.name)];
    const macs = fed.reduce((s, name) => s + macsOf.get(name)!, 0);
    if (macs === 0) continue;
    const a = `${layer.name}.act`;
    quantizers.push({
      name: a,
      layer: layer.name,
      kind: "activation",
      pruneChannels: 0,
      macs,
      macRatio: Math.min(macs / maxMacs, 1),
      xmaxParam: `${a}.xmax`,
      logitsParam: `${a}.logits`,
      pruneParam: null,
    });
  }
  return quantizers;
}

/**
 * Turns a float model into a gated one: which quantizers, where, with which
 * MAC ratio (spec sections 3 and 5). Every conv/dense layer's weights get a
 * quantizer with per-output-channel pruning gates (the last layer's without);
 * every layer's output (after its activation) gets a quantizer, except the
 * last layer's (the logits). Batch norm is folded into its conv (see
 * {@link initGated}). A weight quantizer's MACs are its layer's; an
 * activation quantizer's are those of the layers it feeds.
 *
 * @param model The float model.
 * @param options The recipe's knobs (see {@link BayesianBitsOptions}).
 * @returns The gated model (no parameters yet: see {@link initGated}).
 * @throws {RangeError} On a negative or non-finite `mu`, an unknown gate bit
 *   width or non-finite logit, an unknown layer name in `fullPrecision`, a
 *   bad learning rate or prior mode, a model that does not analyse, or a
 *   model without any conv or dense layer.
 *
 * @example LeNet-5 gets 4 weight and 3 activation quantizers
 * ```ts
 * import { bayesianBits, lenet5 } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5(), { mu: 0.01 });
 * assert.deepEqual(gated.quantizers.map((q) => q.name), [
 *   "conv1.weight", "conv1.act", "conv2.weight", "conv2.act",
 *   "fc1.weight", "fc1.act", "fc2.weight",
 * ]);
 * assert.equal(gated.quantizers[6].pruneChannels, 0); // the last layer is not pruned
 * ```
 */
export function bayesianBits(
  model: ModelGraph,
  options: BayesianBitsOptions = {},
): GatedModel {
  const resolved = resolveOptions(options);
  const info = analyzeGraph(model);
  if (info.layers.length === 0) {
    throw new RangeError(
      `Cannot gate ${model.name}: it has no conv or dense layer to quantize`,
    );
  }
  const layerNames = info.layers.map((l) => l.name);
  const fullPrecision = [...(options.fullPrecision ?? [])];
  for (const name of fullPrecision) {
    if (!layerNames.includes(name)) {
      throw new RangeError(
        `Unknown layer "${name}" in fullPrecision: ${model.name}'s conv/dense layers are ${
          layerNames.join(", ")
        }`,
      );
    }
  }
  const folded: ModelGraph = {
    name: model.name,
    inputShape: model.inputShape,
    nodes: model.nodes.map((node) =>
      node.op === "conv" && node.batchNorm
        ? { ...node, batchNorm: false }
        : node
    ),
  };
  const layers = analyzeGraph(folded).layers;
  const maxMacs = Math.max(...layers.map((l) => l.macs));
  return Object.freeze({
    source: model,
    model: folded,
    layers,
    quantizers: Object.freeze(
      quantizersOf(folded, layers, fullPrecision, resolved.pruning),
    ),
    maxMacs,
    options: Object.freeze({
      ...resolved,
      fullPrecision: Object.freeze(fullPrecision),
    }),
  });
}

/** Whether a parameter of a gated model is a gate logit, a range, or a weight/bias. */
export function parameterGroup(
  gated: GatedModel,
  name: string,
): "weights" | "logits" | "ranges" {
  for (const q of gated.quantizers) {
    if (name === q.xmaxParam) return "ranges";
    if (name === q.logitsParam || name === q.pruneParam) return "logits";
  }
  return "weights";
}

/**
 * Any one tensor of a parameter record: the device the parameters live on.
 *
 * @throws {RangeError} If the record is empty.
 */
export function firstParam(params: GatedParams): Tensor {
  const first = Object.values(params)[0];
  if (!first) throw new RangeError("The model has no parameters");
  return first;
}

/** The logit tensors of a quantizer. */
export function logitTensors(
  q: QuantizerInfo,
  params: GatedParams,
): LogitTensors {
  return q.pruneParam
    ? { chain: params[q.logitsParam], g2: params[q.pruneParam] }
    : { chain: params[q.logitsParam] };
}

/** The logits of a quantizer as host numbers (host-visible devices). */
export function plainLogits(
  q: QuantizerInfo,
  params: GatedParams,
): GateLogits {
  const c = hostF32(params[q.logitsParam]);
  const base = { g4: c[0], g8: c[1], g16: c[2], g32: c[3] };
  return q.pruneParam ? { g2: hostF32(params[q.pruneParam]), ...base } : base;
}

/** The float parameters with batch norm folded into the convs. */
async function foldedParams(
  gated: GatedModel,
  float: {
    readonly params: GatedParams;
    readonly stats?: Readonly<
      Record<string, { mean: Tensor; variance: Tensor }>
    >;
  },
): Promise<Record<string, Tensor>> {
  const params: Record<string, Tensor> = {};
  const need = (name: string) => {
    const p = float.params[name];
    if (!p) {
      throw new RangeError(
        `${gated.source.name}: missing float parameter "${name}"`,
      );
    }
    return p;
  };
  const sourceLayers = analyzeGraph(gated.source).layers;
  for (const layer of sourceLayers) {
    const w = need(`${layer.name}.weight`);
    const b = need(`${layer.name}.bias`);
    if (layer.batchNorm) {
      const stats = float.stats?.[layer.name];
      if (!stats) {
        throw new RangeError(
          `${gated.source.name}: layer "${layer.name}" has batch norm but no running statistics to fold`,
        );
      }
      const f = await foldBatchNorm(
        w,
        b,
        need(`${layer.name}.bn.gamma`),
        need(`${layer.name}.bn.beta`),
        stats,
      );
      params[`${layer.name}.weight`] = f.w;
      params[`${layer.name}.bias`] = f.b;
    } else {
      params[`${layer.name}.weight`] = w;
      params[`${layer.name}.bias`] = b;
    }
  }
  return params;
}

/** Every tensor of a record, copied to `dev`. */
async function recordTo(
  record: Readonly<Record<string, Tensor>>,
  dev: Device,
): Promise<Record<string, Tensor>> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(record)) out[name] = await t.to(dev);
  return out;
}

/**
 * {@link initGated} for a device whose memory the host cannot see (WebGPU):
 * the ranges come from the data, so the initialising pass runs on a WASM
 * device (threads: all cores) and the result moves to the parameters'
 * device.
 */
async function initOnHost(
  gated: GatedModel,
  float: {
    readonly params: GatedParams;
    readonly stats?: Readonly<
      Record<string, { mean: Tensor; variance: Tensor }>
    >;
  },
  firstBatch: Tensor,
): Promise<GatedState> {
  const dev = firstParam(float.params).device;
  const { device } = await import("../../device.ts");
  using host = await device("wasm");
  let stats: Record<string, { mean: Tensor; variance: Tensor }> | undefined;
  if (float.stats) {
    stats = {};
    for (const [name, s] of Object.entries(float.stats)) {
      stats[name] = {
        mean: await s.mean.to(host),
        variance: await s.variance.to(host),
      };
    }
  }
  const state = await initGated(gated, {
    params: await recordTo(float.params, host),
    stats,
  }, await firstBatch.to(host));
  return {
    params: Object.freeze(await recordTo(state.params, dev)),
    signed: state.signed,
  };
}

/**
 * Parameters of a gated model from a float model's: batch norm folded into
 * the convs (with the running statistics), gate logits from the options,
 * weight ranges from the weights and activation ranges from a first forward
 * pass over `firstBatch` (`xmax = max(max(x), 0)`, signed iff `min(x) < 0`).
 * In that pass each quantizer is initialised when the data reaches it and
 * then applied with the deterministic gates of its initial logits, so later
 * ranges see the quantized network, as in training.
 *
 * @param gated The gated model.
 * @param float The float parameters (and batch-norm statistics if the model has batch norm).
 * @param firstBatch A batch `[N, C, H, W]` of training inputs.
 * @returns The initial state.
 * @throws {RangeError} On a missing parameter or statistics, a bad batch, or
 *   a tensor whose range would be 0 (e.g. an activation that is 0 everywhere).
 *
 * @example
 * ```ts
 * import { bayesianBits, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(2 * 784).map((_, i) => (i % 7) / 7), [2, 1, 28, 28]);
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * assert.equal(state.signed["conv1.weight"], true);
 * assert.equal(state.signed["conv1.act"], false); // after a ReLU
 * assert.deepEqual([...state.params["fc1.weight.logits"].toFloat32Array()], [6, 6, -6, -6]);
 * ```
 */
export async function initGated(
  gated: GatedModel,
  float: {
    readonly params: GatedParams;
    readonly stats?: Readonly<
      Record<string, { mean: Tensor; variance: Tensor }>
    >;
  },
  firstBatch: Tensor,
): Promise<GatedState> {
  const dev = firstParam(float.params).device;
  if (dev.kind === "webgpu") return await initOnHost(gated, float, firstBatch);
  const params = await foldedParams(gated, float);
  const init = gated.options.initialLogits;
  const signed: Record<string, boolean> = {};
  for (const q of gated.quantizers) {
    params[q.logitsParam] = dev.upload(
      [init[4], init[8], init[16], init[32]],
      [4],
    );
    if (q.pruneParam) {
      params[q.pruneParam] = dev.upload(
        new Float32Array(q.pruneChannels).fill(init[2]),
        [q.pruneChannels],
      );
    }
    if (q.kind === "weight") {
      const range = initRange(params[`${q.layer}.weight`], q.name);
      params[q.xmaxParam] = dev.upload([range.xmax], [1]);
      signed[q.name] = range.signed;
    }
  }
  const x = await firstBatch.to(dev);
  const deterministic = (q: QuantizerInfo) =>
    gatesOp(logitTensors(q, params), null);
  const actQ = new Map(
    gated.quantizers.filter((q) => q.kind === "activation").map((
      q,
    ) => [q.layer, q]),
  );
  const weightQ = new Map(
    gated.quantizers.filter((q) => q.kind === "weight").map((
      q,
    ) => [q.layer, q]),
  );
  const quantize = (q: QuantizerInfo | undefined, t: Tensor) => {
    if (!q) return t;
    if (!(q.xmaxParam in params)) {
      const range = initRange(t, q.name);
      params[q.xmaxParam] = dev.upload([range.xmax], [1]);
      signed[q.name] = range.signed;
    }
    return quantizerOp(t, params[q.xmaxParam], deterministic(q), {
      signed: signed[q.name],
      name: q.name,
    });
  };
  // The pass's activations are freed with the scope; the ranges it sets
  // are kept (they are reachable from the result).
  dev.scope(() => {
    runGraph(gated.model, params, x, {
      mode: "train",
      weight: (layer, w) => quantize(weightQ.get(layer.name), w),
      activation: (layer, a) => quantize(actQ.get(layer.name), a),
    });
    return params;
  });
  return { params: Object.freeze(params), signed: Object.freeze(signed) };
}
