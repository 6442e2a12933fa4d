/**
 * The bit widths each method's files may record, in one table keyed by the
 * method's name: what a report's `weightBits`, a snapshot's or an exported
 * model's grid may say for a run of that method. A method that is not in
 * the table may record any integer width from 0 (pruned) to 32; a method
 * with a closed set of widths adds its row here.
 *
 * @module
 */

import { rangeError } from "./schema.ts";

/**
 * Bit widths by method name (0: pruned). Bayesian Bits' quantizers double
 * their width from 2 to 32 bits, and the greedy baseline works on the same
 * grids; a float run's layers count 32.
 */
export const METHOD_BIT_WIDTHS: Readonly<Record<string, readonly number[]>> =
  Object.freeze({
    "bayesian-bits": Object.freeze([0, 2, 4, 8, 16, 32]),
    "float": Object.freeze([32]),
    "greedy": Object.freeze([0, 2, 4, 8, 16, 32]),
  });

/** The widths a method outside {@link METHOD_BIT_WIDTHS} may record: 0 to 32. */
const ANY_WIDTH: readonly number[] = Object.freeze(
  Array.from({ length: 33 }, (_, i) => i),
);

/**
 * The bit widths a method's files may record.
 *
 * @param method The method's name, e.g. `"bayesian-bits"`.
 * @returns Its widths ascending (0 to 32 for a method outside the table).
 *
 * @example
 * ```ts
 * import { methodBitWidths } from "@bbits/core/report";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(methodBitWidths("bayesian-bits"), [0, 2, 4, 8, 16, 32]);
 * assert.equal(methodBitWidths("some-new-method").length, 33);
 * ```
 */
export function methodBitWidths(method: string): readonly number[] {
  return Object.hasOwn(METHOD_BIT_WIDTHS, method)
    ? METHOD_BIT_WIDTHS[method]
    : ANY_WIDTH;
}

/**
 * Checks a bit width found at `path` in a file of a `method` run.
 *
 * @param method The method's name.
 * @param bits The width read.
 * @param path Its path, for the message (e.g. `layers[2].weightBits`).
 * @param options `pruned: false` refuses 0 (e.g. an activation's width).
 * @returns `bits`.
 * @throws {RangeError} If `bits` is not one of the method's widths, e.g.
 *   `layers[0].weightBits must be one of 0, 2, 4, 8, 16, 32 (bayesian-bits), got 3`.
 */
export function checkMethodBits(
  method: string,
  bits: number,
  path: string,
  options: { readonly pruned?: boolean } = {},
): number {
  const all = methodBitWidths(method);
  const widths = all.filter((b) => options.pruned !== false || b !== 0);
  if (!widths.includes(bits)) {
    const set = all === ANY_WIDTH
      ? `an integer in [${widths[0]}, ${widths[widths.length - 1]}]`
      : `one of ${widths.join(", ")}`;
    throw rangeError(path, `${set} (${method})`, bits);
  }
  return bits;
}
