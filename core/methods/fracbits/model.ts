/**
 * A model as FracBits sees it (spec `fracbits.md` sections 1, 4, 7 and 11):
 * per conv/dense layer a learned weight width (one, or one per output
 * kernel), and for each layer fed by another layer a learned input width
 * with a learned PACT clip. Parameters: the float model's, plus
 * `<layer>.weight.bits`, `<layer>.input.bits` and `<layer>.input.clip`;
 * after the hard assignment the integer widths ride along as
 * `<layer>.weight.bits.fixed` and `<layer>.input.bits.fixed` (learned by no
 * optimizer).
 *
 * The input quantizer of a layer runs on the output of the layer that feeds
 * it (after its ReLU, before any max-pool: the two commute), which is where
 * the frozen plan puts that layer's activation grid.
 *
 * @module
 */

import { producerOf } from "../../plan_bops.ts";
import { analyzeGraph, type ModelGraph } from "../../graph.ts";
import type { WidthRange } from "../../kernels.ts";
import type { ParamRecord } from "../../loop.ts";
import type { MethodState } from "../../method.ts";
import type { Tensor } from "../../tensor.ts";
import type { Assignment } from "./assign.ts";

/** Options of {@link fracBits}. */
export interface FracBitsOptions {
  /**
   * The cost target in the cost's native unit (GBitOPs per image, or MB
   * for `cost: "size"`). Give this or `targetRelativeGbops`.
   */
  readonly target?: number;
  /**
   * The target as relative GBOPs in percent (`100 BitOPs / (1024 sum
   * MACs)`), converted to GBitOPs; a value within 0.00005 of a uniform
   * width's percentage (e.g. 1.7312 for 4 bits) is that width's exact cost.
   * `cost: "bitops"` only.
   */
  readonly targetRelativeGbops?: number;
  /** The penalty's weight `kappa` (default 1, > 0). */
  readonly kappa?: number;
  /** `"layer"` (default): one weight width per layer; `"kernel"`: one per output channel. */
  readonly granularity?: "layer" | "kernel";
  /** The smallest width (default 1; 0, kernel-wise only, prunes kernels). */
  readonly minBits?: number;
  /** The largest width (default 8, at most 16). */
  readonly maxBits?: number;
  /** The initial fractional width of every learned width (default 7.5). */
  readonly initBits?: number;
  /** The initial PACT clip of conv and dense inputs (default 8 and 10). */
  readonly initClip?: { readonly conv?: number; readonly dense?: number };
  /**
   * `"fixed"` (default, the released code): clips start at `initClip`;
   * `"batch"`: at the largest input the layer sees on the first batch
   * (weights at their initial widths, inputs not yet quantized), as
   * Bayesian Bits starts its ranges. Used by `fracBitsMethod`'s `init` and
   * {@link clipsFromBatch}.
   */
  readonly clipInit?: "fixed" | "batch";
  /** `"bitops"` (default): expected BitOPs; `"size"`: weight megabytes, activations in float. */
  readonly cost?: "bitops" | "size";
  /**
   * `"learned"` (default, our LeNet protocol): every layer's weight width
   * is learned; `"code"`: the released code's convention, first layer and
   * classifier weights at 8 bits.
   */
  readonly convention?: "learned" | "code";
  /**
   * The constant weight rescale `1 / (sqrt(fanOut) std)`: `"all"` layers
   * (default: our protocol for models without batch norm), the
   * `"classifier"` only, or `"none"`.
   */
  readonly rescale?: "all" | "classifier" | "none";
  /** The epoch after which the widths are assigned and frozen (default 80). */
  readonly assignAfterEpoch?: number;
  /** Adam's learning rate for every parameter (default 1e-3). */
  readonly learningRate?: number;
}

