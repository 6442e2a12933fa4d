/**
 * The immutable float32 tensor.
 *
 * A {@link Tensor} is a shape plus storage it owns. Storage is never handed
 * out for writing: {@link Tensor.toFloat32Array} returns a copy, and every
 * operation returns a new tensor. Backends read the storage through
 * {@link tensorStorage}, which is internal to the library.
 *
 * @module
 */

/** A tensor shape: non-negative integer dimensions, outermost first. */
export type Shape = readonly number[];

/**
 * Checks a shape and returns its element count.
 *
 * @param shape The dimensions.
 * @returns The product of the dimensions.
 * @throws {RangeError} If a dimension is not a non-negative integer.
 *
 * @example
 * ```ts
 * import { shapeSize } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(shapeSize([32, 1, 5, 5]), 800);
 * ```
 */
export function shapeSize(shape: Shape): number {
  let size = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new RangeError(
        `Invalid shape [${
          shape.join(", ")
        }]: dimension ${dim} is not a non-negative integer`,
      );
    }
    size *= dim;
  }
  return size;
}

const storageOf = new WeakMap<Tensor, Float32Array>();

/** An immutable float32 tensor. */
export class Tensor {
  /** The dimensions, outermost first. */
  readonly shape: Shape;
  /** The number of elements. */
  readonly size: number;
  /** The element type; only `"float32"` for now. */
  readonly dtype = "float32" as const;

  private constructor(shape: Shape, storage: Float32Array) {
    this.shape = Object.freeze([...shape]);
    this.size = storage.length;
    storageOf.set(this, storage);
    Object.freeze(this);
  }

  /**
   * Makes a tensor from numbers, copying them.
   *
   * @param values The elements in row-major order.
   * @param shape The shape (default: one dimension of `values.length`).
   * @returns A new tensor.
   * @throws {RangeError} If the shape's size is not `values.length`.
   *
   * @example
   * ```ts
   * import { Tensor } from "@bbits/core";
   * import assert from "node:assert/strict";
   *
   * const t = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
   * assert.deepEqual(t.shape, [2, 3]);
   * assert.equal(t.get(1, 2), 6);
   * ```
   */
  static from(values: ArrayLike<number>, shape?: Shape): Tensor {
    const dims = shape ?? [values.length];
    const size = shapeSize(dims);
    if (size !== values.length) {
      throw new RangeError(
        `Cannot make a tensor of shape [${
          dims.join(", ")
        }] (${size} elements) from ${values.length} values`,
      );
    }
    return new Tensor(dims, Float32Array.from(values));
  }

  /**
   * Makes a tensor of zeros.
   *
   * @param shape The shape.
   * @returns A new tensor.
   *
   * @example
   * ```ts
   * import { Tensor } from "@bbits/core";
   * import assert from "node:assert/strict";
   *
   * assert.equal(Tensor.zeros([2, 2]).size, 4);
   * ```
   */
  static zeros(shape: Shape): Tensor {
    return new Tensor(shape, new Float32Array(shapeSize(shape)));
  }

  /**
   * Wraps a Float32Array the caller gives up: the library takes ownership and
   * the caller must not write to it again. Internal; used by backends that
   * just produced the array.
   *
   * @ignore
   */
  static adopt(storage: Float32Array, shape: Shape): Tensor {
    if (shapeSize(shape) !== storage.length) {
      throw new RangeError(
        `Cannot adopt ${storage.length} values as shape [${shape.join(", ")}]`,
      );
    }
    return new Tensor(shape, storage);
  }

  /**
   * Reads one element.
   *
   * @param index One index per dimension.
   * @returns The element.
   * @throws {RangeError} On a wrong number of indices or an index out of range.
   *
   * @example
   * ```ts
   * import { Tensor } from "@bbits/core";
   * import assert from "node:assert/strict";
   *
   * assert.equal(Tensor.from([1, 2, 3, 4], [2, 2]).get(1, 0), 3);
   * ```
   */
  get(...index: number[]): number {
    if (index.length !== this.shape.length) {
      throw new RangeError(
        `Cannot index a tensor of shape [${
          this.shape.join(", ")
        }] with ${index.length} indices`,
      );
    }
    let flat = 0;
    for (let d = 0; d < index.length; d++) {
      const i = index[d];
      if (!Number.isInteger(i) || i < 0 || i >= this.shape[d]) {
        throw new RangeError(
          `Index ${i} is out of range for dimension ${d} of size ${
            this.shape[d]
          }`,
        );
      }
      flat = flat * this.shape[d] + i;
    }
    return storageOf.get(this)![flat];
  }

  /**
   * Returns a tensor with the same elements and another shape.
   *
   * @param shape The new shape; its size must equal {@link Tensor.size}.
   * @returns A new tensor sharing nothing writable with this one.
   *
   * @example
   * ```ts
   * import { Tensor } from "@bbits/core";
   * import assert from "node:assert/strict";
   *
   * assert.deepEqual(Tensor.zeros([2, 3]).reshape([3, 2]).shape, [3, 2]);
   * ```
   */
  reshape(shape: Shape): Tensor {
    if (shapeSize(shape) !== this.size) {
      throw new RangeError(
        `Cannot reshape [${
          this.shape.join(", ")
        }] (${this.size} elements) to [${shape.join(", ")}]`,
      );
    }
    // Storage is never written after construction, so sharing it is safe.
    return new Tensor(shape, storageOf.get(this)!);
  }

  /**
   * Copies the elements out.
   *
   * @returns A new Float32Array the caller may modify.
   *
   * @example
   * ```ts
   * import { Tensor } from "@bbits/core";
   * import assert from "node:assert/strict";
   *
   * assert.deepEqual([...Tensor.from([1, 2]).toFloat32Array()], [1, 2]);
   * ```
   */
  toFloat32Array(): Float32Array {
    return storageOf.get(this)!.slice();
  }
}

/**
 * The storage of a tensor, for backends to read. Never write to it.
 *
 * @ignore
 */
export function tensorStorage(tensor: Tensor): Float32Array {
  const storage = storageOf.get(tensor);
  if (!storage) throw new TypeError("Expected a Tensor");
  return storage;
}
