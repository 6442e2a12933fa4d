/**
 * The method seam: what a quantization method (Bayesian Bits, float
 * training as the identity method, and the methods to come) supplies to the
 * one training loop, and what it leaves behind when it is frozen.
 *
 * A method attaches to a model graph (`attach`), initialises its parameters
 * from a float model and a first batch (`init`), transforms weights and
 * activations while the graph runs (`hooks`), may add a penalty to the loss
 * (`penalty`), sorts its parameters into optimizer groups (`group`), and
 * finally freezes into a {@link Frozen} model: parameters on their grids and
 * a {@link QuantizationPlan}. Everything after `freeze` (evaluation, BOPs,
 * reports, export) reads the plan and never asks which method ran.
 *
 * @module
 */

import type { Dataset } from "./data.ts";
import type { ModelGraph, RunOptions } from "./graph.ts";
import type { ParamRecord } from "./loop.ts";
import type { BatchNormStats } from "./ops/batchnorm.ts";
import type { Optimizer } from "./optim.ts";
import type { RandomKey } from "./rng.ts";
import type { Tensor } from "./tensor.ts";

/** Batch-norm running statistics by layer name. */
export type StatsRecord = Readonly<Record<string, BatchNormStats>>;

/** What every method's state holds: parameters and batch-norm statistics. */
export interface MethodState {
  /** All parameters, on one device. */
  readonly params: ParamRecord;
  /** Running batch-norm statistics (absent when the graph has none). */
  readonly stats?: StatsRecord;
}

/** What a method sees of the step it shapes. */
export interface StepContext {
  /** The step's random key; `null` for deterministic runs (evaluation). */
  readonly key: RandomKey | null;
  /** The parameter groups this run learns. */
  readonly trainable: ReadonlySet<string>;
}

/** A term added to the loss, and the `[1]` values to report beside it. */
export interface Penalty {
  /** Added to the cross-entropy. */
  readonly value: Tensor;
  /** Reported per step (e.g. the prior without its weight). */
  readonly metrics: Readonly<Record<string, Tensor>>;
}

/**
 * Bayesian Bits' grid (spec section 1): 2, 4, 8, 16 or 32 bits on
 * `[-xmax, xmax]` (signed, `2^b - 1` levels) or `[0, xmax]` (unsigned,
 * `2^b` levels), values computed by the residual decomposition.
 */
export interface ResidualGrid {
  /** The grid's kind. */
  readonly kind: "residual";
  /** Bit width: 2, 4, 8, 16 or 32. */
  readonly bits: number;
  /** Signed grid on `[-xmax, xmax]`, or unsigned on `[0, xmax]`. */
  readonly signed: boolean;
  /** The range. */
  readonly xmax: number;
}

/** One output channel of a per-channel {@link UniformGrid}. */
export interface ChannelGrid {
  /** The width BOPs count; 0 for a pruned channel (absent from `keptChannels`). */
  readonly bits: number;
  /** The step between levels. */
  readonly scale: number;
  /** The lowest integer code. */
  readonly codeMin: number;
  /** The highest integer code. */
  readonly codeMax: number;
}

/**
 * A uniform integer grid: `value = scale * code` for an integer `code` in
 * `[codeMin, codeMax]`; quantizing `x` is `scale * clamp(round(x / scale),
 * codeMin, codeMax)` in float32, ties to even. `bits` is the width BOPs
 * count (any integer 1..32), independent of the bits the codes need in
 * storage (a DoReFa `k`-bit weight has odd codes in `[-(2^k - 1), 2^k - 1]`
 * and counts `k`).
 */
export interface UniformGrid {
  /** The grid's kind. */
  readonly kind: "uniform";
  /** The width BOPs count (per-channel grids: the widest kept channel). */
  readonly bits: number;
  /** The step between levels (per-tensor grids). */
  readonly scale: number;
  /** The lowest integer code. */
  readonly codeMin: number;
  /** The highest integer code. */
  readonly codeMax: number;
  /** Per output channel (weights only, e.g. kernel-wise widths), or `null`. */
  readonly channels: readonly ChannelGrid[] | null;
}

/** One quantized tensor of a frozen model: a grid of either kind. */
export type GridPlan = ResidualGrid | UniformGrid;

