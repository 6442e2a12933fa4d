/**
 * Bayesian Bits on a model graph: {@link bayesianBits} turns a float model
 * into a gated one (spec section 5), {@link initGated} initialises its gate
 * logits and ranges, {@link trainBayesianBits} learns weights, gate logits
 * and ranges with the paper's recipe (spec section 6), and
 * {@link evaluateGated} / {@link gatedReport} measure the result with
 * deterministic gates (spec sections 2, 4 and 8).
 *
 * Parameter names: a gated model keeps the float model's `<layer>.weight`
 * and `<layer>.bias`, and adds for each quantizer `<q>.xmax` (`[1]`, the
 * range), `<q>.logits` (`[4]`: g4, g8, g16, g32) and, for weights with
 * pruning, `<q>.prune` (`[C]`: one g2 per output channel), where `<q>` is
 * `<layer>.weight` or `<layer>.act`.
 *
 * No `Deno.*` here: progress and checkpoints go through callbacks.
 *
 * @module
 */

import { valueAndGrad } from "./autodiff.ts";
import type { QuantizerBackend } from "./backend.ts";
import { layerBops } from "./bops.ts";
import { batchCount, batches, type Dataset } from "./data.ts";
import { effectiveBits, type GateLogits, gateProbability } from "./gates.ts";
import {
  analyzeGraph,
  type GraphNode,
  type LayerInfo,
  type ModelGraph,
  runGraph,
} from "./graph.ts";
import { foldBatchNorm } from "./ops/batchnorm.ts";
import {
  gatesOp,
  type GateTensors,
  type LogitTensors,
  priorOp,
  quantizeActivationForInference,
  quantizerOp,
} from "./ops/bayesian.ts";
import { add, scale } from "./ops/elementwise.ts";
import { type GemmFn, withGemm } from "./ops/gemm.ts";
import { type OpKernels, withKernels } from "./ops/kernels.ts";
import { softmaxCrossEntropy } from "./ops/loss.ts";
import { maxPool2d } from "./ops/pool.ts";
import {
  adam,
  constantThenLinearSchedule,
  type Optimizer,
  type OptimizerState,
  paramGroups,
  perEpoch,
} from "./optim.ts";
import { prior, type PriorMode } from "./prior.ts";
import { checkImageShape, countCorrect, progressRate } from "./train.ts";
import { initRange } from "./quantizer.ts";
import { referenceBackend } from "./reference.ts";
import {
  type BayesianBitsReport,
  type GateProbabilities,
  type HistoryEntry,
  type LayerReport,
  REPORT_SCHEMA,
} from "./report.ts";
import { foldIn, type RandomKey, splitKey, uniform } from "./rng.ts";
import { Tensor, tensorStorage } from "./tensor.ts";

/** Parameters of a gated model as tensors, by name. */
export type GatedParams = Readonly<Record<string, Tensor>>;

/** The bit widths whose gates have logits: 2 (the pruning gate), 4, 8, 16, 32. */
export const GATE_BIT_WIDTHS: readonly [2, 4, 8, 16, 32] = Object.freeze(
  [2, 4, 8, 16, 32] as const,
);

/** Initial gate logits by the bit width of the gate (2 = the pruning gate). */
export interface InitialLogits {
  /** Pruning gates (one per output channel of weight quantizers). */
  readonly 2: number;
  /** The 4-bit level. */
  readonly 4: number;
  /** The 8-bit level. */
  readonly 8: number;
  /** The 16-bit level. */
  readonly 16: number;
  /** The 32-bit level. */
  readonly 32: number;
}

/** The recipe's initial logits: start at 8 bits with every channel kept. */
export const DEFAULT_INITIAL_LOGITS: InitialLogits = Object.freeze({
  2: 6,
  4: 6,
  8: 6,
  16: -6,
  32: -6,
});

/** Learning rates of the three parameter groups. */
export interface LearningRates {
  /** Weights and biases (Adam; the recipe's schedule applies to it). */
  readonly weights: number;
  /** Gate logits (Adam, constant). */
  readonly logits: number;
  /** Ranges `xmax` (Adam, constant). */
  readonly ranges: number;
}

/** Options of {@link bayesianBits}. */
export interface BayesianBitsOptions {
  /** Strength of the prior in `loss = CE + mu * sum R`; default 0.01. */
  readonly mu?: number;
  /** Per-output-channel pruning gates on weights; default true. */
  readonly pruning?: boolean;
  /**
   * Initial logits by gate bit width (any subset of 2, 4, 8, 16, 32); the
   * rest from {@link DEFAULT_INITIAL_LOGITS}.
   */
  readonly initialLogits?: Readonly<Record<number, number>>;
  /** Prior weighting: `"bop"` (default, the paper's) or `"const"`. */
  readonly prior?: PriorMode;
  /** Names of conv/dense layers left in full precision (no quantizers). */
  readonly fullPrecision?: readonly string[];
  /** Learning rates; each defaults to the recipe's 1e-3. */
  readonly learningRates?: Partial<LearningRates>;
}

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

