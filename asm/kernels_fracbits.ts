/**
 * FracBits' kernels on the WASM device (spec `fracbits.md` sections 2 to
 * 4): for now each runs the reference device's TypeScript on zero-copy
 * views of the WASM memory (`onReference`), so it matches the reference bit
 * for bit; no AssemblyScript version yet.
 *
 * @module
 */

import type { Kernels } from "../core/kernels.ts";
import type { Tensor } from "../core/tensor.ts";
import type { WasmDevice } from "./device.ts";
import { onReference } from "./reference_views.ts";

/** The FracBits kernels of `dev`. */
export type FracBitsKernelName =
  | "fracWeightQuantize"
  | "fracWeightQuantizeBackward"
  | "pactQuantize"
  | "pactQuantizeBackward"
  | "widthCost"
  | "widthCostBackward"
  | "targetPenalty"
  | "targetPenaltyBackward";

/**
 * The FracBits kernels of the WASM device.
 *
 * @param dev The WASM device.
 * @returns The kernels, each the reference kernel on views of `dev`.
 */
export function fracBitsKernels(
  dev: WasmDevice,
): Pick<Kernels, FracBitsKernelName> {
  const ref = <T>(body: (view: (t: Tensor) => Tensor, r: Kernels) => T) =>
    onReference(dev, body);
  const orNull = (view: (t: Tensor) => Tensor, t: Tensor | null) =>
    t ? view(t) : null;
  return {
    fracWeightQuantize: (w, bits, options) =>
      ref((v, r) => r.fracWeightQuantize(v(w), v(bits), options)),
    fracWeightQuantizeBackward: (w, bits, options, dy) =>
      ref((v, r) =>
        r.fracWeightQuantizeBackward(v(w), v(bits), options, v(dy))
      ),
    pactQuantize: (x, clip, bits, options) =>
      ref((v, r) => r.pactQuantize(v(x), v(clip), v(bits), options)),
    pactQuantizeBackward: (x, clip, bits, options, dy) =>
      ref((v, r) =>
        r.pactQuantizeBackward(v(x), v(clip), v(bits), options, v(dy))
      ),
    widthCost: (weightBits, inputBits, options) =>
      ref((v, r) => r.widthCost(v(weightBits), orNull(v, inputBits), options)),
    widthCostBackward: (weightBits, inputBits, options, dcost) =>
      ref((v, r) =>
        r.widthCostBackward(
          v(weightBits),
          orNull(v, inputBits),
          options,
          v(dcost),
        )
      ),
    targetPenalty: (cost, target, kappa) =>
      ref((v, r) => r.targetPenalty(v(cost), target, kappa)),
    targetPenaltyBackward: (cost, target, kappa, dpenalty) =>
      ref((v, r) =>
        r.targetPenaltyBackward(v(cost), target, kappa, v(dpenalty))
      ),
  };
}
