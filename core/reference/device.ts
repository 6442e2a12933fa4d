/**
 * The reference device: tensors in host typed arrays, every kernel in plain
 * TypeScript (one file per family beside this one). It is the oracle every
 * other device is tested against, and it runs everywhere.
 *
 * @module
 */

import { BaseDevice, type Storage } from "../base_device.ts";
import type { Device } from "../device.ts";
import type { Kernels } from "../kernels.ts";
import {
  type DType,
  hostF32,
  hostI32,
  type Shape,
  type Tensor,
} from "../tensor.ts";
import { referenceKernelTable } from "./kernels.ts";

export { chainSampleGrads, gateLogitsOf } from "./kernels.ts";

/**
 * A device whose tensors are host typed arrays (the reference device; test
 * devices build on it). Internal.
 *
 * @ignore
 */
export abstract class HostArrayDevice extends BaseDevice {
  protected allocateHandle(length: number, dtype: DType): unknown {
    return dtype === "int32"
      ? new Int32Array(length)
      : new Float32Array(length);
  }

  protected releaseHandle(): void {}

  protected writeHandle(
    handle: unknown,
    values: Float32Array | Int32Array,
  ): void {
    (handle as Float32Array | Int32Array).set(values);
  }

  protected readHandle(storage: Storage): Promise<Float32Array | Int32Array> {
    return Promise.resolve(
      (storage.handle as Float32Array | Int32Array).slice(),
    );
  }

  protected zeroHandle(storage: Storage): void {
    (storage.handle as Float32Array | Int32Array).fill(0);
  }
}

class ReferenceDeviceImpl extends HostArrayDevice {
  readonly kind = "reference" as const;
  readonly name = "reference";
  readonly kernels: Kernels;

  constructor() {
    super();
    this.kernels = referenceKernels(this);
  }

  hostView(storage: Storage): Float32Array | Int32Array {
    return storage.handle as Float32Array | Int32Array;
  }

  /** The reference device lives as long as the program: nothing to release. */
  protected disposeResources(): void {}

  override dispose(): void {}

  /** A tensor over `values` itself (a kernel's fresh result; no copy). */
  adopt(values: Float32Array | Int32Array, shape: Shape): Tensor {
    return this.wrap(
      values,
      values.length,
      shape,
      values instanceof Int32Array ? "int32" : "float32",
    );
  }
}

function referenceKernels(dev: ReferenceDeviceImpl): Kernels {
  const f32 = (t: Tensor) => hostF32(dev.checked(t));
  const i32 = (t: Tensor) => hostI32(dev.checked(t));
  const out = (values: Float32Array | Int32Array, shape: Shape) =>
    dev.adopt(values, shape);
  const scalar = (t: Tensor) => f32(t)[0];
  return referenceKernelTable({ f32, i32, out, scalar });
}

/** The reference device: a {@link Device} on host typed arrays. */
export interface ReferenceDevice extends Device {
  /** `"reference"`. */
  readonly kind: "reference";
  /**
   * A tensor over `values` itself (no copy): what kernels use for results.
   *
   * @param values The elements (the tensor owns them from now on).
   * @param shape The shape; its size must be `values.length`.
   * @returns The tensor.
   */
  adopt(values: Float32Array | Int32Array, shape: Shape): Tensor;
}

/**
 * The reference device: plain TypeScript, always available (also what
 * `Tensor.from` uses when no device is given).
 *
 * @example
 * ```ts
 * import { referenceDevice } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const y = referenceDevice.kernels.add(
 *   referenceDevice.upload([1, 2], [2]),
 *   referenceDevice.upload([3, 4], [2]),
 * );
 * assert.deepEqual([...await y.read()], [4, 6]);
 * ```
 */
export const referenceDevice: ReferenceDevice = new ReferenceDeviceImpl();
