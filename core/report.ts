/**
 * The report of a run, whichever method produced it: what bit width every
 * layer's weights and output activation ended up with, which output
 * channels were kept, what the network costs in bit operations, and how
 * accuracy and cost moved epoch by epoch.
 *
 * A {@link QuantizationReport} is plain data (JSON-serialisable, versioned
 * by {@link REPORT_SCHEMA}), built from a frozen model's plan by
 * {@link frozenReport}: the per-layer bits and channels are the plan's, the
 * BOPs are `planBops`'s, and method details the plan carries (gate
 * probabilities) are shown when present. `io/report.ts` renders a report
 * (terminal table, Markdown) and writes and reads its JSON.
 *
 * @module
 */

import { planBops } from "./plan_bops.ts";
import type { EpochStats } from "./loop.ts";
import type { Frozen, LayerPlan } from "./method.ts";

/** The schema identifier of {@link QuantizationReport} JSON. */
export const REPORT_SCHEMA = "bbits.report/2";

/**
 * The schema of version 0.1.0's reports: Bayesian Bits only, `mu` at the
 * top, the prior a named history field. `parseReport` reads them as
 * {@link REPORT_SCHEMA} reports.
 */
export const REPORT_SCHEMA_V1 = "bbits.report/1";

/** A value of a report's free-form records (`run`, `methodOptions`). */
export type ReportValue = string | number | boolean | null;

/** Probabilities `q(g) = P(z > 0)` of one quantizer's gates being on. */
export interface GateProbabilities {
  /** `[q4, q8, q16, q32]`. */
  readonly chain: readonly [number, number, number, number];
  /**
   * Pruning gates: `q2` per output channel, or `null` for a quantizer
   * without pruning gates.
   */
  readonly prune: readonly number[] | null;
}

/** One conv/dense layer of the report. */
export interface LayerReport {
  /** Layer name (graph node name). */
  readonly name: string;
  /** `"conv"` or `"dense"`. */
  readonly kind: "conv" | "dense";
  /** Multiply-accumulates per sample. */
  readonly macs: number;
  /**
   * Bit width of the kept output channels' weights: 2, 4, 8, 16 or 32 (32
   * also for a layer left in full precision, see `weightQuantized`).
   */
  readonly weightBits: number;
  /** Whether the weights are on a grid (false: full precision). */
  readonly weightQuantized: boolean;
  /**
   * Bit width of the layer's output activation: 2, 4, 8, 16 or 32; `null`
   * when the output is not quantized (the logits, or a full-precision
   * layer).
   */
  readonly activationBits: number | null;
  /** Bit width of the layer's input as counted for BOPs (the plan's input bits for the network input). */
  readonly inputBits: number;
  /** Output channels kept. */
  readonly keptChannels: number;
  /** Output channels in total. */
  readonly totalChannels: number;
  /** Fraction of the input channels kept by the layer that produces the input. */
  readonly keptInputFraction: number;
  /** Giga bit operations per sample of this layer (spec section 4). */
  readonly gbops: number;
  /**
   * Gate probabilities of the weight quantizer (`null`: no quantizer);
   * absent for a method without gates.
   */
  readonly weightGates?: GateProbabilities | null;
  /**
   * Gate probabilities of the activation quantizer (`null`: no quantizer);
   * absent for a method without gates.
   */
  readonly activationGates?: GateProbabilities | null;
}

/** What a plan costs in the conventions beside Bayesian Bits' (see `planBops`). */
export interface ReportCosts {
  /** Relative GBOPs in percent as `MACs * bw * ba` (no input-channel discount). */
  readonly macsBitsRelativeGbops: number;
  /** Relative GBOPs in percent with every width rounded up to 2, 4, 8, 16 or 32. */
  readonly executableRelativeGbops: number;
  /** Bytes of the kept weights at their widths. */
  readonly weightBytes: number;
  /** Bytes of every weight in float32. */
  readonly floatWeightBytes: number;
}

