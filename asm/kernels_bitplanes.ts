/**
 * The bit-plane kernels (BSQ) on the WASM device: for now the reference
 * device's TypeScript on zero-copy views of the memory (`onReference`), so
 * they match the reference bit for bit; an AssemblyScript version is future
 * work (they are elementwise or one reduction each, and small next to the
 * convolutions they feed).
 *
 * @module
 */

import type { Kernels } from "../core/kernels.ts";
import type { Tensor } from "../core/tensor.ts";

/** Runs a reference kernel on views of the device's tensors. */
export type OnReference = <T>(
  body: (view: (t: Tensor) => Tensor, r: Kernels) => T,
) => T;

/**
 * The bit-plane kernels of a WASM device.
 *
 * @param ref Runs a reference kernel on views (see `asm/reference_views.ts`).
 * @returns The kernels.
 */
export function bitPlaneKernels(
  ref: OnReference,
): Pick<
  Kernels,
  | "bitPlaneSum"
  | "bitPlaneSumBackward"
  | "unitQuantize"
  | "unitQuantizeBackward"
  | "bitGroupLasso"
  | "bitGroupLassoBackward"
  | "maxAbsQuantize"
  | "clip"
> {
  return {
    bitPlaneSum: (pos, neg) => ref((v, r) => r.bitPlaneSum(v(pos), v(neg))),
    bitPlaneSumBackward: (dy, planes) =>
      ref((v, r) => r.bitPlaneSumBackward(v(dy), planes)),
    unitQuantize: (x, scale, levels) =>
      ref((v, r) => r.unitQuantize(v(x), v(scale), levels)),
    unitQuantizeBackward: (x, scale, levels, dy) =>
      ref((v, r) => r.unitQuantizeBackward(v(x), v(scale), levels, v(dy))),
    bitGroupLasso: (pos, neg, weight) =>
      ref((v, r) => r.bitGroupLasso(v(pos), v(neg), weight)),
    bitGroupLassoBackward: (pos, neg, weight, dr) =>
      ref((v, r) => r.bitGroupLassoBackward(v(pos), v(neg), weight, v(dr))),
    maxAbsQuantize: (x, levels) =>
      ref((v, r) => r.maxAbsQuantize(v(x), levels)),
    clip: (x, lo, hi) => ref((v, r) => r.clip(v(x), lo, hi)),
  };
}