/** The options with every default filled in and the target in native units. */
export interface ResolvedFracBitsOptions {
  /** Native target (GBitOPs or MB). */
  readonly target: number;
  /** Penalty weight. */
  readonly kappa: number;
  /** Weight width granularity. */
  readonly granularity: "layer" | "kernel";
  /** Smallest weight width. */
  readonly minBits: number;
  /** Largest width. */
  readonly maxBits: number;
  /** Initial width. */
  readonly initBits: number;
  /** Initial clips. */
  readonly initClip: { readonly conv: number; readonly dense: number };
  /** How the clips start. */
  readonly clipInit: "fixed" | "batch";
  /** The cost. */
  readonly cost: "bitops" | "size";
  /** The first/last layer convention. */
  readonly convention: "learned" | "code";
  /** Where the rescale applies. */
  readonly rescale: "all" | "classifier" | "none";
  /** Epoch of the hard assignment. */
  readonly assignAfterEpoch: number;
  /** Learning rate. */
  readonly learningRate: number;
}

/** The input quantizer of a layer. */
export interface FracInput {
  /** Its width parameter `[1]`. */
  readonly bits: string;
  /** Its fixed width after the assignment. */
  readonly fixedBits: string;
  /** Its clip parameter `[1]`. */
  readonly clip: string;
  /** The layer whose output it quantizes. */
  readonly producer: string;
  /** Its width range. */
  readonly range: WidthRange;
}

/** One conv/dense layer under FracBits. */
export interface FracLayer {
  /** The layer's name. */
  readonly name: string;
  /** Conv or dense. */
  readonly kind: "conv" | "dense";
  /** MACs per image. */
  readonly macs: number;
  /** Output channels (kernels). */
  readonly outChannels: number;
  /** Weight count. */
  readonly weightCount: number;
  /** The weight width parameter (`[1]` or `[outChannels]`). */
  readonly weightBits: string;
  /** The fixed weight widths after the assignment. */
  readonly fixedWeightBits: string;
  /** The weight widths' range (with the convention's floor). */
  readonly weightRange: WidthRange;
  /** The rescale's fan-out, or null without rescale. */
  readonly fanOut: number | null;
  /** The input quantizer, or null (network input, or a size run). */
  readonly input: FracInput | null;
  /** Input bits counted when the input is not learned (network input 8; float 32). */
  readonly inputConstantBits: number;
}

/** A model prepared for FracBits. */
export interface FracBitsModel {
  /** The graph that runs. */
  readonly model: ModelGraph;
  /** Resolved options. */
  readonly options: ResolvedFracBitsOptions;
  /** The conv/dense layers in execution order. */
  readonly layers: readonly FracLayer[];
  /** Bias count (the size cost counts them at 32 bits). */
  readonly biasCount: number;
  /** Sum of the layers' MACs. */
  readonly totalMacs: number;
}

/** A FracBits training state: parameters and the assignment once made. */
export interface FracBitsState extends MethodState {
  /** All parameters. */
  readonly params: ParamRecord;
  /** The hard assignment (JSON), or null before it. */
  readonly assignment: Assignment | null;
}

/** Bits of the network input as counted. */
export const INPUT_BITS = 8;

/** Throws unless `value` is a number passing `ok`. */
export function checkOption(
  what: string,
  value: unknown,
  ok: (v: number) => boolean,
  rule: string,
): number {
  if (typeof value !== "number" || !ok(value)) {
    throw new RangeError(
      `Invalid FracBits option ${what} ${String(value)}: it must be ${rule}`,
    );
  }
  return value;
}

function checkChoice<T extends string>(
  what: string,
  value: unknown,
  choices: readonly T[],
): T {
  if (!choices.includes(value as T)) {
    throw new RangeError(
      `Invalid FracBits option ${what} ${JSON.stringify(value)}: it must be ${
        choices.map((c) => JSON.stringify(c)).join(" or ")
      }`,
    );
  }
  return value as T;
}

const positive = (v: number) => Number.isFinite(v) && v > 0;
const POSITIVE = "a finite number > 0";

/** Resolves and checks the widths' options. */
function resolveWidths(
  options: FracBitsOptions,
): Pick<
  ResolvedFracBitsOptions,
  "granularity" | "minBits" | "maxBits" | "initBits"
