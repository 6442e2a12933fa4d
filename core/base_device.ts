/**
 * What every device shares: storage bookkeeping, scopes, uploads and reads
 * ({@link BaseDevice}). This module imports tensors as types only, so it
 * loads before everything that builds on it (the reference device extends
 * {@link BaseDevice}; the tensor module defaults to the reference device and
 * registers itself here when it loads).
 *
 * @module
 */

import type { Device, DeviceKind } from "./device.ts";
import type { Kernels } from "./kernels.ts";
import type { DType, Shape, Tensor } from "./tensor.ts";

/**
 * What the device layer needs from `core/tensor.ts` at run time. The tensor
 * module registers it when it loads, so this module imports tensors as types
 * only and can load first (the reference device extends {@link BaseDevice}
 * and the tensor module defaults to the reference device).
 *
 * @ignore
 */
export interface TensorSupport {
  /** A tensor over storage. */
  readonly make: (storage: Storage, shape: Shape) => Tensor;
  /** A tensor's storage, alive or not. */
  readonly raw: (tensor: Tensor) => Storage;
  /** A tensor's storage; throws if freed. */
  readonly live: (tensor: Tensor) => Storage;
  /** Elements of a shape (checked). */
  readonly size: (shape: Shape) => number;
  /** Whether a value is a tensor. */
  readonly is: (value: unknown) => value is Tensor;
}

let tensorSupport: TensorSupport | null = null;

/**
 * Called once by `core/tensor.ts`.
 *
 * @ignore
 */
export function registerTensorSupport(support: TensorSupport): void {
  tensorSupport = support;
}

function support(): TensorSupport {
  if (!tensorSupport) {
    throw new Error(
      "core/tensor.ts is not loaded: import it before making tensors",
    );
  }
  return tensorSupport;
}

const liveStorageOf = (t: Tensor) => support().live(t);
const storageOfAny = (t: Tensor) => support().raw(t);
const shapeSize = (shape: Shape) => support().size(shape);

/** The element storage of a tensor, made by a device. Internal. */
export class Storage {
  /** False once freed; a tensor over freed storage throws when used. */
  alive = true;
  /** The scope frame that frees it, or null for storage outside every scope. */
  frame: Set<Storage> | null = null;

  /**
   * Describes memory a device allocated.
   *
   * @param device The device that made it.
   * @param length Elements.
   * @param dtype Element type.
   * @param handle The device's own reference to the memory.
   */
  constructor(
    readonly device: BaseDevice,
    readonly length: number,
    readonly dtype: DType,
    readonly handle: unknown,
  ) {}
}

/** Walks a scope's result for the storages it keeps. */
function collectKept(
  value: unknown,
  kept: Set<Storage>,
  seen: Set<unknown>,
  storageOf: (t: Tensor) => Storage,
): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if (support().is(value)) {
    kept.add(storageOf(value));
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) collectKept(item, kept, seen, storageOf);
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    for (const item of Object.values(value)) {
      collectKept(item, kept, seen, storageOf);
    }
  }
}

/**
 * What every device shares: storage bookkeeping, scopes, uploads and
 * reads. A device supplies the memory operations.
 *
 * @ignore
 */