/** One epoch of a run's history. */
export interface HistoryEntry {
  /** 1-based epoch (counted over the whole run, phases included). */
  readonly epoch: number;
  /** The run's phase, e.g. `"bayesian-bits"`, `"fixed-gates"` or `"train"`. */
  readonly phase: string;
  /** Mean training loss (cross-entropy plus the method's penalty). */
  readonly loss: number;
  /** Mean training cross-entropy. */
  readonly crossEntropy: number;
  /**
   * The method's own epoch means by name, e.g. Bayesian Bits' `prior` (the
   * summed prior without mu, averaged over the steps); empty for float.
   */
  readonly metrics: Readonly<Record<string, number>>;
  /** Test accuracy in [0, 1] of the frozen model. */
  readonly testAccuracy: number;
  /** Relative GBOPs in percent of the frozen model. */
  readonly relativeGbops: number;
  /** Wall time of the epoch's training steps, in seconds. */
  readonly seconds: number;
  /** Training samples per second. */
  readonly samplesPerSecond: number;
}

/** The report of a run (or of a model at one point of a run). */
export interface QuantizationReport {
  /** Always {@link REPORT_SCHEMA}. */
  readonly schema: typeof REPORT_SCHEMA;
  /** Model name. */
  readonly model: string;
  /** The method that produced the model (the plan's), e.g. `"bayesian-bits"`. */
  readonly method: string;
  /** The method's options worth reporting, e.g. `{ mu: 0.01 }`. */
  readonly methodOptions: Readonly<Record<string, ReportValue>>;
  /** Test accuracy in [0, 1] of the frozen model. */
  readonly testAccuracy: number;
  /** Relative GBOPs in percent: `100 * sum BOPs / (sum MACs * 32 * 32)`. */
  readonly relativeGbops: number;
  /** GBOPs per sample of the whole network. */
  readonly gbops: number;
  /** GBOPs per sample of the all-32-bit baseline. */
  readonly baselineGbops: number;
  /**
   * The cost in the other conventions (absent in reports written before
   * they were counted).
   */
  readonly costs?: ReportCosts;
  /** Per-layer details in execution order. */
  readonly layers: readonly LayerReport[];
  /** Per-epoch history (empty for a model that was not trained here). */
  readonly history: readonly HistoryEntry[];
  /** Free-form run description (command, options, seed, wall time...). */
  readonly run: Readonly<Record<string, ReportValue>>;
}

/** What a report states beside the plan: measured by the caller. */
export interface ReportFacts {
  /** Test accuracy in [0, 1] (e.g. the last epoch's, or `evaluateFrozen`'s). */
  readonly testAccuracy: number;
  /** Per-epoch history (default: none). */
  readonly history?: readonly HistoryEntry[];
  /** The method's options worth reporting (default: none). */
  readonly methodOptions?: Readonly<Record<string, ReportValue>>;
  /** Free-form run description (default: none). */
  readonly run?: Readonly<Record<string, ReportValue>>;
}

/** A detail that should be gate probabilities, checked. */
function gatesOf(
  layer: string,
  key: string,
  value: unknown,
): GateProbabilities | null {
  if (value === null) return null;
  const g = value as Partial<GateProbabilities> | undefined;
  const numbers = (a: unknown) =>
    Array.isArray(a) && a.every((p) => typeof p === "number");
  if (
    !g || !numbers(g.chain) || g.chain!.length !== 4 ||
    !(g.prune === null || numbers(g.prune))
  ) {
    throw new TypeError(
      `The plan's ${key} of layer "${layer}" must be null or { chain: [q4, q8, q16, q32], prune: number[] | null }`,
    );
  }
  const [q4, q8, q16, q32] = g.chain!;
  return { chain: [q4, q8, q16, q32], prune: g.prune ? [...g.prune] : null };
}

/** The gate fields of a layer's report: only those its plan details carry. */
function gateFields(
  plan: LayerPlan | undefined,
): Pick<LayerReport, "weightGates" | "activationGates"> {
  const fields: {
    weightGates?: GateProbabilities | null;
    activationGates?: GateProbabilities | null;
  } = {};
  if (!plan) return fields;
  for (const key of ["weightGates", "activationGates"] as const) {
    if (key in plan.details) {
      fields[key] = gatesOf(plan.name, key, plan.details[key]);
    }
  }
  return fields;
}