/** One conv/dense layer of a frozen model. */
export interface LayerPlan {
  /** The layer's name. */
  readonly name: string;
  /** The weights' grid, or `null` for full precision. */
  readonly weight: GridPlan | null;
  /** Output channels kept, in order (all of them when nothing is pruned). */
  readonly keptChannels: readonly number[];
  /** The output activation's grid, or `null` when it is not quantized. */
  readonly activation: GridPlan | null;
  /** Method details that ride along for reports (e.g. gate probabilities). */
  readonly details: Readonly<Record<string, unknown>>;
}

/** What a frozen model computes with: per layer, grids and kept channels. */
export interface QuantizationPlan {
  /** The method that produced it (for reports and file metadata only). */
  readonly method: string;
  /** Bits of the network input as BOPs count them. */
  readonly inputBits: number;
  /** The conv/dense layers in execution order. */
  readonly layers: readonly LayerPlan[];
}

/** A model after training: parameters on their grids and the plan. */
export interface Frozen {
  /** The graph that runs (e.g. with batch norm folded). */
  readonly model: ModelGraph;
  /** Parameters: weights already on their grids, pruned channels zero. */
  readonly params: ParamRecord;
  /** Batch-norm running statistics, if the graph has batch norm. */
  readonly stats?: StatsRecord;
  /** The plan: grids and kept channels. */
  readonly plan: QuantizationPlan;
}

/** Learning rates and epochs a method's optimizer is built for. */
export interface OptimizerPlan {
  /** Epochs of the run. */
  readonly epochs: number;
  /** Steps per epoch. */
  readonly steps: number;
}

/**
 * A quantization method. `Q` is what `attach` derives from the model (e.g.
 * the quantizers and their MAC ratios), `S` its training state.
 */
export interface QuantizationMethod<Q, S extends MethodState> {
  /** The method's name, e.g. `"bayesian-bits"` or `"float"`. */
  readonly name: string;
  /** Its parameter groups, e.g. `["weights", "logits", "ranges"]`. */
  readonly groups: readonly string[];
  /**
   * Whether it draws randomness every step (e.g. gate noise): the run's key
   * is then split into a shuffling key and a per-step key.
   */
  readonly stochastic: boolean;
  /** Names and averaging of the metrics its penalty and `measure` report. */
  readonly metrics: Readonly<Record<string, "samples" | "steps">>;
  /** Derives the method's view of a model. */
  attach(model: ModelGraph): Q;
  /** The graph that is trained and run (e.g. batch norm folded). */
  model(q: Q): ModelGraph;
  /** Initial state from float parameters and a first batch. */
  init(q: Q, float: MethodState, firstBatch: Tensor): Promise<S>;
  /** The state with new parameters and statistics. */
  withParams(q: Q, state: S, params: ParamRecord, stats: StatsRecord): S;
  /** The optimizer group of a parameter. */
  group(q: Q, name: string): string;
  /** The optimizer of a run (one per group, with the method's schedules). */
  optimizer(q: Q, plan: OptimizerPlan): Optimizer;
  /** Weight and activation transforms for one run of the graph. */
  hooks(q: Q, state: S, context: StepContext): RunOptions;
  /** A term added to the loss, or `null`. */
  penalty(q: Q, state: S, context: StepContext): Penalty | null;
  /**
   * Host values for progress and history (e.g. relative GBOPs); with
   * `names`, only those (the loop asks for the metrics a step's loss did not
   * report).
   */
  measure(
    q: Q,
    state: S,
    names?: ReadonlySet<string>,
  ): Readonly<Record<string, number>>;
  /**
   * Called after each epoch's training steps, before its evaluation (e.g. a
   * re-quantization, a hard assignment), with the 1-based epoch of the run;
   * the state it returns continues the run. Default: nothing.
   */
  afterEpoch?(q: Q, state: S, epoch: number): S;
  /** The trained model on its grids, and its plan. */
  freeze(q: Q, state: S): Frozen;
}

/** A dataset pair for training. */
export interface TrainData {
  /** Training set. */
  readonly train: Dataset;
  /** Test set (evaluated after every epoch). */
  readonly test: Dataset;
}
