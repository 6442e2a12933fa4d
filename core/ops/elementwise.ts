/**
 * Elementwise and shape ops with their VJPs: add, mul, scale, relu, relu6,
 * reshape, sum, mean.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import type { Shape, Tensor } from "../tensor.ts";

function sameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.shape.join() !== b.shape.join() || a.shape.length !== b.shape.length) {
    throw new RangeError(
      `${op}: shapes [${a.shape.join(", ")}] and [${
        b.shape.join(", ")
      }] differ`,
    );
  }
}

/**
 * Elementwise sum of two tensors of one shape (e.g. a residual connection).
 *
 * @param a First tensor.
 * @param b Second tensor, shaped like `a`, on the same device.
 * @returns `a + b`.
 * @throws {RangeError} If the shapes or devices differ.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { add } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...add(Tensor.from([1, 2]), Tensor.from([3, 4])).toFloat32Array()], [4, 6]);
 * ```
 */
export function add(a: Tensor, b: Tensor): Tensor {
  sameShape("add", a, b);
  return recordOp(a.device.kernels.add(a, b), [a, b], (g) => [g, g]);
}

/**
 * Elementwise product of two tensors of one shape.
 *
 * @param a First tensor.
 * @param b Second tensor, shaped like `a`, on the same device.
 * @returns `a * b`.
 * @throws {RangeError} If the shapes or devices differ.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { mul } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...mul(Tensor.from([1, 2]), Tensor.from([3, 4])).toFloat32Array()], [3, 8]);
 * ```
 */
export function mul(a: Tensor, b: Tensor): Tensor {
  sameShape("mul", a, b);
  const k = a.device.kernels;
  return recordOp(k.mul(a, b), [a, b], (g) => [k.mul(g, b), k.mul(g, a)]);
}

/**
 * Multiplies every element by a constant.
 *
 * @param a The tensor.
 * @param factor A finite number.
 * @returns `factor * a`.
 * @throws {RangeError} If `factor` is not finite.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { scale } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...scale(Tensor.from([1, -2]), 3).toFloat32Array()], [3, -6]);
 * ```
 */
export function scale(a: Tensor, factor: number): Tensor {
  if (!Number.isFinite(factor)) {
    throw new RangeError(`scale: factor must be finite, got ${factor}`);
  }
  const k = a.device.kernels;
  return recordOp(k.scale(a, factor), [a], (g) => [k.scale(g, factor)]);
}

/**
 * Rectified linear unit, `max(x, 0)`; its gradient is 1 where `x > 0`.
 *
 * @param a The tensor.
 * @returns `relu(a)`.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { relu } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...relu(Tensor.from([-1, 0, 2])).toFloat32Array()], [0, 0, 2]);
 * ```
 */
export function relu(a: Tensor): Tensor {
  const k = a.device.kernels;
  return recordOp(
    k.activation("relu", a),
    [a],
    (g) => [k.activationBackward("relu", a, g)],
  );
}

/**
 * `min(max(x, 0), 6)`; its gradient is 1 where `0 < x < 6`.
 *
 * @param a The tensor.
 * @returns `relu6(a)`.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { relu6 } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...relu6(Tensor.from([-1, 3, 7])).toFloat32Array()], [0, 3, 6]);
 * ```
 */
export function relu6(a: Tensor): Tensor {
  const k = a.device.kernels;
  return recordOp(
    k.activation("relu6", a),
    [a],
    (g) => [k.activationBackward("relu6", a, g)],
  );
}

/**
 * Same elements, new shape (flatten is `reshape(x, [n, -1])`: one `-1` is inferred).
 *
 * @param a The tensor.
 * @param shape The new shape; at most one dimension may be `-1`.
 * @returns The reshaped tensor (sharing `a`'s storage).
 * @throws {RangeError} If the sizes do not match.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { reshape } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(reshape(Tensor.zeros([2, 3, 4]), [2, -1]).shape, [2, 12]);
 * ```
 */
export function reshape(a: Tensor, shape: Shape): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const inferred = shape.map((
    d,
  ) => (d === -1 ? (known === 0 ? 0 : a.size / known) : d));
  if (
    shape.filter((d) => d === -1).length > 1 ||
    !inferred.every(Number.isInteger)
  ) {
    throw new RangeError(
      `Cannot reshape [${a.shape.join(", ")}] to [${shape.join(", ")}]`,
    );
  }
  return recordOp(a.reshape(inferred), [a], (g) => [g.reshape(a.shape)]);
}

/**
 * Sum of all elements.
 *
 * @param a The tensor.
 * @returns A one-element tensor.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { sum } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.equal(sum(Tensor.from([1, 2, 3])).get(0), 6);
 * ```
 */
export function sum(a: Tensor): Tensor {
  const k = a.device.kernels;
  return recordOp(k.sum(a), [a], (g) => [k.broadcast(g, a.shape)]);
}

/**
 * Mean of all elements.
 *
 * @param a A non-empty tensor.
 * @returns A one-element tensor.
 * @throws {RangeError} If `a` is empty.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { mean } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.equal(mean(Tensor.from([1, 2, 3])).get(0), 2);
 * ```
 */
export function mean(a: Tensor): Tensor {
  if (a.size === 0) throw new RangeError("mean of an empty tensor");
  return scale(sum(a), 1 / a.size);
}