> {
  const granularity = checkChoice(
    "granularity",
    options.granularity ?? "layer",
    ["layer", "kernel"],
  );
  const maxBits = checkOption(
    "maxBits",
    options.maxBits ?? 8,
    (v) => Number.isInteger(v) && v >= 1 && v <= 16,
    "an integer in 1..16",
  );
  const minBits = checkOption(
    "minBits",
    options.minBits ?? 1,
    (v) => Number.isInteger(v) && v >= 0 && v <= maxBits,
    `an integer in 0..maxBits (${maxBits})`,
  );
  if (minBits === 0 && granularity !== "kernel") {
    throw new RangeError(
      'Invalid FracBits option minBits 0: 0-bit widths prune kernels and need granularity "kernel"',
    );
  }
  const initBits = checkOption(
    "initBits",
    options.initBits ?? 7.5,
    (v) => Number.isFinite(v) && v >= minBits && v <= maxBits,
    `a number in [minBits, maxBits] = [${minBits}, ${maxBits}]`,
  );
  return { granularity, minBits, maxBits, initBits };
}

/** Resolves and checks everything but the target. */
function resolveShape(
  options: FracBitsOptions,
): Omit<ResolvedFracBitsOptions, "target"> {
  const clip = (kind: "conv" | "dense", fallback: number) =>
    checkOption(
      `initClip.${kind}`,
      options.initClip?.[kind] ?? fallback,
      positive,
      POSITIVE,
    );
  return {
    ...resolveWidths(options),
    kappa: checkOption("kappa", options.kappa ?? 1, positive, POSITIVE),
    initClip: { conv: clip("conv", 8), dense: clip("dense", 10) },
    clipInit: checkChoice("clipInit", options.clipInit ?? "fixed", [
      "fixed",
      "batch",
    ]),
    cost: checkChoice("cost", options.cost ?? "bitops", ["bitops", "size"]),
    convention: checkChoice("convention", options.convention ?? "learned", [
      "learned",
      "code",
    ]),
    rescale: checkChoice("rescale", options.rescale ?? "all", [
      "all",
      "classifier",
      "none",
    ]),
    assignAfterEpoch: checkOption(
      "assignAfterEpoch",
      options.assignAfterEpoch ?? 80,
      (v) => Number.isInteger(v) && v >= 1,
      "a positive integer",
    ),
    learningRate: checkOption(
      "learningRate",
      options.learningRate ?? 1e-3,
      positive,
      POSITIVE,
    ),
  };
}

/** The input quantizer of a layer, checking where its input comes from. */
function inputOf(
  graph: ModelGraph,
  name: string,
  range: WidthRange,
  taken: Set<string>,
): FracInput | null {
  const nodes = new Map(graph.nodes.map((n) => [n.name, n]));
  const node = nodes.get(name)!;
  if (!("input" in node)) return null;
  const producer = producerOf(nodes, node.input);
  if (producer === null) return null;
  const fail = (why: string): never => {
    throw new RangeError(
      `FracBits cannot quantize the input of layer "${name}": ${why}`,
    );
  };
  if (producer.op !== "conv" && producer.op !== "dense") {
    fail(
      `it comes from "${producer.name}" (${producer.op}), not from a conv/dense layer`,
    );
  }
  if (!("activation" in producer) || producer.activation !== "relu") {
    fail(`the unsigned PACT clip needs a ReLU after "${producer.name}"`);
  }
  if (taken.has(producer.name)) {
    fail(`the output of "${producer.name}" feeds more than one layer`);
  }
  taken.add(producer.name);
  return {
    bits: `${name}.input.bits`,
    fixedBits: `${name}.input.bits.fixed`,
    clip: `${name}.input.clip`,
    producer: producer.name,
    range: { min: Math.max(range.min, 1), max: range.max },
  };
}

/**
 * Prepares a model for FracBits: one weight width per layer (or kernel),
 * an input width and clip for every layer fed by a ReLU layer, ranges,
 * rescale and the target, all checked.
 *
 * @param model The float model.
 * @param options The method's knobs.
 * @returns The prepared model.
 * @throws {RangeError} On a bad option (naming it), a missing or
 *   unreachable target (at most the all-`maxBits` cost), or a layer whose
 *   input cannot be quantized (not fed by a ReLU conv/dense layer).
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { fracBits } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const fm = fracBits(lenet5(), { targetRelativeGbops: 1.7312 });
 * assert.equal(fm.options.target.toFixed(6), "0.075645");
 * assert.deepEqual(fm.layers.map((l) => l.input?.producer ?? null), [null, "conv1", "conv2", "fc1"]);
 * assert.throws(() => fracBits(lenet5(), { target: 1 }), /above the all-8-bit cost/);
 * ```
 */
