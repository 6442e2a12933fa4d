/**
 * FracBits' pieces as differentiable ops on the device of their inputs
 * (spec `fracbits.md` sections 2 to 4): the blended DoReFa weights
 * ({@link fracWeightOp}), the blended PACT activations ({@link pactOp}), a
 * layer's expected cost ({@link widthCostOp}) and the penalty
 * `kappa |cost - target|` ({@link targetPenaltyOp}).
 *
 * @module
 */

import { recordOp } from "../../autodiff.ts";
import type {
  FracActivationOptions,
  FracWeightOptions,
  WidthCostOptions,
} from "../../kernels.ts";
import { hostF32, type Tensor } from "../../tensor.ts";

function label(name: string | undefined): string {
  return name === undefined ? "tensor" : `"${name}"`;
}

/**
 * The blended DoReFa weights as an op of the weights and their widths.
 *
 * @param w The float weights `[O, ...]`.
 * @param bits `[1]` (layer-wise) or `[O]` (kernel-wise) fractional widths.
 * @param options Width range and rescale.
 * @param name The parameter, for errors.
 * @returns The quantized weights, shaped like `w`.
 * @throws {RangeError} When `bits` is neither one width nor one per channel.
 *
 * @example Integer width 2 is the plain 2-bit quantizer
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { fracWeightOp } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const w = fracWeightOp(Tensor.from([0, 0.5, -1, 2]), Tensor.from([2]), {
 *   minBits: 1, maxBits: 8, fanOut: null,
 * });
 * assert.deepEqual([...w.toFloat32Array()], [1 / 3, 1 / 3, -1, 1].map(Math.fround));
 * ```
 */
export function fracWeightOp(
  w: Tensor,
  bits: Tensor,
  options: FracWeightOptions,
  name?: string,
): Tensor {
  const channels = w.shape.length === 0 ? 1 : w.shape[0];
  if (bits.size !== 1 && bits.size !== channels) {
    throw new RangeError(
      `Cannot quantize ${
        label(name)
      }: ${bits.size} widths for ${channels} output channels (give 1 or ${channels})`,
    );
  }
  const k = w.device.kernels;
  return recordOp(k.fracWeightQuantize(w, bits, options), [w, bits], (g) => {
    const r = k.fracWeightQuantizeBackward(w, bits, options, g);
    return [r.dw, r.dbits];
  });
}

/** On devices whose memory the host sees, checks the clip is finite and not 0. */
function checkClip(clip: Tensor, name: string | undefined): void {
  if (clip.device.kind === "webgpu") return;
  const v = hostF32(clip)[0];
  if (!(Number.isFinite(v) && v !== 0)) {
    throw new RangeError(
      `Cannot quantize ${
        label(name)
      }: the clip must be finite and not 0, got ${v}`,
    );
  }
}

/**
 * The blended PACT activations as an op of the input, the clip and the
 * width.
 *
 * @param x The activations.
 * @param clip `[1]`, the clip level (its magnitude is used).
 * @param bits `[1]`, the fractional width.
 * @param options Width range.
 * @param name The quantizer, for errors.
 * @returns The quantized activations.
 * @throws {RangeError} On a clip or width that is not one element, or a
 *   clip that is 0 or not finite.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { pactOp } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const y = pactOp(Tensor.from([-1, 3, 9]), Tensor.from([8]), Tensor.from([2]), {
 *   minBits: 1, maxBits: 8,
 * });
 * assert.deepEqual([...y.toFloat32Array()], [0, 8 / 3, 8].map(Math.fround));
 * ```
 */
export function pactOp(
  x: Tensor,
  clip: Tensor,
  bits: Tensor,
  options: FracActivationOptions,
  name?: string,
): Tensor {
  if (clip.size !== 1 || bits.size !== 1) {
    throw new RangeError(
      `Cannot quantize ${
        label(name)
      }: the clip and the width must be one element each, got ${clip.size} and ${bits.size}`,
    );
  }
  checkClip(clip, name);
  const k = x.device.kernels;
  return recordOp(k.pactQuantize(x, clip, bits, options), [x, clip, bits], (
    g,
  ) => {
    const r = k.pactQuantizeBackward(x, clip, bits, options, g);
    return [r.dx, r.dclip, r.dbits];
  });
}

/**
 * A layer's expected cost `coefficient * sum_o bw[o] * ba` as an op of its
 * widths (clamped to their ranges).
 *
 * @param weightBits The weight widths.
 * @param inputBits The input width `[1]`, or null for a constant 1.
 * @param options Ranges and coefficient.
 * @returns `[1]`.
 *
 * @example `2.3 * 3.6`
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { widthCostOp } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const range = { min: 1, max: 8 };
 * const c = widthCostOp(Tensor.from([2.3]), Tensor.from([3.6]), {
 *   weightRange: range, inputRange: range, coefficient: 1,
 * });
 * assert.ok(Math.abs(c.get(0) - 8.28) < 1e-5);
 * ```
 */
export function widthCostOp(
  weightBits: Tensor,
  inputBits: Tensor | null,
  options: WidthCostOptions,
): Tensor {
  const k = weightBits.device.kernels;
  const out = k.widthCost(weightBits, inputBits, options);
  const inputs = inputBits ? [weightBits, inputBits] : [weightBits];
  return recordOp(out, inputs, (g) => {
    const r = k.widthCostBackward(weightBits, inputBits, options, g);
    return inputBits ? [r.dweightBits, r.dinputBits] : [r.dweightBits];
  });
}

/**
 * `kappa |cost - target|` as an op of the cost.
 *
 * @param cost `[1]`.
 * @param target The target (host number).
 * @param kappa The weight.
 * @returns `[1]`.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { targetPenaltyOp } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * assert.equal(targetPenaltyOp(Tensor.from([3]), 5, 2).get(0), 4);
 * ```
 */
export function targetPenaltyOp(
  cost: Tensor,
  target: number,
  kappa: number,
): Tensor {
  const k = cost.device.kernels;
  return recordOp(
    k.targetPenalty(cost, target, kappa),
    [cost],
    (g) => [k.targetPenaltyBackward(cost, target, kappa, g)],
  );
}
