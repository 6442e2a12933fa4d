/**
 * What a gated model costs and what it learned, under deterministic gates:
 * BOPs per layer ({@link gatedBops}, spec section 4), the summed prior
 * ({@link priorSum}) and the report ({@link gatedReport}). The logits are
 * read on the host (reference and WASM devices).
 *
 * @module
 */

import { planBops, type PlanCost, type PlanLayerCost } from "../../frozen.ts";
import { prior } from "../../reference/prior.ts";
import {
  frozenReport,
  type QuantizationReport,
  type ReportFacts,
} from "../../report.ts";
import {
  type GatedModel,
  type GatedParams,
  type GatedState,
  plainLogits,
} from "./model.ts";
import { gatedPlan } from "./method.ts";

/**
 * The report of a Bayesian Bits run: since report schema version 2 every
 * method's report has one type.
 *
 * @deprecated Use `QuantizationReport`.
 */
export type BayesianBitsReport = QuantizationReport;

/** Per-layer cost of a gated model under deterministic gates. */
export type GatedLayerCost = PlanLayerCost;

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
 * import { bayesianBits, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import { gatedBops } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(784).map((_, i) => (i % 5) / 5), [1, 1, 28, 28]);
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * assert.equal(gatedBops(gated, state.params).relativeGbops.toFixed(2), "6.25");
 * ```
 */
export function gatedBops(
  gated: GatedModel,
  params: GatedParams,
): PlanCost {
  return planBops(gated.model, gatedPlan(gated, { params, signed: {} }));
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
 * import { bayesianBits, lenet5, Tensor } from "@bbits/core";
 * import { priorSum } from "@bbits/core/bayesian-bits";
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
 * The report of a gated model (spec section 8) under its deterministic
 * gates: the generic report of its plan (`frozenReport`) with `mu` as the
 * method's option: test accuracy, relative GBOPs, per-layer bits, kept
 * channels, GBOPs and gate probabilities.
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
 * const report = gatedReport(gated, await initGated(gated, initGraph(lenet5(), randomKey(0)), x), {
 *   testAccuracy: 0.1,
 * });
 * assert.equal(report.method, "bayesian-bits");
 * assert.deepEqual(report.methodOptions, { mu: 0.01 });
 * assert.equal(report.layers[0].weightBits, 8);
 * assert.equal(report.layers[3].activationBits, null); // the logits
 * ```
 */
export function gatedReport(
  gated: GatedModel,
  state: GatedState,
  facts: Omit<ReportFacts, "methodOptions">,
): QuantizationReport {
  return frozenReport(
    { model: gated.model, plan: gatedPlan(gated, state) },
    { ...facts, methodOptions: { mu: gated.options.mu } },
  );
}
