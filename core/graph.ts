/**
 * Models as small dataflow graphs of layers.
 *
 * A {@link ModelGraph} is a list of nodes in execution order; each node
 * names its inputs (earlier nodes, or `"input"`). Shapes and MAC counts are
 * inferred once, parameters are initialised from a key, and
 * {@link runGraph} evaluates the graph with the differentiable ops, calling
 * optional hooks on every conv/dense weight and every activation — which is
 * where Bayesian Bits attaches its quantizers.
 *
 * @module
 */

import type { Params } from "./autodiff.ts";
import type { Device } from "./device.ts";
import { referenceDevice } from "./reference/device.ts";
import { type RandomKey, splitKey, uniform } from "./rng.ts";
import type { Shape, Tensor } from "./tensor.ts";
import { add, relu, relu6, reshape } from "./ops/elementwise.ts";
import { conv2d, convOutputSize } from "./ops/conv2d.ts";
import { dense } from "./ops/dense.ts";
import { globalAvgPool, maxPool2d } from "./ops/pool.ts";
import { batchNorm, type BatchNormStats } from "./ops/batchnorm.ts";

/** Activation applied after a layer. */
export type Activation = "none" | "relu" | "relu6";

/** A graph node. */
export type GraphNode =
  | {
    readonly op: "conv";
    readonly name: string;
    readonly input: string;
    readonly outChannels: number;
    readonly kernel: number;
    readonly stride?: number;
    readonly padding?: number;
    readonly groups?: number;
    /** Followed by batch norm (foldable). */
    readonly batchNorm?: boolean;
    readonly activation?: Activation;
  }
  | {
    readonly op: "dense";
    readonly name: string;
    readonly input: string;
    readonly outFeatures: number;
    readonly activation?: Activation;
  }
  | {
    readonly op: "maxpool";
    readonly name: string;
    readonly input: string;
    readonly kernel: number;
    readonly stride?: number;
    readonly padding?: number;
  }
  | { readonly op: "avgpool"; readonly name: string; readonly input: string }
  | { readonly op: "flatten"; readonly name: string; readonly input: string }
  | {
    readonly op: "add";
    readonly name: string;
    readonly inputs: readonly [string, string];
    readonly activation?: Activation;
  };

/** A model: input shape `[C, H, W]` and nodes in execution order; the last node is the output. */
export interface ModelGraph {
  /** Model name. */
  readonly name: string;
  /** Shape of one input sample, `[C, H, W]`. */
  readonly inputShape: readonly [number, number, number];
  /** The nodes. */
  readonly nodes: readonly GraphNode[];
}

/** A conv or dense layer with its inferred shapes and MAC count. */
export interface LayerInfo {
  /** Node name; its parameters are `${name}.weight`, `${name}.bias`. */
  readonly name: string;
  /** `"conv"` or `"dense"`. */
  readonly kind: "conv" | "dense";
  /** Weight shape (output channels on axis 0). */
  readonly weightShape: Shape;
  /** Input channels (features for dense). */
  readonly inChannels: number;
  /** Output channels (features for dense). */
  readonly outChannels: number;
  /** Shape of one output sample. */
  readonly outputShape: Shape;
  /** Multiply-accumulates per sample. */
  readonly macs: number;
  /** Whether batch norm follows. */
  readonly batchNorm: boolean;
  /** The activation after the layer (and batch norm). */
  readonly activation: Activation;
}

/** Per-sample output shapes of every node, and the conv/dense layers. */
export interface GraphInfo {
  /** Shape of one sample at each node's output. */
  readonly shapes: ReadonlyMap<string, Shape>;
  /** The conv/dense layers in execution order. */
  readonly layers: readonly LayerInfo[];
}

function fail(node: { name: string }, message: string): never {
  throw new RangeError(`Layer "${node.name}": ${message}`);
}

/** A conv node of a {@link GraphNode}. */
type ConvNode = Extract<GraphNode, { readonly op: "conv" }>;
/** A dense node of a {@link GraphNode}. */
type DenseNode = Extract<GraphNode, { readonly op: "dense" }>;
/** A max-pool node of a {@link GraphNode}. */
type MaxPoolNode = Extract<GraphNode, { readonly op: "maxpool" }>;

