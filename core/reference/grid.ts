/**
 * The reference uniform grid: the quantizer every frozen plan's uniform
 * grids share, whichever method chose them (`value = scale * code`, code an
 * integer in `[codeMin, codeMax]`).
 *
 * @module
 */

import { roundHalfEven } from "../round.ts";

/**
 * `scale * clamp(round(x / scale), codeMin, codeMax)` elementwise: true
 * division rounded to float32, ties to even, the product rounded to
 * float32. NaN stays NaN.
 *
 * @param x The values.
 * @param scale The step, positive and finite.
 * @param codeMin The lowest code (an integer).
 * @param codeMax The highest code (an integer, at least `codeMin`).
 * @returns The values on the grid.
 */
export function uniformQuantizeReference(
  x: Float32Array,
  scale: number,
  codeMin: number,
  codeMax: number,
): Float32Array {
  const s = Math.fround(scale);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const code = roundHalfEven(Math.fround(x[i] / s));
    out[i] = code !== code
      ? NaN
      : Math.fround(s * Math.min(codeMax, Math.max(codeMin, code)));
  }
  return out;
}

/**
 * Checks a uniform grid's code range, naming the kernel.
 *
 * @param what The kernel, for the message.
 * @param codeMin The lowest code.
 * @param codeMax The highest code.
 * @throws {RangeError} Unless both are integers within ±2^24 (exact in
 *   float32, so every device clamps alike) and `codeMin <= codeMax`.
 */
export function checkCodeRange(
  what: string,
  codeMin: number,
  codeMax: number,
): void {
  const code = (c: number) => Number.isInteger(c) && Math.abs(c) <= 2 ** 24;
  if (!code(codeMin) || !code(codeMax) || codeMin > codeMax) {
    throw new RangeError(
      `${what}: codes [${codeMin}, ${codeMax}] are not integers within ±2^24 with min <= max`,
    );
  }
}
