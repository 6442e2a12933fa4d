/**
 * The immutable tensor, carried by its device.
 *
 * A {@link Tensor} is a shape, an element type and storage on one
 * {@link Device}. Every operation returns a new tensor on the device of its
 * inputs; nothing writes a tensor after it is made. Reading the elements
 * back is the one asynchronous step ({@link Tensor.read}); on devices whose
 * memory the host can see (the reference and WASM devices)
 * {@link Tensor.toFloat32Array} and {@link Tensor.get} read synchronously.
 *
 * @module
 */

import type { Device } from "./device.ts";
import { registerTensorSupport, type Storage } from "./base_device.ts";
import { referenceDevice } from "./reference/device.ts";

/** A tensor shape: non-negative integer dimensions, outermost first. */
export type Shape = readonly number[];

/** Element types: `float32` for values, `int32` for labels, indices and counts. */
export type DType = "float32" | "int32";

/** The typed array of a {@link DType}. */
export type TypedArrayOf<D extends DType> = D extends "int32" ? Int32Array
  : Float32Array;

/**
 * Checks a shape and returns its element count.
 *
 * @param shape The dimensions.
 * @returns The product of the dimensions.
 * @throws {RangeError} If a dimension is not a non-negative integer.
 *
 * @example
 * ```ts
 * import { shapeSize } from "@bbits/core/ops";
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

const storageOf = new WeakMap<Tensor, Storage>();

/** An immutable tensor on one device. */
export class Tensor {
  /** The dimensions, outermost first. */
  readonly shape: Shape;
  /** The number of elements. */
  readonly size: number;
  /** The element type. */
  readonly dtype: DType;
  /** The device holding the elements; every op runs there. */
  readonly device: Device;

  /**
   * Wraps device storage. Internal: devices make tensors (`device.upload`,
   * the kernels); users call {@link Tensor.from} or `device.upload`.
   *
   * @ignore
   */
  constructor(storage: Storage, shape: Shape) {
    const size = shapeSize(shape);
    if (size !== storage.length) {
      throw new RangeError(
        `Cannot view ${storage.length} elements as shape [${shape.join(", ")}]`,
      );
    }
    this.shape = Object.freeze([...shape]);
    this.size = size;
    this.dtype = storage.dtype;
    this.device = storage.device;
    storageOf.set(this, storage);
    Object.freeze(this);
  }

  /**
   * Makes a tensor from numbers, copying them, on `device` (default: the
   * reference device).
   *
   * @param values The elements in row-major order.
   * @param shape The shape (default: one dimension of `values.length`).
   * @param device Where the tensor lives (default: the reference device).
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
  static from(
    values: ArrayLike<number>,
    shape?: Shape,
    device: Device = referenceDevice,
  ): Tensor {
    return device.upload(values, shape ?? [values.length]);
  }

  /**
   * Makes a tensor of zeros on `device` (default: the reference device).
   *
   * @param shape The shape.
   * @param device Where the tensor lives.
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
  static zeros(shape: Shape, device: Device = referenceDevice): Tensor {
    return device.zeros(shape);
  }

  /**
   * Reads one element (devices the host can see only; elsewhere use
   * {@link Tensor.read}).
   *
   * @param index One index per dimension.
   * @returns The element.
   * @throws {RangeError} On a wrong number of indices or an index out of range.
   * @throws {TypeError} On a device whose memory the host cannot see.
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
    return hostView(this)[flat];
  }

  /**
   * Returns a tensor with the same elements and another shape; it shares
   * the storage (nothing is copied).
   *
   * @param shape The new shape; its size must equal {@link Tensor.size}.
   * @returns A new tensor.
   * @throws {RangeError} If the sizes differ.
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
    return new Tensor(liveStorage(this), shape);
  }

  /**
   * Copies the elements out, on any device: the one asynchronous step.
   *
   * @returns A new `Float32Array` (or `Int32Array` for `int32`) the caller owns.
   *
   * @example
   * ```ts
   * import { Tensor } from "@bbits/core";
   * import assert from "node:assert/strict";
   *
   * assert.deepEqual([...await Tensor.from([1, 2]).read()], [1, 2]);
   * ```
   */
  read(): Promise<Float32Array | Int32Array> {
    return this.device.read(this);
  }

  /**
   * Copies the elements out synchronously (devices the host can see: the
   * reference and WASM devices; elsewhere use {@link Tensor.read}).
   *
   * @returns A new Float32Array the caller may modify.
   * @throws {TypeError} On a device whose memory the host cannot see.
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
    return Float32Array.from(hostView(this));
  }

  /**
   * Moves the tensor to another device (a read, then an upload).
   *
   * @param device The target device.
   * @returns The same elements on `device` (this tensor when already there).
   *
   * @example
   * ```ts
   * import { referenceDevice, Tensor } from "@bbits/core";
   * import assert from "node:assert/strict";
   *
   * const t = await Tensor.from([1, 2]).to(referenceDevice);
   * assert.equal(t.device.kind, "reference");
   * ```
   */
  async to(device: Device): Promise<Tensor> {
    if (device === this.device) return this;
    return device.upload(await this.read(), this.shape, this.dtype);
  }
}

/**
 * The storage of a tensor, alive or not. Internal.
 *
 * @ignore
 */
export function rawStorage(tensor: Tensor): Storage {
  const storage = storageOf.get(tensor);
  if (!storage) throw new TypeError("Expected a Tensor");
  return storage;
}

/**
 * The storage of a tensor, for device implementations; throws if it was
 * freed (its scope ended or it was disposed).
 *
 * @ignore
 */
export function liveStorage(tensor: Tensor): Storage {
  const storage = storageOf.get(tensor);
  if (!storage) throw new TypeError("Expected a Tensor");
  if (!storage.alive) {
    throw new Error(
      `A tensor of shape [${
        tensor.shape.join(", ")
      }] on ${tensor.device.name} was used after its device scope ended or it was disposed`,
    );
  }
  return storage;
}

/**
 * A view of a tensor's elements in host memory (reference and WASM
 * devices). Never write to it; take a new view after any allocation on the
 * device (WASM memory growth replaces the buffer).
 *
 * @ignore
 */
export function hostView(tensor: Tensor): Float32Array | Int32Array {
  const storage = liveStorage(tensor);
  return storage.device.hostView(storage);
}

/**
 * {@link hostView} of a float32 tensor.
 *
 * @ignore
 */
export function hostF32(tensor: Tensor): Float32Array {
  const view = hostView(tensor);
  if (!(view instanceof Float32Array)) {
    throw new TypeError(`Expected a float32 tensor, got ${tensor.dtype}`);
  }
  return view;
}

/**
 * {@link hostView} of an int32 tensor.
 *
 * @ignore
 */
export function hostI32(tensor: Tensor): Int32Array {
  const view = hostView(tensor);
  if (!(view instanceof Int32Array)) {
    throw new TypeError(`Expected an int32 tensor, got ${tensor.dtype}`);
  }
  return view;
}

registerTensorSupport({
  make: (storage, shape) => new Tensor(storage, shape),
  raw: rawStorage,
  live: liveStorage,
  size: shapeSize,
  is: (value): value is Tensor => value instanceof Tensor,
});