function convLayerInfo(node: ConvNode, s: Shape): LayerInfo {
  if (s.length !== 3) {
    fail(node, `conv needs a [C, H, W] input, got [${s.join(", ")}]`);
  }
  const [c, h, w] = s;
  const stride = node.stride ?? 1;
  const padding = node.padding ?? 0;
  const groups = node.groups ?? 1;
  if (c % groups !== 0 || node.outChannels % groups !== 0) {
    fail(
      node,
      `${c} -> ${node.outChannels} channels do not divide into ${groups} groups`,
    );
  }
  const oh = convOutputSize(h, node.kernel, stride, padding);
  const ow = convOutputSize(w, node.kernel, stride, padding);
  if (oh < 1 || ow < 1) {
    fail(node, `kernel ${node.kernel} does not fit ${h}x${w}`);
  }
  return {
    name: node.name,
    kind: "conv",
    weightShape: [node.outChannels, c / groups, node.kernel, node.kernel],
    inChannels: c,
    outChannels: node.outChannels,
    outputShape: [node.outChannels, oh, ow],
    macs: oh * ow * node.outChannels * (c / groups) * node.kernel *
      node.kernel,
    batchNorm: node.batchNorm ?? false,
    activation: node.activation ?? "none",
  };
}

function denseLayerInfo(node: DenseNode, s: Shape): LayerInfo {
  if (s.length !== 1) {
    fail(node, `dense needs a flat input, got [${s.join(", ")}]`);
  }
  return {
    name: node.name,
    kind: "dense",
    weightShape: [node.outFeatures, s[0]],
    inChannels: s[0],
    outChannels: node.outFeatures,
    outputShape: [node.outFeatures],
    macs: s[0] * node.outFeatures,
    batchNorm: false,
    activation: node.activation ?? "none",
  };
}

function maxPoolShape(node: MaxPoolNode, s: Shape): Shape {
  const [c, h, w] = s;
  const stride = node.stride ?? node.kernel;
  const padding = node.padding ?? 0;
  return [
    c,
    convOutputSize(h, node.kernel, stride, padding),
    convOutputSize(w, node.kernel, stride, padding),
  ];
}

/**
 * Infers every node's output shape and every layer's MAC count.
 *
 * @param graph The model.
 * @returns Shapes and layer information.
 * @throws {RangeError} On an unknown input, duplicate name or shapes that do not fit.
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { analyzeGraph } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const macs = analyzeGraph(lenet5()).layers.map((l) => l.macs);
 * assert.deepEqual(macs, [460800, 3276800, 524288, 5120]);
 * ```
 */
export function analyzeGraph(graph: ModelGraph): GraphInfo {
  const shapes = new Map<string, Shape>([["input", graph.inputShape]]);
  const layers: LayerInfo[] = [];
  const get = (node: { name: string }, input: string) => {
    const s = shapes.get(input);
    if (!s) fail(node, `unknown input "${input}"`);
    return s;
  };
  for (const node of graph.nodes) {
    if (shapes.has(node.name)) fail(node, "duplicate name");
    let out: Shape;
    switch (node.op) {
      case "conv":
      case "dense": {
        const input = get(node, node.input);
        const layer = node.op === "conv"
          ? convLayerInfo(node, input)
          : denseLayerInfo(node, input);
        layers.push(layer);
        out = layer.outputShape;
        break;
      }
      case "maxpool":
        out = maxPoolShape(node, get(node, node.input));
        break;
      case "avgpool":
        out = [get(node, node.input)[0]];
        break;
      case "flatten":
        out = [get(node, node.input).reduce((a, b) => a * b, 1)];
        break;
      case "add": {
        const a = get(node, node.inputs[0]);
        const b = get(node, node.inputs[1]);
        if (a.join() !== b.join()) {
          fail(node, `cannot add [${a.join(", ")}] and [${b.join(", ")}]`);
        }
        out = a;
        break;
      }
    }
    shapes.set(node.name, out);
  }
  return { shapes, layers };
}

/**
 * Initialises parameters the way PyTorch's default layer initialisation does:
 * weights and biases uniform in `±1 / sqrt(fan_in)`; batch norm `gamma = 1`,
 * `beta = 0`, running mean 0 and variance 1. The numbers are drawn on the
 * host from `key` (the same on every device) and uploaded to `device`.
 *
 * @param graph The model.
 * @param key The random key.
 * @param device Where the parameters live (default: the reference device).
 * @returns Parameters (`name.weight`, `name.bias`, `name.bn.gamma`,
 *   `name.bn.beta`) and batch-norm statistics by layer name.
 *
 * @example
 * ```ts
 * import { initGraph, lenet5, randomKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const { params } = initGraph(lenet5(), randomKey(0));
 * assert.deepEqual(params["conv1.weight"].shape, [32, 1, 5, 5]);
 * ```
 */
