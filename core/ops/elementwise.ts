/**
 * Elementwise and shape ops with their VJPs: add, mul, scale, relu, relu6,
 * reshape, sum, mean.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { type Shape, Tensor, tensorStorage } from "../tensor.ts";
import { currentKernels } from "./kernels.ts";

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
 * @param b Second tensor, shaped like `a`.
 * @returns `a + b`.
 * @throws {RangeError} If the shapes differ.
 *
 * @example
 * ```ts
 * import { add, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...add(Tensor.from([1, 2]), Tensor.from([3, 4])).toFloat32Array()], [4, 6]);
 * ```
 */
export function add(a: Tensor, b: Tensor): Tensor {
  sameShape("add", a, b);
  const x = tensorStorage(a);
  const y = tensorStorage(b);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] + y[i];
  return recordOp(Tensor.adopt(out, a.shape), [a, b], (g) => [g, g]);
}

/**
 * Elementwise product of two tensors of one shape.
 *
 * @param a First tensor.
 * @param b Second tensor, shaped like `a`.
 * @returns `a * b`.
 * @throws {RangeError} If the shapes differ.
 *
 * @example
 * ```ts
 * import { mul, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...mul(Tensor.from([1, 2]), Tensor.from([3, 4])).toFloat32Array()], [3, 8]);
 * ```
 */
export function mul(a: Tensor, b: Tensor): Tensor {
  sameShape("mul", a, b);
  const x = tensorStorage(a);
  const y = tensorStorage(b);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * y[i];
  return recordOp(Tensor.adopt(out, a.shape), [a, b], (g) => [
    g.map((v, i) => v * y[i]),
    g.map((v, i) => v * x[i]),
  ]);
}

/**
 * Multiplies every element by a constant.
 *
 * @param a The tensor.
 * @param factor A finite number.
 * @returns `factor * a`.
 *
 * @example
 * ```ts
 * import { scale, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...scale(Tensor.from([1, -2]), 3).toFloat32Array()], [3, -6]);
 * ```
 */
export function scale(a: Tensor, factor: number): Tensor {
  if (!Number.isFinite(factor)) {
    throw new RangeError(`scale: factor must be finite, got ${factor}`);
  }
  const out = tensorStorage(a).map((v) => v * factor);
  return recordOp(
    Tensor.adopt(out, a.shape),
    [a],
    (g) => [g.map((v) => v * factor)],
  );
}

/**
 * Rectified linear unit, `max(x, 0)`; its gradient is 1 where `x > 0`.
 *
 * @param a The tensor.
 * @returns `relu(a)`.
 *
 * @example
 * ```ts
 * import { relu, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...relu(Tensor.from([-1, 0, 2])).toFloat32Array()], [0, 0, 2]);
 * ```
 */
export function relu(a: Tensor): Tensor {
  const kernels = currentKernels();
  const forward = kernels?.relu ?? reluReference;
  const backward = kernels?.reluBackward ?? reluBackwardReference;
  const x = tensorStorage(a);
  return recordOp(
    Tensor.adopt(forward(x), a.shape),
    [a],
    (g) => [backward(x, g)],
  );
}

/**
 * The reference of `relu`'s forward kernel (`OpKernels.relu`).
 */
export function reluReference(x: Float32Array): Float32Array {
  // Plain loops: TypedArray.map with a closure is several times slower here.
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] > 0 ? x[i] : 0;
  return out;
}

/**
 * The reference of `relu`'s backward kernel (`OpKernels.reluBackward`).
 */
export function reluBackwardReference(
  x: Float32Array,
  g: Float32Array,
): Float32Array {
  const dx = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) dx[i] = x[i] > 0 ? g[i] : 0;
  return dx;
}

/**
 * `min(max(x, 0), 6)`; its gradient is 1 where `0 < x < 6`.
 *
 * @param a The tensor.
 * @returns `relu6(a)`.
 *
 * @example
 * ```ts
 * import { relu6, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...relu6(Tensor.from([-1, 3, 7])).toFloat32Array()], [0, 3, 6]);
 * ```
 */
export function relu6(a: Tensor): Tensor {
  const kernels = currentKernels();
  const forward = kernels?.relu6 ?? relu6Reference;
  const backward = kernels?.relu6Backward ?? relu6BackwardReference;
  const x = tensorStorage(a);
  return recordOp(
    Tensor.adopt(forward(x), a.shape),
    [a],
    (g) => [backward(x, g)],
  );
}

/**
 * The reference of `relu6`'s forward kernel (`OpKernels.relu6`).
 */
export function relu6Reference(x: Float32Array): Float32Array {
  return x.map((v) => (v > 0 ? (v < 6 ? v : 6) : 0));
}

/**
 * The reference of `relu6`'s backward kernel (`OpKernels.relu6Backward`).
 */
export function relu6BackwardReference(
  x: Float32Array,
  g: Float32Array,
): Float32Array {
  return g.map((v, i) => (x[i] > 0 && x[i] < 6 ? v : 0));
}

/**
 * Same elements, new shape (flatten is `reshape(x, [n, -1])`: one `-1` is inferred).
 *
 * @param a The tensor.
 * @param shape The new shape; at most one dimension may be `-1`.
 * @returns The reshaped tensor.
 * @throws {RangeError} If the sizes do not match.
 *
 * @example
 * ```ts
 * import { reshape, Tensor } from "@bbits/core";
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
  return recordOp(a.reshape(inferred), [a], (g) => [g]);
}

/**
 * Sum of all elements.
 *
 * @param a The tensor.
 * @returns A one-element tensor.
 *
 * @example
 * ```ts
 * import { sum, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(sum(Tensor.from([1, 2, 3])).get(0), 6);
 * ```
 */
export function sum(a: Tensor): Tensor {
  let total = 0;
  for (const v of tensorStorage(a)) total += v;
  return recordOp(
    Tensor.from([total], [1]),
    [a],
    (g) => [new Float32Array(a.size).fill(g[0])],
  );
}

/**
 * Mean of all elements.
 *
 * @param a A non-empty tensor.
 * @returns A one-element tensor.
 *
 * @example
 * ```ts
 * import { mean, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(mean(Tensor.from([1, 2, 3])).get(0), 2);
 * ```
 */
export function mean(a: Tensor): Tensor {
  if (a.size === 0) throw new RangeError("mean of an empty tensor");
  return scale(sum(a), 1 / a.size);
}
