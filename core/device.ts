/**
 * Devices: where tensors live and kernels run.
 *
 * A {@link Device} owns memory and a closed set of {@link Kernels}. A
 * tensor carries its device; every op runs the kernels of its inputs'
 * device and returns tensors on it. Pick the device once:
 *
 * ```ts ignore
 * const dev = await device("wasm", { threads: 2 });
 * const params = initGraph(lenet5(), randomKey(0), dev);
 * ```
 *
 * Memory. Tensors made inside {@link Device.scope} are freed when the scope
 * ends, except those the scope returns (a training step returns the new
 * parameters and optimizer state; its activations, gradients and
 * temporaries go). Tensors made outside any scope live until they are
 * garbage-collected or passed to {@link Device.free}. A tensor used after
 * it was freed throws. Reading a tensor back ({@link Device.read}) is the
 * one asynchronous step.
 *
 * Three kinds: `"reference"` (plain TypeScript, float32 rounding after every
 * operation: the oracle every other device is tested against), `"wasm"`
 * (AssemblyScript kernels compiled to WASM SIMD, threads sharing one
 * memory, every tensor resident in it) and `"webgpu"` (WGSL).
 *
 * @module
 */

// The tensor module registers itself with the base device module when it
// loads; importing it here makes every importer of this module complete.
import "./tensor.ts";
import { BaseDevice, Storage } from "./base_device.ts";
import type { Kernels } from "./kernels.ts";
import type { DType, Shape, Tensor } from "./tensor.ts";

export { BaseDevice, Storage };
export { registerTensorSupport, type TensorSupport } from "./base_device.ts";

/** The kinds of device. */
export type DeviceKind = "reference" | "wasm" | "webgpu";

/** A device: memory, the kernels, and the one asynchronous step, reading. */
export interface Device {
  /** `"reference"`, `"wasm"` or `"webgpu"`. */
  readonly kind: DeviceKind;
  /** A description for progress lines and reports, e.g. `"wasm (2 threads, simd128)"`. */
  readonly name: string;
  /** Every kernel; one this device does not have throws {@link UnsupportedKernelError}. */
  readonly kernels: Kernels;
  /**
   * Copies host values into a new tensor on this device.
   *
   * @param values The elements, row-major.
   * @param shape The shape; its size must be `values.length`.
   * @param dtype `"float32"` (default; `"int32"` for an `Int32Array`).
   * @returns The tensor.
   * @throws {RangeError} If the shape does not fit the values, or an
   *   `int32` value is not an integer.
   */
  upload(values: ArrayLike<number>, shape: Shape, dtype?: DType): Tensor;
  /**
   * A tensor of zeros on this device.
   *
   * @param shape The shape.
   * @param dtype The element type (default `"float32"`).
   * @returns The tensor.
   */
  zeros(shape: Shape, dtype?: DType): Tensor;
  /**
   * Copies a tensor's elements back to the host.
   *
   * @param tensor A tensor on this device.
   * @returns A new array the caller owns.
   */
  read(tensor: Tensor): Promise<Float32Array | Int32Array>;
  /**
   * Runs `body` and frees every tensor it made on this device except those
   * reachable from its result (through arrays and plain objects).
   * Synchronous; scopes nest.
   *
   * @param body The work, e.g. one training step.
   * @returns What `body` returns.
   * @throws {TypeError} If `body` returns a promise.
   */
  scope<T>(body: () => T): T;
  /**
   * Frees tensors now (their storage is shared with their reshapes). Using
   * them afterwards throws.
   *
   * @param tensors Tensors on this device.
   */
  free(...tensors: Tensor[]): void;
  /** Releases the device's resources (workers, GPU device); idempotent. */
  dispose(): void;
  /** Same as {@link Device.dispose}, for `using`. */
  [Symbol.dispose](): void;
  /**
   * A view of storage in host memory (reference and WASM devices; others
   * throw). Internal: kernels and {@link Tensor.get} use it.
   *
   * @ignore
   */
  hostView(storage: Storage): Float32Array | Int32Array;
}

/**
 * Thrown when a device lacks a kernel: nothing falls back to another device.
 *
 * @example
 * ```ts
 * import { UnsupportedKernelError } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const error = new UnsupportedKernelError("gemm", "webgpu (llvmpipe)");
 * assert.match(error.message, /gemm/);
 * ```
 */
export class UnsupportedKernelError extends Error {
  /** The kernel's name in {@link Kernels}. */
  readonly kernel: string;
  /** The device's name. */
  readonly device: string;

  /**
   * Makes the error.
   *
   * @param kernel The kernel's name.
   * @param device The device's name.
   */
  constructor(kernel: string, device: string) {
    super(
      `The ${device} device has no "${kernel}" kernel yet: run this on the "wasm" or "reference" device`,
    );
    this.name = "UnsupportedKernelError";
    this.kernel = kernel;
    this.device = device;
  }
}

/** Options of {@link device}. */
export interface DeviceOptions {
  /** WASM: threads, the calling thread included (default: all cores, at most 64). */
  readonly threads?: number;
  /**
   * WASM: calls on fewer than `threads * parallelThreshold` elements use
   * fewer threads (default 32768; 1 splits every call, for tests).
   */
  readonly parallelThreshold?: number;
}

/**
 * Opens a device: `"reference"` (plain TypeScript), `"wasm"` (WASM SIMD,
 * threaded) or `"webgpu"` (the first adapter `navigator.gpu` offers).
 *
 * @param kind Which device.
 * @param options Threads and split threshold (WASM).
 * @returns The device; dispose it when done (`using dev = await device(...)`).
 * @throws {RangeError} On an unknown kind or bad options.
 * @throws {Error} When `"webgpu"` finds no adapter.
 *
 * @example
 * ```ts
 * import { device, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * using dev = await device("wasm", { threads: 2 });
 * const x = dev.upload([-1, 2], [2]);
 * assert.deepEqual([...await dev.kernels.activation("relu", x).read()], [0, 2]);
 * assert.equal(Tensor.from([1]).device.kind, "reference");
 * ```
 */
export async function device(
  kind: DeviceKind,
  options: DeviceOptions = {},
): Promise<Device> {
  switch (kind) {
    case "reference": {
      const { referenceDevice } = await import("./reference/device.ts");
      return referenceDevice;
    }
    case "wasm": {
      const { createWasmDevice } = await import("../asm/device.ts");
      return await createWasmDevice(options);
    }
    case "webgpu": {
      const { createGpuDevice } = await import("../gpu/device.ts");
      return await createGpuDevice();
    }
    default:
      throw new RangeError(
        `Unknown device ${
          JSON.stringify(kind)
        }: expected "reference", "wasm" or "webgpu"`,
      );
  }
}