export function initGraph(
  graph: ModelGraph,
  key: RandomKey,
  device: Device = referenceDevice,
): { params: Params; stats: Readonly<Record<string, BatchNormStats>> } {
  const { layers } = analyzeGraph(graph);
  const keys = splitKey(key, layers.length * 2);
  const params: Record<string, Tensor> = {};
  const stats: Record<string, BatchNormStats> = {};
  layers.forEach((layer, i) => {
    const fanIn = layer.weightShape.slice(1).reduce((a, b) => a * b, 1);
    const bound = 1 / Math.sqrt(fanIn);
    const size = layer.weightShape.reduce((a, b) => a * b, 1);
    const w = uniform(keys[2 * i], size).map((u) => (2 * u - 1) * bound);
    const b = uniform(keys[2 * i + 1], layer.outChannels).map((u) =>
      (2 * u - 1) * bound
    );
    params[`${layer.name}.weight`] = device.upload(w, layer.weightShape);
    params[`${layer.name}.bias`] = device.upload(b, [layer.outChannels]);
    if (layer.batchNorm) {
      const c = layer.outChannels;
      params[`${layer.name}.bn.gamma`] = device.upload(
        new Float32Array(c).fill(1),
        [c],
      );
      params[`${layer.name}.bn.beta`] = device.zeros([c]);
      stats[layer.name] = {
        mean: device.zeros([c]),
        variance: device.upload(new Float32Array(c).fill(1), [c]),
      };
    }
  });
  return { params, stats };
}

/** Hooks and mode of {@link runGraph}. */
export interface RunOptions {
  /** `"train"` uses batch statistics in batch norm; `"eval"` the running ones. */
  readonly mode?: "train" | "eval";
  /** Running batch-norm statistics by layer name. */
  readonly stats?: Readonly<Record<string, BatchNormStats>>;
  /** Transforms each conv/dense weight before use (e.g. a quantizer). */
  readonly weight?: (layer: LayerInfo, w: Tensor) => Tensor;
  /** Transforms each conv/dense output after its activation (e.g. a quantizer). */
  readonly activation?: (layer: LayerInfo, a: Tensor) => Tensor;
  /**
   * Inference fast paths: called for each conv/dense layer with its output
   * before the activation (and batch norm applied), the activation, and the
   * max-pool window that follows when that pool is the layer's only
   * consumer. A returned tensor replaces the activation and the `activation`
   * hook, and, when `pool` was given, the pool too (it is the pool's
   * output); `undefined` runs the usual steps. Gradients do not flow through
   * what it returns unless it records them itself.
   */
  readonly fused?: (
    layer: LayerInfo,
    z: Tensor,
    activation: Activation | undefined,
    pool: PoolWindow | null,
  ) => Tensor | undefined;
}

/** A max-pool window as {@link RunOptions.fused} sees it. */
export interface PoolWindow {
  /** Window size. */
  readonly kernel: number;
  /** Stride. */
  readonly stride: number;
  /** Implicit `-Infinity` padding on each side. */
  readonly padding: number;
}

function activate(a: Tensor, kind: Activation | undefined): Tensor {
  return kind === "relu" ? relu(a) : kind === "relu6" ? relu6(a) : a;
}

/** The state {@link runGraph} threads through the nodes of one run. */
interface GraphRun {
  readonly graph: ModelGraph;
  readonly params: Params;
  readonly options: RunOptions;
  readonly mode: "train" | "eval";
  readonly layerOf: ReadonlyMap<string, LayerInfo>;
  /** How many nodes read each value. */
  readonly readers: ReadonlyMap<string, number>;
  /** Each computed node's output, by name (`"input"` for the batch). */
  readonly values: Map<string, Tensor>;
  /** Batch-norm statistics by layer name, updated in train mode. */
  readonly stats: Record<string, BatchNormStats>;
}

function checkBatchShape(graph: ModelGraph, x: Tensor): void {
  if (
    x.shape.length !== 4 || x.shape.slice(1).join() !== graph.inputShape.join()
  ) {
    throw new RangeError(
      `${graph.name} expects a batch [N, ${
        graph.inputShape.join(", ")
      }], got [${x.shape.join(", ")}]`,
    );
  }
}

