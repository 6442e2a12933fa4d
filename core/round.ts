/**
 * Round half to even: the one rounding rule of this library.
 *
 * `Math.round` rounds halves towards +Infinity (`Math.round(-2.5) === -2`,
 * `Math.round(2.5) === 3`), which is not what PyTorch's `torch.round`, WASM
 * `f32x4.nearest` or WGSL `round` do. Every quantizer in this library rounds
 * through this function (TypeScript) or its named twins (`nearest` in
 * AssemblyScript, `round` in WGSL).
 *
 * @module
 */

/**
 * Rounds `value` to the nearest integer, sending exact halves to the even
 * neighbour (banker's rounding, IEEE 754 `roundTiesToEven`).
 *
 * Exact for every finite float64; NaN and ±Infinity pass through unchanged.
 *
 * @param value The number to round.
 * @returns The nearest integer to `value`, ties to even.
 *
 * @example Ties go to the even neighbour
 * ```ts
 * import { roundHalfEven } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.equal(roundHalfEven(2.5), 2);
 * assert.equal(roundHalfEven(3.5), 4);
 * assert.equal(roundHalfEven(-2.5), -2);
 * assert.equal(roundHalfEven(2.4999), 2);
 * ```
 */
export function roundHalfEven(value: number): number {
  // Math.round is exact except for the direction of ties, which we fix here.
  const rounded = Math.round(value);
  if (rounded - value === 0.5 && rounded % 2 !== 0) return rounded - 1;
  return rounded;
}