export abstract class BaseDevice implements Device {
  abstract readonly kind: DeviceKind;
  abstract readonly name: string;
  abstract readonly kernels: Kernels;
  readonly #frames: Set<Storage>[] = [];
  readonly #registry = new FinalizationRegistry<unknown>((handle) =>
    this.releaseHandle(handle)
  );
  #disposed = false;

  /** Reserves memory for `length` elements (contents unspecified). */
  protected abstract allocateHandle(length: number, dtype: DType): unknown;
  /** Returns memory to the device. */
  protected abstract releaseHandle(handle: unknown): void;
  /** Writes host values into new memory. */
  protected abstract writeHandle(
    handle: unknown,
    values: Float32Array | Int32Array,
  ): void;
  /** Copies memory back to the host. */
  protected abstract readHandle(
    storage: Storage,
  ): Promise<Float32Array | Int32Array>;
  /** Fills memory with zeros. */
  protected abstract zeroHandle(storage: Storage): void;

  abstract hostView(storage: Storage): Float32Array | Int32Array;

  /** Releases device resources; storages are not touched. */
  protected abstract disposeResources(): void;

  /**
   * A new tensor of `shape` with fresh storage: kernels allocate their
   * outputs with it. Contents are unspecified until the kernel writes them.
   *
   * @ignore
   */
  alloc(shape: Shape, dtype: DType = "float32"): Tensor {
    if (this.#disposed) {
      throw new Error(`The ${this.name} device was disposed`);
    }
    const length = shapeSize(shape);
    return this.wrap(this.allocateHandle(length, dtype), length, shape, dtype);
  }

  /** A tensor over memory the device just allocated, tracked like {@link alloc}'s. */
  protected wrap(
    handle: unknown,
    length: number,
    shape: Shape,
    dtype: DType,
  ): Tensor {
    const storage = new Storage(this, length, dtype, handle);
    const frame = this.#frames[this.#frames.length - 1];
    if (frame) {
      storage.frame = frame;
      frame.add(storage);
    } else {
      this.#registry.register(storage, storage.handle, storage);
    }
    return support().make(storage, shape);
  }

  /**
   * `tensor`, checked to be alive and on this device.
   *
   * @ignore
   */
  checked(tensor: Tensor): Tensor {
    this.storage(tensor);
    return tensor;
  }

  /**
   * The storage of `tensor`, checked to be alive and on this device.
   *
   * @ignore
   */
  storage(tensor: Tensor): Storage {
    if (tensor.device !== this) {
      throw new RangeError(
        `A tensor on ${tensor.device.name} was given to the ${this.name} device: move it with tensor.to(device)`,
      );
    }
    return liveStorageOf(tensor);
  }

  upload(values: ArrayLike<number>, shape: Shape, dtype?: DType): Tensor {
    const type = dtype ?? (values instanceof Int32Array ? "int32" : "float32");
    const size = shapeSize(shape);
    if (size !== values.length) {
      throw new RangeError(
        `Cannot make a tensor of shape [${
          shape.join(", ")
        }] (${size} elements) from ${values.length} values`,
      );
    }
    let host: Float32Array | Int32Array;
    if (type === "int32") {
      host = values instanceof Int32Array ? values : new Int32Array(size);
      if (!(values instanceof Int32Array)) {
        for (let i = 0; i < size; i++) {
          const v = values[i];
          if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
            throw new RangeError(
              `Cannot store ${v} (element ${i}) in an int32 tensor`,
            );
          }
          host[i] = v;
        }
      }
    } else {
      host = values instanceof Float32Array
        ? values
        : Float32Array.from(values);
    }
    const tensor = this.alloc(shape, type);
    this.writeHandle(liveStorageOf(tensor).handle, host);
    return tensor;
  }

  zeros(shape: Shape, dtype: DType = "float32"): Tensor {
    const tensor = this.alloc(shape, dtype);
    this.zeroHandle(liveStorageOf(tensor));
    return tensor;
  }

  read(tensor: Tensor): Promise<Float32Array | Int32Array> {
    return this.readHandle(this.storage(tensor));
  }

  scope<T>(body: () => T): T {
    const frame = new Set<Storage>();
    this.#frames.push(frame);
    let result: T;
    try {
      result = body();
    } catch (error) {
      this.#frames.pop();
      for (const s of frame) this.#release(s);
      throw error;
    }
    this.#frames.pop();
    if (result instanceof Promise) {
      for (const s of frame) this.#release(s);
      throw new TypeError(
        "device.scope() needs a synchronous body: its tensors are freed when it returns",
      );
    }
    const kept = new Set<Storage>();
    collectKept(result, kept, new Set(), liveStorageOf);
    const parent = this.#frames[this.#frames.length - 1] ?? null;
    for (const s of frame) {
      if (!kept.has(s)) {
        this.#release(s);
      } else if (parent) {
        s.frame = parent;
        parent.add(s);
      } else {
        s.frame = null;
        this.#registry.register(s, s.handle, s);
      }
    }
    this.endScope();
    return result;
  }

  /** Called after each scope's cleanup (e.g. a GPU device submits its work). */
  protected endScope(): void {}

  free(...tensors: Tensor[]): void {
    for (const tensor of tensors) {
      if (tensor.device !== this) this.storage(tensor); // throws: foreign
      const storage = storageOfAny(tensor);
      if (!storage.alive) continue;
      if (storage.frame) storage.frame.delete(storage);
      else this.#registry.unregister(storage);
      this.#release(storage);
    }
  }

  #release(storage: Storage): void {
    if (!storage.alive) return;
    storage.alive = false;
    storage.frame = null;
    this.releaseHandle(storage.handle);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.disposeResources();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