// How many nodes read each value: a pool may fuse into the layer it reads
// only when it is that layer's one consumer.
function countReaders(graph: ModelGraph): Map<string, number> {
  const readers = new Map<string, number>();
  for (const node of graph.nodes) {
    const inputs = "inputs" in node
      ? node.inputs
      : "input" in node
      ? [node.input]
      : [];
    for (const i of inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  }
  return readers;
}

function graphParam(run: GraphRun, name: string): Tensor {
  const p = run.params[name];
  if (!p) {
    throw new RangeError(`${run.graph.name}: missing parameter "${name}"`);
  }
  return p;
}

/** A conv/dense layer's output before its activation (batch norm applied). */
function layerPreActivation(
  run: GraphRun,
  node: ConvNode | DenseNode,
  layer: LayerInfo,
): Tensor {
  let w = graphParam(run, `${node.name}.weight`);
  if (run.options.weight) w = run.options.weight(layer, w);
  const input = run.values.get(node.input)!;
  let out = node.op === "conv"
    ? conv2d(input, w, graphParam(run, `${node.name}.bias`), node)
    : dense(input, w, graphParam(run, `${node.name}.bias`));
  if (layer.batchNorm) {
    const bn = batchNorm(
      out,
      graphParam(run, `${node.name}.bn.gamma`),
      graphParam(run, `${node.name}.bn.beta`),
      {
        mode: run.mode,
        stats: run.stats[node.name],
      },
    );
    out = bn.output;
    if (bn.stats) run.stats[node.name] = bn.stats;
  }
  return out;
}

/** The max-pool right after `node` when it is `node`'s only reader. */
function fusablePool(
  run: GraphRun,
  node: ConvNode | DenseNode,
  next: GraphNode | undefined,
): MaxPoolNode | null {
  return next?.op === "maxpool" && next.input === node.name &&
      run.readers.get(node.name) === 1
    ? next
    : null;
}

/**
 * Runs a conv/dense layer: returns the output and the node it belongs to,
 * which is the following max-pool when the `fused` hook took the pool too.
 */
function runLayer(
  run: GraphRun,
  node: ConvNode | DenseNode,
  next: GraphNode | undefined,
): { readonly name: string; readonly out: Tensor } {
  const { options } = run;
  const layer = run.layerOf.get(node.name)!;
  let out = layerPreActivation(run, node, layer);
  const poolNode = fusablePool(run, node, next);
  const pool = poolNode
    ? {
      kernel: poolNode.kernel,
      stride: poolNode.stride ?? poolNode.kernel,
      padding: poolNode.padding ?? 0,
    }
    : null;
  const fused = options.fused?.(layer, out, node.activation, pool);
  if (fused && poolNode) return { name: poolNode.name, out: fused };
  if (fused) {
    out = fused;
  } else {
    out = activate(out, node.activation);
    if (options.activation) out = options.activation(layer, out);
  }
  return { name: node.name, out };
}

/** Runs a node without parameters (pooling, flatten, add) on batch size `n`. */
function runParameterFree(
  values: ReadonlyMap<string, Tensor>,
  node: Exclude<GraphNode, ConvNode | DenseNode>,
  n: number,
): Tensor {
  if (node.op === "maxpool") {
    return maxPool2d(
      values.get(node.input)!,
      node.kernel,
      node.stride ?? node.kernel,
      node.padding ?? 0,
    );
  } else if (node.op === "avgpool") {
    return globalAvgPool(values.get(node.input)!);
  } else if (node.op === "flatten") {
    return reshape(values.get(node.input)!, [n, -1]);
  }
  return activate(
    add(values.get(node.inputs[0])!, values.get(node.inputs[1])!),
    node.activation,
  );
}

/**
 * Runs a model on a batch.
 *
 * @param graph The model.
 * @param params Its parameters.
 * @param x A batch `[N, C, H, W]`.
 * @param options Mode, statistics and hooks.
 * @returns The output (logits) and updated batch-norm statistics (train mode).
 * @throws {RangeError} On a batch whose sample shape is not the model's input shape.
 *
 * @example
 * ```ts
 * import { initGraph, lenet5, randomKey, runGraph, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const model = lenet5();
 * const { params } = initGraph(model, randomKey(0));
 * const { output } = runGraph(model, params, Tensor.zeros([2, 1, 28, 28]));
 * assert.deepEqual(output.shape, [2, 10]);
 * ```
 */
export function runGraph(
  graph: ModelGraph,
  params: Params,
  x: Tensor,
  options: RunOptions = {},
): { output: Tensor; stats: Record<string, BatchNormStats> } {
  const info = analyzeGraph(graph);
  checkBatchShape(graph, x);
  const n = x.shape[0];
  const run: GraphRun = {
    graph,
    params,
    options,
    mode: options.mode ?? "eval",
    layerOf: new Map(info.layers.map((l) => [l.name, l])),
    readers: countReaders(graph),
    values: new Map<string, Tensor>([["input", x]]),
    stats: { ...options.stats },
  };
  let last = x;
  let skip: string | null = null;
  for (const [index, node] of graph.nodes.entries()) {
    if (node.name === skip) continue;
    if (node.op === "conv" || node.op === "dense") {
      const { name, out } = runLayer(run, node, graph.nodes[index + 1]);
      if (name !== node.name) skip = name;
      run.values.set(name, out);
      last = out;
      continue;
    }
    const out = runParameterFree(run.values, node, n);
    run.values.set(node.name, out);
    last = out;
  }
  return { output: last, stats: run.stats };
}