export function fracBits(
  model: ModelGraph,
  options: FracBitsOptions = {},
): FracBitsModel {
  const shape = resolveShape(options);
  const info = analyzeGraph(model).layers;
  const taken = new Set<string>();
  const layers = info.map((l, i): FracLayer => {
    const fixed = shape.convention === "code" &&
      (i === 0 || i === info.length - 1);
    const range = fixed
      ? { min: Math.min(8, shape.maxBits), max: Math.min(8, shape.maxBits) }
      : { min: shape.minBits, max: shape.maxBits };
    const weightCount = l.weightShape.reduce((a, b) => a * b, 1);
    const rescaled = shape.rescale === "all" ||
      (shape.rescale === "classifier" && i === info.length - 1);
    const fanOut = l.kind === "conv"
      ? l.outChannels * l.weightShape[2] * l.weightShape[3]
      : l.outChannels;
    const input = shape.cost === "size" ? null : inputOf(model, l.name, {
      min: shape.minBits,
      max: shape.maxBits,
    }, taken);
    return {
      name: l.name,
      kind: l.kind,
      macs: l.macs,
      outChannels: l.outChannels,
      weightCount,
      weightBits: `${l.name}.weight.bits`,
      fixedWeightBits: `${l.name}.weight.bits.fixed`,
      weightRange: range,
      fanOut: rescaled ? fanOut : null,
      input,
      inputConstantBits: fedByNetwork(model, l.name) ? INPUT_BITS : 32,
    };
  });
  const partial = {
    model,
    layers,
    biasCount: info.reduce((s, l) => s + l.outChannels, 0),
    totalMacs: info.reduce((s, l) => s + l.macs, 0),
  };
  const target = resolveTarget(partial, shape, options);
  return { ...partial, options: { ...shape, target } };
}

/** Whether a layer reads the network input (through pools and flattens). */
function fedByNetwork(graph: ModelGraph, name: string): boolean {
  const nodes = new Map(graph.nodes.map((n) => [n.name, n]));
  const node = nodes.get(name)!;
  return "input" in node && producerOf(nodes, node.input) === null;
}

/** The native cost with every width at `bits` (clamped to each range). */
export function uniformCost(
  fm: Pick<FracBitsModel, "layers" | "biasCount">,
  cost: "bitops" | "size",
  bits: number,
): number {
  let total = cost === "size" ? 4e-6 * fm.biasCount : 0;
  for (const l of fm.layers) {
    const w = Math.min(Math.max(bits, l.weightRange.min), l.weightRange.max);
    if (cost === "size") {
      total += l.weightCount * w / 8e6;
      continue;
    }
    const a = l.input
      ? Math.min(Math.max(bits, l.input.range.min), l.input.range.max)
      : l.inputConstantBits;
    total += 1e-9 * l.macs * w * a;
  }
  return total;
}