function checkNumber(
  what: string,
  value: unknown,
  ok: (v: number) => boolean,
  rule: string,
): number {
  if (typeof value !== "number" || !ok(value)) {
    throw new RangeError(
      `Invalid ${what} ${String(value)}: it must be ${rule}`,
    );
  }
  return value;
}

/** Follows a node's input back through pools and flattens to the layer (or input/add) producing it. */
function producerOf(
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
 *   bad learning rate or prior mode, or a model that does not analyse.
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
  const mu = checkNumber(
    "mu",
    options.mu ?? 0.01,
    (v) => Number.isFinite(v) && v >= 0,
    "a finite number >= 0",
  );
  const pruning = options.pruning ?? true;
  if (typeof pruning !== "boolean") {
    throw new TypeError(
      `Invalid pruning ${String(pruning)}: it must be a boolean`,
    );
  }
  const initial: Record<number, number> = { ...DEFAULT_INITIAL_LOGITS };
  for (const [key, value] of Object.entries(options.initialLogits ?? {})) {
    const bits = Number(key);
    if (!(GATE_BIT_WIDTHS as readonly number[]).includes(bits)) {
      throw new RangeError(
        `Unknown bit width ${key} in initialLogits: gates exist for bit widths ${
          GATE_BIT_WIDTHS.join(", ")
        } (2 is the pruning gate)`,
      );
    }
    initial[bits] = checkNumber(
      `initial logit for ${bits} bits`,
      value,
      Number.isFinite,
      "a finite number",
    );
  }
  const priorMode = options.prior ?? "bop";
  if (priorMode !== "bop" && priorMode !== "const") {
    throw new RangeError(
      `Invalid prior mode ${
        JSON.stringify(priorMode)
      }: it must be "bop" or "const"`,
    );
  }
  const rates = { weights: 1e-3, logits: 1e-3, ranges: 1e-3 };
  for (const [group, value] of Object.entries(options.learningRates ?? {})) {
    if (!(group in rates)) {
      throw new RangeError(
        `Unknown learning-rate group "${group}": the groups are weights, logits, ranges`,
      );
    }
    rates[group as keyof LearningRates] = checkNumber(
      `learning rate for ${group}`,
      value,
      (v) => Number.isFinite(v) && v >= 0,
      "a finite number >= 0",
    );
  }
  const info = analyzeGraph(model);
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
  return Object.freeze({
    source: model,
    model: folded,
    layers,
    quantizers: Object.freeze(quantizers),
    maxMacs,
    options: Object.freeze({
      mu,
      pruning,
      initialLogits: Object.freeze(initial) as unknown as InitialLogits,
      prior: priorMode,
      fullPrecision: Object.freeze(fullPrecision),
      learningRates: Object.freeze(rates),
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

function logitTensors(q: QuantizerInfo, params: GatedParams): LogitTensors {
  return q.pruneParam
    ? { chain: params[q.logitsParam], g2: params[q.pruneParam] }
    : { chain: params[q.logitsParam] };
}

function plainLogits(q: QuantizerInfo, params: GatedParams): GateLogits {
  const c = tensorStorage(params[q.logitsParam]);
  const base = { g4: c[0], g8: c[1], g16: c[2], g32: c[3] };
  return q.pruneParam
    ? { g2: tensorStorage(params[q.pruneParam]), ...base }
    : base;
}

/** Runs the gated model with the given gate tensors per quantizer. */
function gatedForward(
  gated: GatedModel,
  state: GatedState,
  x: Tensor,
  gatesOf: (q: QuantizerInfo) => GateTensors,
  backend: QuantizerBackend,
  skipWeights = false,
  inference = false,
): Tensor {
  const weightQ = new Map<string, QuantizerInfo>();
  const actQ = new Map<string, QuantizerInfo>();
  for (const q of gated.quantizers) {
    (q.kind === "weight" ? weightQ : actQ).set(q.layer, q);
  }
  const { params, signed } = state;
  const apply = (q: QuantizerInfo | undefined, t: Tensor) =>
    q
      ? quantizerOp(t, params[q.xmaxParam], gatesOf(q), {
        signed: signed[q.name],
        backend,
        name: q.name,
      })
      : t;
  return runGraph(gated.model, params, x, {
    mode: "train",
    weight: skipWeights
      ? undefined
      : (layer, w) => apply(weightQ.get(layer.name), w),
    activation: (layer, a) => apply(actQ.get(layer.name), a),
    // An unsigned grid clips at 0, which is what a ReLU before it does: the
    // quantizer on the pre-activation gives the same xq and, since its
    // straight-through mask is 0 wherever the ReLU's is, the same gradients
    // for every input, bit for bit. So the ReLU is skipped; in evaluation the
    // max-pool that follows joins the same pass.
    fused: (layer, z, activation, pool) => {
      const q = actQ.get(layer.name);
      if (!q || signed[q.name] || activation !== "relu") return undefined;
      if (inference) {
        const [z4, z8, z16, z32] = tensorStorage(gatesOf(q).chain);
        return quantizeActivationForInference(
          z,
          tensorStorage(params[q.xmaxParam])[0],
          [z4, z8, z16, z32],
          { relu: true, pool, backend, name: q.name },
        );
      }
      const a = apply(q, z);
      return pool ? maxPool2d(a, pool.kernel, pool.stride, pool.padding) : a;
    },
  }).output;
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
 * @param options The quantizer backend, GEMM and op kernels of the first
 *   pass (default: the references).
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
 * const state = initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * assert.equal(state.signed["conv1.weight"], true);
 * assert.equal(state.signed["conv1.act"], false); // after a ReLU
 * assert.deepEqual([...state.params["fc1.weight.logits"].toFloat32Array()], [6, 6, -6, -6]);
 * ```
 */
export function initGated(
  gated: GatedModel,
  float: {
    readonly params: GatedParams;
    readonly stats?: Readonly<
      Record<string, { mean: Tensor; variance: Tensor }>
    >;
  },
  firstBatch: Tensor,
  options: {
    readonly backend?: QuantizerBackend;
    readonly gemm?: GemmFn;
    readonly kernels?: OpKernels;
  } = {},
): GatedState {
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
      const f = foldBatchNorm(
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
  const init = gated.options.initialLogits;
  const signed: Record<string, boolean> = {};
  for (const q of gated.quantizers) {
    params[q.logitsParam] = Tensor.from([init[4], init[8], init[16], init[32]]);
    if (q.pruneParam) {
      params[q.pruneParam] = Tensor.from(
        new Float32Array(q.pruneChannels).fill(init[2]),
      );
    }
    if (q.kind === "weight") {
      const range = initRange(params[`${q.layer}.weight`], q.name);
      params[q.xmaxParam] = Tensor.from([range.xmax]);
      signed[q.name] = range.signed;
    }
  }
  const backend = options.backend ?? referenceBackend;
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
      params[q.xmaxParam] = Tensor.from([range.xmax]);
      signed[q.name] = range.signed;
    }
    return quantizerOp(t, params[q.xmaxParam], deterministic(q), {
      signed: signed[q.name],
      backend,
      name: q.name,
    });
  };
  withKernels(
    options.kernels ?? null,
    () =>
      withGemm(
        options.gemm ?? null,
        () =>
          runGraph(gated.model, params, firstBatch, {
            mode: "train",
            weight: (layer, w) => quantize(weightQ.get(layer.name), w),
            activation: (layer, a) => quantize(actQ.get(layer.name), a),
          }),
      ),
  );
  return { params: Object.freeze(params), signed: Object.freeze(signed) };
}

/** Per-layer cost of a gated model under deterministic gates. */
export interface GatedLayerCost {
  /** The layer. */
  readonly layer: LayerInfo;
  /** Weight bits of kept channels (32 without a quantizer). */
  readonly weightBits: number;
  /** Output activation bits, or `null` when not quantized. */
  readonly activationBits: number | null;
  /** Input bits as counted (network input: 8; unquantized input: 32). */
  readonly inputBits: number;
  /** Kept output channels. */
  readonly keptChannels: number;
  /** Kept fraction of the input channels. */
  readonly keptInputFraction: number;
  /** BOPs per sample. */
  readonly bops: number;
}

/**
 * BOPs of a gated model under its deterministic gates (spec section 4): per
 * layer `MACs * ba * bw * ko * ki`, the network input counted as 8-bit, a
 * layer's input bits and kept-input fraction taken from the layer that
 * produces it (through pools and flattens; after a residual add: 32 bits,
 * all kept).
 *
 * @param gated The gated model.
 * @param params Its parameters.
 * @returns Per-layer costs, total BOPs, the all-32-bit baseline and relative GBOPs in percent.
 *
 * @example An untrained LeNet-5 starts at 8 bits everywhere: 6.25 % of the 32-bit baseline
 * ```ts
 * import { bayesianBits, gatedBops, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(784).map((_, i) => (i % 5) / 5), [1, 1, 28, 28]);
 * const state = initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * assert.equal(gatedBops(gated, state.params).relativeGbops.toFixed(2), "6.25");
 * ```
 */
export function gatedBops(
  gated: GatedModel,
  params: GatedParams,
): {
  layers: GatedLayerCost[];
  bops: number;
  baselineBops: number;
  relativeGbops: number;
} {
  const nodes = new Map(gated.model.nodes.map((n) => [n.name, n]));
  const byLayer = new Map<string, { w?: QuantizerInfo; a?: QuantizerInfo }>();
  for (const q of gated.quantizers) {
    const entry = byLayer.get(q.layer) ?? {};
    if (q.kind === "weight") entry.w = q;
    else entry.a = q;
    byLayer.set(q.layer, entry);
  }
  const costs = new Map<string, GatedLayerCost>();
  let bops = 0;
  let baselineBops = 0;
  for (const layer of gated.layers) {
    const node = nodes.get(layer.name) as Extract<GraphNode, { input: string }>;
    const { w, a } = byLayer.get(layer.name) ?? {};
    let weightBits = 32;
    let kept = layer.outChannels;
    if (w) {
      const e = effectiveBits(plainLogits(w, params));
      weightBits = e.bits;
      kept = e.keptChannels ?? layer.outChannels;
    }
    const activationBits = a
      ? effectiveBits(plainLogits(a, params)).bits
      : null;
    const producer = producerOf(nodes, node.input);
    let inputBits = 8;
    let keptInputFraction = 1;
    if (producer) {
      const before = costs.get(producer.name);
      if (before) {
        inputBits = before.activationBits ?? 32;
        keptInputFraction = before.keptChannels / before.layer.outChannels;
      } else {
        inputBits = 32;
      }
    }
    const layerCost = layerBops({
      name: layer.name,
      macs: layer.macs,
      weightBits,
      inputBits,
      keptOutput: kept / layer.outChannels,
      keptInput: keptInputFraction,
    });
    bops += layerCost;
    baselineBops += layer.macs * 32 * 32;
    costs.set(layer.name, {
      layer,
      weightBits,
      activationBits,
      inputBits,
      keptChannels: kept,
      keptInputFraction,
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

/**
 * The summed prior `sum_q R_q` of a gated model's current logits (without `mu`).
 *
 * @param gated The gated model.
 * @param params Its parameters.
 * @returns The sum over quantizers.
 *
 * @example
 * ```ts
 * import { bayesianBits, lenet5, priorSum, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5(), { pruning: false, fullPrecision: ["conv1", "conv2", "fc1"] });
 * // One quantizer left (fc2's weights), all gates far off: R = 1.
 * const r = priorSum(gated, { "fc2.weight.logits": Tensor.from([-60, -60, -60, -60]) });
 * assert.ok(Math.abs(r - 1) < 1e-9);
 * ```
 */
export function priorSum(gated: GatedModel, params: GatedParams): number {
  let total = 0;
  for (const q of gated.quantizers) {
    total += prior(plainLogits(q, params), {
      macRatio: q.macRatio,
      mode: gated.options.prior,
    }).value;
  }
  return total;
}

/**
 * The gated model's parameters with every weight quantized once under the
 * deterministic gates (pruned channels zero), and the activation quantizers'
 * deterministic gates: what evaluation and export use.
 */
function frozenForEval(
  gated: GatedModel,
  state: GatedState,
  backend: QuantizerBackend,
): { state: GatedState; gates: Map<string, GateTensors> } {
  const gates = new Map<string, GateTensors>();
  const params: Record<string, Tensor> = { ...state.params };
  for (const q of gated.quantizers) {
    const z = gatesOp(logitTensors(q, state.params), null);
    gates.set(q.name, z);
    if (q.kind === "weight") {
      const w = `${q.layer}.weight`;
      params[w] = quantizerOp(state.params[w], state.params[q.xmaxParam], z, {
        signed: state.signed[q.name],
        backend,
        name: q.name,
      });
    }
  }
  return { state: { params, signed: state.signed }, gates };
}

/** Options of {@link evaluateGated}. */
export interface EvaluateGatedOptions {
  /** Batch size (default 1000). */
  readonly batchSize?: number;
  /** Quantizer backend (default: reference). */
  readonly backend?: QuantizerBackend;
  /** The matrix multiply (default: reference). */
  readonly gemm?: GemmFn;
  /** Op kernels (e.g. a threaded `WasmBackend.kernels`; default: reference). */
  readonly kernels?: OpKernels;
}

/**
 * Test accuracy of a gated model with deterministic gates: weights quantized
 * once, activations quantized batch by batch. Each ReLU, activation
 * quantizer and the max-pool after it run as one pass (one WASM call with
 * the WASM backend), with the predictions of the three steps bit for bit.
 *
 * @param gated The gated model.
 * @param state Its state.
 * @param data The dataset.
 * @param options Batch size, backend, GEMM.
 * @returns The fraction of correctly classified samples.
 * @throws {RangeError} On an empty dataset or images of the wrong shape.
 *
 * @example
 * ```ts
 * import { bayesianBits, evaluateGated, initGated, initGraph, lenet5, makeDataset, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const images = new Float32Array(4 * 784).map((_, i) => (i % 11) / 11);
 * const data = makeDataset(images, new Int32Array([0, 1, 2, 3]), [1, 28, 28]);
 * const gated = bayesianBits(lenet5());
 * const state = initGated(gated, initGraph(lenet5(), randomKey(0)), Tensor.from(images, [4, 1, 28, 28]));
 * const accuracy = evaluateGated(gated, state, data);
 * assert.ok(accuracy >= 0 && accuracy <= 1);
 * ```
 */
export function evaluateGated(
  gated: GatedModel,
  state: GatedState,
  data: Dataset,
  options: EvaluateGatedOptions = {},
): number {
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  checkImageShape(gated.model, "test", data);
  const backend = options.backend ?? referenceBackend;
  return withKernels(
    options.kernels ?? null,
    () =>
      withGemm(options.gemm ?? null, () => {
        const frozen = frozenForEval(gated, state, backend);
        let correct = 0;
        for (const batch of batches(data, options.batchSize ?? 1000)) {
          const x = Tensor.adopt(batch.images, [batch.size, ...data.shape]);
          const out = gatedForward(
            gated,
            frozen.state,
            x,
            (q) => frozen.gates.get(q.name)!,
            backend,
            true,
            true,
          );
          correct += countCorrect(out, batch.labels);
        }
        return correct / data.count;
      }),
  );
}

function gateProbabilities(
  q: QuantizerInfo | undefined,
  params: GatedParams,
): GateProbabilities | null {
  if (!q) return null;
  const l = plainLogits(q, params);
  return {
    chain: [
      gateProbability(l.g4),
      gateProbability(l.g8),
      gateProbability(l.g16),
      gateProbability(l.g32),
    ],
    prune: l.g2 ? Array.from(l.g2, gateProbability) : null,
  };
}

/**
 * The report of a gated model (spec section 8): test accuracy, relative
 * GBOPs, per-layer bits, kept channels, GBOPs and gate probabilities.
 *
 * @param gated The gated model.
 * @param state Its state.
 * @param facts Test accuracy (measured by the caller, e.g. {@link evaluateGated}),
 *   history and a free-form run description.
 * @returns The report (format it with `formatReportTable`, `reportToJson`, `formatReportMarkdown`).
 *
 * @example
 * ```ts
 * import { bayesianBits, gatedReport, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(784).map((_, i) => (i % 3) / 3), [1, 1, 28, 28]);
 * const report = gatedReport(gated, initGated(gated, initGraph(lenet5(), randomKey(0)), x), {
 *   testAccuracy: 0.1,
 * });
 * assert.equal(report.layers[0].weightBits, 8);
 * assert.equal(report.layers[3].activationBits, null); // the logits
 * ```
 */
export function gatedReport(
  gated: GatedModel,
  state: GatedState,
  facts: {
    readonly testAccuracy: number;
    readonly history?: readonly HistoryEntry[];
    readonly run?: Readonly<Record<string, string | number | boolean | null>>;
  },
): BayesianBitsReport {
  const cost = gatedBops(gated, state.params);
  const byLayer = (layer: string, kind: QuantizerInfo["kind"]) =>
    gated.quantizers.find((q) => q.layer === layer && q.kind === kind);
  const layers: LayerReport[] = cost.layers.map((c) => ({
    name: c.layer.name,
    kind: c.layer.kind,
    macs: c.layer.macs,
    weightBits: c.weightBits,
    weightQuantized: byLayer(c.layer.name, "weight") !== undefined,
    activationBits: c.activationBits,
    inputBits: c.inputBits,
    keptChannels: c.keptChannels,
    totalChannels: c.layer.outChannels,
    keptInputFraction: c.keptInputFraction,
    gbops: c.bops / 1e9,
    weightGates: gateProbabilities(
      byLayer(c.layer.name, "weight"),
      state.params,
    ),
    activationGates: gateProbabilities(
      byLayer(c.layer.name, "activation"),
      state.params,
    ),
  }));
  return {
    schema: REPORT_SCHEMA,
    model: gated.model.name,
    mu: gated.options.mu,
    testAccuracy: facts.testAccuracy,
    relativeGbops: cost.relativeGbops,
    gbops: cost.bops / 1e9,
    baselineGbops: cost.baselineBops / 1e9,
    layers,
    history: [...(facts.history ?? [])],
    run: { ...(facts.run ?? {}) },
  };
}

/** Options of {@link gatedLoss}. */
export interface GatedLossOptions {
  /**
   * The step's key: quantizer `i` draws its gate noise from
   * `foldIn(noiseKey, i)`. `null`: deterministic gates (no noise, no
   * gradient to the logits through the gates).
   */
  readonly noiseKey: RandomKey | null;
  /** Quantizer backend (default: reference). */
  readonly backend?: QuantizerBackend;
  /** Add `mu * sum R` (default true). */
  readonly prior?: boolean;
}

/**
 * The training loss of one batch, `CE + mu * sum_q R_q`, as a tensor that
 * {@link valueAndGrad} can differentiate w.r.t. weights, ranges and logits.
 *
 * @param gated The gated model.
 * @param state Parameters and signedness.
 * @param x A batch `[N, C, H, W]`.
 * @param labels Integer labels.
 * @param options Gate noise key, backend, whether the prior is added.
 * @returns The loss tensor and its parts (cross-entropy, summed prior without mu).
 *
 * @example
 * ```ts
 * import { bayesianBits, gatedLoss, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5(), { mu: 0.5 });
 * const x = Tensor.from(new Float32Array(784).map((_, i) => (i % 9) / 9), [1, 1, 28, 28]);
 * const state = initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * const r = gatedLoss(gated, state, x, new Int32Array([3]), { noiseKey: randomKey(1) });
 * assert.ok(Math.abs(r.loss.get(0) - (r.crossEntropy + 0.5 * r.prior)) < 1e-4);
 * ```
 */
export function gatedLoss(
  gated: GatedModel,
  state: GatedState,
  x: Tensor,
  labels: ArrayLike<number>,
  options: GatedLossOptions,
): { loss: Tensor; crossEntropy: number; prior: number } {
  const p = state.params;
  const backend = options.backend ?? referenceBackend;
  const gates = new Map<string, GateTensors>();
  gated.quantizers.forEach((q, i) => {
    const logits = logitTensors(q, p);
    const noise = options.noiseKey === null
      ? null
      : uniform(foldIn(options.noiseKey, i), 4 + q.pruneChannels);
    gates.set(q.name, gatesOp(logits, noise));
  });
  const output = gatedForward(
    gated,
    state,
    x,
    (q) => gates.get(q.name)!,
    backend,
  );
  const ce = softmaxCrossEntropy(output, labels);
  const crossEntropy = tensorStorage(ce)[0];
  if (options.prior === false || gated.options.mu === 0) {
    return { loss: ce, crossEntropy, prior: priorSum(gated, p) };
  }
  let r: Tensor | null = null;
  for (const q of gated.quantizers) {
    const rq = priorOp(logitTensors(q, p), {
      macRatio: q.macRatio,
      mode: gated.options.prior,
    });
    r = r ? add(r, rq) : rq;
  }
  if (r === null) return { loss: ce, crossEntropy, prior: 0 };
  return {
    loss: add(ce, scale(r, gated.options.mu)),
    crossEntropy,
    prior: tensorStorage(r)[0],
  };
}

/** Which training phase {@link trainBayesianBits} runs. */
export type TrainingPhase = "bayesian-bits" | "fixed-gates" | "post-training";

/** A progress report of {@link trainBayesianBits}. */
export interface BayesianBitsProgress {
  /** The phase. */
  readonly phase: TrainingPhase;
  /** 1-based epoch. */
  readonly epoch: number;
  /** Epochs of the run. */
  readonly epochs: number;
  /** 1-based step within the epoch. */
  readonly step: number;
  /** Steps per epoch. */
  readonly steps: number;
  /** Mean loss over the epoch so far. */
  readonly loss: number;
  /** Mean cross-entropy over the epoch so far. */
  readonly crossEntropy: number;
  /** Summed prior at the last step (without mu). */
  readonly prior: number;
  /** Training samples per second over the epoch so far. */
  readonly samplesPerSecond: number;
  /** Estimated seconds left (training steps only). */
  readonly etaSeconds: number;
  /** Relative GBOPs (percent) of the current deterministic gates. */
  readonly relativeGbops: number;
}

/** Everything needed to continue a run: saved after every epoch. */
export interface BayesianBitsSnapshot {
  /** The phase. */
  readonly phase: TrainingPhase;
  /** Epochs completed. */
  readonly epoch: number;
  /** Epochs of the whole run. */
  readonly epochs: number;
  /** Parameters and signedness. */
  readonly state: GatedState;
  /** The optimizer state (its `step` also indexes the gate noise). */
  readonly optimizerState: OptimizerState;
  /** One entry per completed epoch. */
  readonly history: readonly HistoryEntry[];
}

/** Options of {@link trainBayesianBits}. */
export interface TrainBayesianBitsOptions {
  /** Epochs of the run (a positive integer). */
  readonly epochs: number;
  /** Mini-batch size (default 128). */
  readonly batchSize?: number;
  /** The run's key: shuffling and gate noise are derived from it. */
  readonly key: RandomKey;
  /**
   * `"bayesian-bits"` (default): weights, logits and ranges learned with
   * sampled gates. `"fixed-gates"`: gates frozen at their deterministic
   * values; weights and ranges learned (no prior). `"post-training"`:
   * weights frozen; logits (and ranges unless `learnRanges` is false) learned.
   */
  readonly phase?: TrainingPhase;
  /** Post-training only: learn the ranges too (default true). */
  readonly learnRanges?: boolean;
  /**
   * The weights' learning-rate schedule: `"two-thirds"` (default, the
   * recipe: constant for the first two thirds of the epochs, then linear
   * to 0, per epoch) or `"constant"`.
   */
  readonly weightSchedule?: "two-thirds" | "constant";
  /** Quantizer backend (default: reference). */
  readonly backend?: QuantizerBackend;
  /** The matrix multiply (default: reference). */
  readonly gemm?: GemmFn;
  /** Op kernels, including the optimizer update (default: reference). */
  readonly kernels?: OpKernels;
  /** Continue from a snapshot of the same run (same options and key). */
  readonly resume?: BayesianBitsSnapshot;
  /** Called every `progressEvery` steps and at each epoch's end. */
  readonly onProgress?: (progress: BayesianBitsProgress) => void;
  /** Steps between progress reports (default 50). */
  readonly progressEvery?: number;
  /** Called after every epoch (awaited): write a checkpoint here. */
  readonly onEpoch?: (snapshot: BayesianBitsSnapshot) => void | Promise<void>;
  /** Evaluation batch size (default 1000). */
  readonly evalBatchSize?: number;
  /** A clock in milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

/**
 * Trains a gated model: `loss = CE + mu * sum_q R_q`, three Adam optimizers
 * (weights with the recipe's schedule, gate logits, ranges), one fresh
 * hard-concrete sample per gate per step from the key, and after every
 * epoch the test accuracy and relative GBOPs with deterministic gates.
 *
 * Deterministic: the same key, options and data give the same parameters,
 * bit for bit, whether run at once or resumed from any epoch's snapshot.
 *
 * @param gated The gated model.
 * @param init Its initial state (from {@link initGated}, or a previous phase).
 * @param data Training and test sets.
 * @param options Epochs, key, phase, backends, callbacks.
 * @returns The final snapshot.
 * @throws {RangeError} On bad options, data of the wrong shape, or a
 *   snapshot that does not belong to this run.
 *
 * @example One epoch on a tiny synthetic set
 * ```ts
 * import { bayesianBits, initGated, initGraph, makeDataset, type ModelGraph, randomKey, Tensor, trainBayesianBits } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const model: ModelGraph = {
 *   name: "tiny",
 *   inputShape: [1, 2, 2],
 *   nodes: [
 *     { op: "flatten", name: "f", input: "input" },
 *     { op: "dense", name: "fc1", input: "f", outFeatures: 3, activation: "relu" },
 *     { op: "dense", name: "fc2", input: "fc1", outFeatures: 2 },
 *   ],
 * };
 * const images = new Float32Array([1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1]);
 * const data = makeDataset(images, new Int32Array([0, 1, 0, 1]), [1, 2, 2]);
 * const gated = bayesianBits(model, { mu: 0.01 });
 * const init = initGated(gated, initGraph(model, randomKey(0)), Tensor.from(images, [4, 1, 2, 2]));
 * const result = await trainBayesianBits(gated, init, { train: data, test: data }, {
 *   epochs: 1, batchSize: 2, key: randomKey(1),
 * });
 * assert.equal(result.history.length, 1);
 * assert.equal(result.optimizerState.step, 2);
 * ```
 */
export async function trainBayesianBits(
  gated: GatedModel,
  init: GatedState,
  data: { readonly train: Dataset; readonly test: Dataset },
  options: TrainBayesianBitsOptions,
): Promise<BayesianBitsSnapshot> {
  const { epochs, key } = options;
  const batchSize = options.batchSize ?? 128;
  const phase = options.phase ?? "bayesian-bits";
  checkNumber(
    "epochs",
    epochs,
    (v) => Number.isInteger(v) && v >= 1,
    "a positive integer",
  );
  checkNumber(
    "batchSize",
    batchSize,
    (v) => Number.isInteger(v) && v >= 1,
    "a positive integer",
  );
  if (!["bayesian-bits", "fixed-gates", "post-training"].includes(phase)) {
    throw new RangeError(
      `Invalid phase ${
        JSON.stringify(phase)
      }: it must be "bayesian-bits", "fixed-gates" or "post-training"`,
    );
  }
  const weightSchedule = options.weightSchedule ?? "two-thirds";
  if (weightSchedule !== "two-thirds" && weightSchedule !== "constant") {
    throw new RangeError(
      `Invalid weightSchedule ${
        JSON.stringify(weightSchedule)
      }: it must be "two-thirds" or "constant"`,
    );
  }
  checkImageShape(gated.model, "training", data.train);
  checkImageShape(gated.model, "test", data.test);
  for (const q of gated.quantizers) {
    for (const name of [q.xmaxParam, q.logitsParam, q.pruneParam]) {
      if (name && !init.params[name]) {
        throw new RangeError(
          `The state lacks "${name}": initialise it with initGated`,
        );
      }
    }
    if (typeof init.signed[q.name] !== "boolean") {
      throw new RangeError(
        `The state lacks the signedness of "${q.name}": initialise it with initGated`,
      );
    }
  }

  const learns = {
    weights: phase !== "post-training",
    logits: phase !== "fixed-gates",
    ranges: phase !== "post-training" || (options.learnRanges ?? true),
  };
  const useNoise = phase !== "fixed-gates";
  const usePrior = phase !== "fixed-gates" && gated.options.mu > 0;
  const steps = batchCount(data.train.count, batchSize);
  const rates = gated.options.learningRates;
  const weightLr = weightSchedule === "two-thirds"
    ? perEpoch(
      constantThenLinearSchedule({ lr: rates.weights, total: epochs }),
      steps,
    )
    : rates.weights;
  // Each parameter's group, looked up once (not a scan per step).
  const groupOf = new Map(
    Object.keys(init.params).map((name) => [name, parameterGroup(gated, name)]),
  );
  const group = (name: string) =>
    groupOf.get(name) ?? parameterGroup(gated, name);
  const optimizer: Optimizer = paramGroups([
    {
      name: "weights",
      optimizer: adam({ lr: weightLr }),
      match: (n) => group(n) === "weights",
    },
    {
      name: "logits",
      optimizer: adam({ lr: rates.logits }),
      match: (n) => group(n) === "logits",
    },
    {
      name: "ranges",
      optimizer: adam({ lr: rates.ranges }),
      match: (n) => group(n) === "ranges",
    },
  ]);
  const isTrainable = (name: string) => learns[group(name)];

  let params: GatedParams = init.params;
  let optimizerState: OptimizerState;
  let history: HistoryEntry[] = [];
  let startEpoch = 1;
  if (options.resume) {
    const r = options.resume;
    if (r.phase !== phase || r.epochs !== epochs) {
      throw new RangeError(
        `Cannot resume: the snapshot is of a ${r.phase} run of ${r.epochs} epochs, this is a ${phase} run of ${epochs}`,
      );
    }
    if (r.optimizerState.step !== r.epoch * steps) {
      throw new RangeError(
        `Cannot resume: the snapshot has ${r.optimizerState.step} steps after ${r.epoch} epochs, this run takes ${steps} per epoch`,
      );
    }
    params = r.state.params;
    optimizerState = r.optimizerState;
    history = [...r.history];
    startEpoch = r.epoch + 1;
  } else {
    optimizerState = optimizer.init(trainableArrays(params, isTrainable));
  }
  const signed = init.signed;
  const backend = options.backend ?? referenceBackend;
  const kernels = options.kernels ?? null;
  const [shuffleKey, noiseKey] = splitKey(key, 2);
  const now = options.now ?? (() => performance.now());
  const every = options.progressEvery ?? 50;

  let lastCrossEntropy = 0;
  let lastPrior = 0;
  const lossAndGrad = valueAndGrad(
    (
      trainable: GatedParams,
      frozen: GatedParams,
      x: Tensor,
      labels: Int32Array,
      stepKey: RandomKey,
    ) => {
      const result = gatedLoss(
        gated,
        { params: { ...frozen, ...trainable }, signed },
        x,
        labels,
        { noiseKey: useNoise ? stepKey : null, backend, prior: usePrior },
      );
      lastCrossEntropy = result.crossEntropy;
      lastPrior = result.prior;
      return result.loss;
    },
  );

  for (let epoch = startEpoch; epoch <= epochs; epoch++) {
    const epochStart = now();
    let lossSum = 0;
    let ceSum = 0;
    let priorSumOverSteps = 0;
    let seen = 0;
    let step = 0;
    for (
      const batch of batches(data.train, batchSize, {
        key: foldIn(shuffleKey, epoch),
      })
    ) {
      step++;
      const trainable: Record<string, Tensor> = {};
      const frozen: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(params)) {
        (isTrainable(name) ? trainable : frozen)[name] = t;
      }
      const x = Tensor.adopt(batch.images, [batch.size, ...data.train.shape]);
      const { value, grads } = withKernels(
        kernels,
        () =>
          withGemm(options.gemm ?? null, () =>
            lossAndGrad(
              trainable,
              frozen,
              x,
              batch.labels,
              foldIn(noiseKey, optimizerState.step),
            )),
      );
      const update = withKernels(kernels, () =>
        optimizer.update(
          trainableArrays(trainable, () => true),
          trainableArrays(grads, () => true),
          optimizerState,
        ));
      optimizerState = update.state;
      const next: Record<string, Tensor> = { ...frozen };
      for (const [name, t] of Object.entries(trainable)) {
        next[name] = Tensor.adopt(update.params[name], t.shape);
      }
      params = next;
      lossSum += value * batch.size;
      ceSum += lastCrossEntropy * batch.size;
      priorSumOverSteps += lastPrior;
      seen += batch.size;
      if (options.onProgress && (step % every === 0 || step === steps)) {
        options.onProgress({
          phase,
          epoch,
          epochs,
          step,
          steps,
          loss: lossSum / seen,
          crossEntropy: ceSum / seen,
          prior: lastPrior,
          ...progressRate(
            seen,
            (now() - epochStart) / 1000,
            epoch,
            epochs,
            data.train.count,
          ),
          relativeGbops: gatedBops(gated, params).relativeGbops,
        });
      }
    }
    const seconds = (now() - epochStart) / 1000;
    const state: GatedState = { params, signed };
    history.push({
      epoch,
      phase,
      loss: lossSum / seen,
      crossEntropy: ceSum / seen,
      prior: priorSumOverSteps / step,
      testAccuracy: evaluateGated(gated, state, data.test, {
        backend,
        gemm: options.gemm,
        kernels: options.kernels,
        batchSize: options.evalBatchSize,
      }),
      relativeGbops: gatedBops(gated, params).relativeGbops,
      seconds,
      samplesPerSecond: seen / Math.max(seconds, 1e-9),
    });
    await options.onEpoch?.({
      phase,
      epoch,
      epochs,
      state,
      optimizerState,
      history: [...history],
    });
  }
  return {
    phase,
    epoch: epochs,
    epochs,
    state: { params, signed },
    optimizerState,
    history,
  };
}

function trainableArrays(
  params: GatedParams,
  keep: (name: string) => boolean,
): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(params)) {
    if (keep(name)) out[name] = tensorStorage(t);
  }
  return out;
}
