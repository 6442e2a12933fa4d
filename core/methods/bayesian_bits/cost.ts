/**
 * What a gated model costs and what it learned, under deterministic gates:
 * BOPs per layer ({@link gatedBops}, spec section 4), the summed prior
 * ({@link priorSum}) and the report ({@link gatedReport}). The logits are
 * read on the host (reference and WASM devices).
 *
 * @module
 */

import { planBops, type PlanCost, type PlanLayerCost } from "../../frozen.ts";
import { gateProbability } from "../../reference/gates.ts";
import { prior } from "../../reference/prior.ts";
import {
  type BayesianBitsReport,
  type GateProbabilities,
  type HistoryEntry,
  type LayerReport,
  REPORT_SCHEMA,
} from "../../report.ts";
import {
  type GatedModel,
  type GatedParams,
  type GatedState,
  plainLogits,
  type QuantizerInfo,
} from "./model.ts";
import { gatedPlan } from "./method.ts";

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
 * import { bayesianBits, gatedBops, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
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
 * const report = gatedReport(gated, await initGated(gated, initGraph(lenet5(), randomKey(0)), x), {
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