function resolveTarget(
  fm: Pick<FracBitsModel, "layers" | "biasCount" | "totalMacs">,
  shape: Omit<ResolvedFracBitsOptions, "target">,
  options: FracBitsOptions,
): number {
  const { target, targetRelativeGbops: relative } = options;
  if ((target === undefined) === (relative === undefined)) {
    throw new RangeError(
      "FracBits needs exactly one of target (GBitOPs or MB) and targetRelativeGbops (percent)",
    );
  }
  let native: number;
  if (relative !== undefined) {
    checkOption(
      "targetRelativeGbops",
      relative,
      positive,
      "a finite number > 0",
    );
    if (shape.cost !== "bitops") {
      throw new RangeError(
        'Invalid FracBits option targetRelativeGbops: it needs cost "bitops"; give target in MB',
      );
    }
    native = relative / 100 * 1024 * fm.totalMacs * 1e-9;
    // A percentage printed to 4 decimals that names a uniform point (spec
    // section 11: 1.7312 % is uniform 4 bits) stands for that point's cost.
    for (let k = shape.minBits; k <= shape.maxBits; k++) {
      const cost = uniformCost(fm, "bitops", k);
      const percent = 100 * cost / (1024 * fm.totalMacs * 1e-9);
      if (Math.abs(percent - relative) <= 5e-5) native = cost;
    }
  } else {
    native = checkOption("target", target, positive, POSITIVE);
  }
  const top = uniformCost(fm, shape.cost, shape.maxBits);
  if (native > top * (1 + 1e-12)) {
    const unit = shape.cost === "size" ? "MB" : "GBitOPs";
    throw new RangeError(
      `FracBits target ${native} ${unit} is above the all-${shape.maxBits}-bit cost of the model (${top} ${unit}): no width can reach it`,
    );
  }
  return native;
}

/**
 * A run's label for tables: what is the paper's method and what is ours
 * (spec sections 6 and 7: 0-bit kernels and the learned first layer are
 * our options; `convention: "code"` is the released code's).
 *
 * @param fm The prepared model.
 * @returns E.g. `"FracBits, layer-wise"` or `"FracBits + 0-bit kernels (ours), kernel-wise"`.
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { fracBits, fracBitsLabel } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const fm = fracBits(lenet5(), { targetRelativeGbops: 1, convention: "code" });
 * assert.equal(fracBitsLabel(fm), "FracBits (released code's first/last layers at 8 bits), layer-wise");
 * ```
 */
export function fracBitsLabel(fm: FracBitsModel): string {
  const o = fm.options;
  const parts = [
    o.minBits === 0 ? "FracBits + 0-bit kernels (ours)" : "FracBits",
    o.convention === "code"
      ? " (released code's first/last layers at 8 bits)"
      : "",
    o.cost === "size" ? ", model size" : "",
    `, ${o.granularity}-wise`,
  ];
  return parts.join("");
}

/** A parameter of the state, or a clear error. */
export function stateParam(params: ParamRecord, name: string): Tensor {
  const t = params[name];
  if (!t) {
    throw new RangeError(
      `The FracBits state lacks "${name}": initialise it with initFracBits`,
    );
  }
  return t;
}

/**
 * The optimizer group of a parameter: `"widths"` (fractional widths),
 * `"clips"` (PACT clips), `"fixed"` (assigned widths; learned by no
 * group), `"weights"` (the rest).
 *
 * @param name The parameter.
 * @returns Its group.
 */
export function parameterGroup(name: string): string {
  if (name.endsWith(".bits.fixed")) return "fixed";
  if (name.endsWith(".bits")) return "widths";
  if (name.endsWith(".input.clip")) return "clips";
  return "weights";
}

/**
 * The initial state: the float parameters (copied, not changed) plus every
 * width at `initBits` and every clip at its initial value, on the float
 * parameters' device.
 *
 * @param fm The prepared model.
 * @param float The float model's state.
 * @returns The state (no assignment yet).
 * @throws {RangeError} When a layer's weight or bias is missing.
 */
export function initFracBits(
  fm: FracBitsModel,
  float: MethodState,
): FracBitsState {
  const params: Record<string, Tensor> = { ...float.params };
  for (const l of fm.layers) {
    for (const p of [`${l.name}.weight`, `${l.name}.bias`]) {
      stateParam(params, p);
    }
  }
  const dev = Object.values(float.params)[0].device;
  const o = fm.options;
  for (const l of fm.layers) {
    const n = o.granularity === "kernel" ? l.outChannels : 1;
    params[l.weightBits] = dev.upload(new Float32Array(n).fill(o.initBits), [
      n,
    ]);
    if (l.input) {
      params[l.input.bits] = dev.upload([o.initBits], [1]);
      params[l.input.clip] = dev.upload([o.initClip[l.kind]], [1]);
    }
  }
  return { params, stats: float.stats, assignment: null };
}