/**
 * The report of a frozen model (spec section 8): per layer the plan's bits
 * and kept channels, BOPs as `planBops` counts them, and the gate
 * probabilities when the plan's details carry them (`weightGates`,
 * `activationGates`); the method is the plan's.
 *
 * @param frozen The frozen model (only its graph and plan are read).
 * @param facts Test accuracy, history, the method's options and a
 *   free-form run description.
 * @returns The report (render it with `formatReportTable`, `reportToJson`,
 *   `formatReportMarkdown`).
 * @throws {TypeError} On gate details of the wrong shape.
 *
 * @example A float LeNet-5: 100 % of its own cost, no gates
 * ```ts
 * import { floatMethod, frozenReport, initGraph, lenet5, randomKey } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const method = floatMethod();
 * const model = method.attach(lenet5());
 * const frozen = method.freeze(model, initGraph(lenet5(), randomKey(0)));
 * const report = frozenReport(frozen, { testAccuracy: 0.1 });
 * assert.equal(report.method, "float");
 * assert.equal(report.relativeGbops, 100);
 * assert.equal(report.layers[0].weightQuantized, false);
 * assert.equal("weightGates" in report.layers[0], false);
 * ```
 */
export function frozenReport(
  frozen: Pick<Frozen, "model" | "plan">,
  facts: ReportFacts,
): QuantizationReport {
  const cost = planBops(frozen.model, frozen.plan);
  const planOf = new Map(frozen.plan.layers.map((l) => [l.name, l]));
  const layers: LayerReport[] = cost.layers.map((c) => {
    const plan = planOf.get(c.layer.name);
    return {
      name: c.layer.name,
      kind: c.layer.kind,
      macs: c.layer.macs,
      weightBits: c.weightBits,
      weightQuantized: (plan?.weight ?? null) !== null,
      activationBits: c.activationBits,
      inputBits: c.inputBits,
      keptChannels: c.keptChannels,
      totalChannels: c.layer.outChannels,
      keptInputFraction: c.keptInputFraction,
      gbops: c.bops / 1e9,
      ...gateFields(plan),
    };
  });
  return {
    schema: REPORT_SCHEMA,
    model: frozen.model.name,
    method: frozen.plan.method,
    methodOptions: { ...(facts.methodOptions ?? {}) },
    testAccuracy: facts.testAccuracy,
    relativeGbops: cost.relativeGbops,
    gbops: cost.bops / 1e9,
    baselineGbops: cost.baselineBops / 1e9,
    costs: {
      macsBitsRelativeGbops: cost.macsBitsRelativeGbops,
      executableRelativeGbops: cost.executableRelativeGbops,
      weightBytes: cost.weightBytes,
      floatWeightBytes: cost.floatWeightBytes,
    },
    layers,
    history: [...(facts.history ?? [])],
    run: { ...(facts.run ?? {}) },
  };
}

/**
 * One epoch of the training loop as a history entry: the cross-entropy
 * named, the method's other metrics in `metrics`, relative GBOPs from the
 * method's measures unless given.
 *
 * @param phase The run's phase.
 * @param stats The loop's record of the epoch.
 * @param relativeGbops Relative GBOPs in percent (default: what the
 *   method measured, `stats.measured.relativeGbops`).
 * @returns The entry.
 * @throws {RangeError} When neither gives relative GBOPs (e.g. a float run:
 *   pass `planBops(...).relativeGbops` of its frozen plan).
 *
 * @example
 * ```ts
 * import { historyEntry } from "@bbits/core/report";
 * import assert from "node:assert/strict";
 *
 * const entry = historyEntry("train", {
 *   epoch: 1, loss: 0.5, metrics: { crossEntropy: 0.4, prior: 10 }, testAccuracy: 0.9,
 *   measured: { relativeGbops: 6.25 }, seconds: 2, samplesPerSecond: 500,
 * });
 * assert.deepEqual(entry.metrics, { prior: 10 });
 * assert.equal(entry.crossEntropy, 0.4);
 * ```
 */
export function historyEntry(
  phase: string,
  stats: EpochStats,
  relativeGbops: number | undefined = stats.measured.relativeGbops,
): HistoryEntry {
  if (relativeGbops === undefined) {
    throw new RangeError(
      `Epoch ${stats.epoch} of "${phase}" has no relative GBOPs: the method does not measure them, pass them`,
    );
  }
  const { crossEntropy, ...metrics } = stats.metrics;
  return {
    epoch: stats.epoch,
    phase,
    loss: stats.loss,
    crossEntropy,
    metrics,
    testAccuracy: stats.testAccuracy,
    relativeGbops,
    seconds: stats.seconds,
    samplesPerSecond: stats.samplesPerSecond,
  };
}
