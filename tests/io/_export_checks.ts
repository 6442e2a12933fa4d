/** Checks of exported models shared by the export tests. */

import assert from "node:assert/strict";
import type { QuantizedModel } from "../../core/export_format.ts";
import { dequantizeParams } from "../../core/export.ts";
import type {
  GatedModel,
  GatedState,
} from "../../core/methods/bayesian_bits/model.ts";
import { gatesOp, quantizerOp } from "../../core/methods/bayesian_bits/ops.ts";

/**
 * Dequantized weights are evaluation's quantized weights (within float32
 * rounding of the level sums), pruned rows 0.
 */
export function assertDequantizedAsEvaluated(
  gated: GatedModel,
  state: GatedState,
  model: QuantizedModel,
): void {
  const params = dequantizeParams(model);
  for (const q of gated.quantizers.filter((q) => q.kind === "weight")) {
    const expected = quantizerOp(
      state.params[`${q.layer}.weight`],
      state.params[q.xmaxParam],
      gatesOp(
        q.pruneParam
          ? {
            chain: state.params[q.logitsParam],
            g2: state.params[q.pruneParam],
          }
          : { chain: state.params[q.logitsParam] },
        null,
      ),
      { signed: state.signed[q.name] },
    ).toFloat32Array();
    const got = params[`${q.layer}.weight`].toFloat32Array();
    const xmax = state.params[q.xmaxParam].get(0);
    let worst = 0;
    for (let i = 0; i < got.length; i++) {
      worst = Math.max(worst, Math.abs(got[i] - expected[i]));
    }
    assert.ok(worst <= 4 * 2 ** -23 * xmax, `${q.layer}: ${worst}`);
  }
}
