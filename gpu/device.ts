/**
 * The WebGPU device: tensors in GPU storage buffers, kernels in WGSL.
 *
 * Every tensor is a `GPUBuffer` (STORAGE | COPY_SRC | COPY_DST). Kernels
 * record compute passes into one command encoder that is submitted when a
 * tensor is read, when a device scope ends, or every few hundred commands;
 * nothing is read back in the middle of a step. Reading ({@link
 * GpuDevice.read}) maps a staging buffer: the one await. The host cannot
 * see the buffers, so `tensor.get()` and `tensor.toFloat32Array()` throw,
 * except on a tensor of at most {@link HOST_COPY_LIMIT} elements that was
 * read before (it keeps a host copy: tensors never change).
 *
 * @module
 */

import { BaseDevice, type Storage } from "../core/device.ts";
import type { Kernels } from "../core/kernels.ts";
import type { DType } from "../core/tensor.ts";
import { gpuKernels } from "./kernels.ts";
import { CommandQueue } from "./queue.ts";

/**
 * Tensors of at most this many elements keep a host copy once read, which
 * `tensor.get()` and the host-side code of the methods (plans, BOPs) use.
 */
export const HOST_COPY_LIMIT = 65536;

/** Thrown when WebGPU, or a usable adapter, is not available. */
export class GpuUnavailableError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was missing.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GpuUnavailableError";
  }
}

/** What reports and tolerance decisions need to know about the adapter. */
export interface GpuAdapterSummary {
  /** Whether this is a software / fallback adapter (e.g. llvmpipe). */
  readonly isFallbackAdapter: boolean;
  /** Adapter vendor as the implementation reports it (may be empty). */
  readonly vendor: string;
  /** Adapter architecture (may be empty). */
  readonly architecture: string;
  /** Human-readable description, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits)"`. */
  readonly description: string;
  /** `maxStorageBufferBindingSize` of the device, in bytes. */
  readonly maxStorageBufferBindingSize: number;
  /** `maxBufferSize` of the device, in bytes. */
  readonly maxBufferSize: number;
}

// Limits worth raising to the adapter's values (the defaults are small:
// 128 MiB per storage binding). Asking for every limit the adapter lists
// fails on some implementations.
const RAISED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Requests the first adapter and a device with its raised limits. */
async function requestDevice(): Promise<GPUDevice> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new GpuUnavailableError(
      "Cannot open the WebGPU device: navigator.gpu is undefined in this runtime",
    );
  }
  const adapter = await gpu.requestAdapter();
  if (!adapter) {
    throw new GpuUnavailableError(
      "Cannot open the WebGPU device: navigator.gpu.requestAdapter() returned null (no GPU or software adapter found)",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  try {
    return await adapter.requestDevice({ requiredLimits });
  } catch (cause) {
    throw new GpuUnavailableError(
      `Cannot open the WebGPU device: requestDevice() failed with limits ${
        JSON.stringify(requiredLimits)
      }`,
      { cause },
    );
  }
}

function summarize(gpu: GPUDevice): GpuAdapterSummary {
  const info = gpu.adapterInfo;
  return Object.freeze({
    isFallbackAdapter: info?.isFallbackAdapter === true,
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    description: info?.description ?? "",
    maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize,
    maxBufferSize: gpu.limits.maxBufferSize,
  });
}

/**
 * A device whose tensors live in WebGPU storage buffers. Made by
 * {@link createGpuDevice}; see the module documentation.
 */
export class GpuDevice extends BaseDevice {
  /** Always `"webgpu"`. */
  readonly kind = "webgpu" as const;
  /** `"webgpu (<adapter description>)"`. */
  readonly name: string;
  /** Every kernel, in WGSL (see `gpu/kernels.ts`). */
  readonly kernels: Kernels;
  /** The adapter this device runs on. */
  readonly adapterInfo: GpuAdapterSummary;
  readonly #queue: CommandQueue;
  /** Host copies of small tensors already read (a tensor never changes). */
  readonly #copies = new WeakMap<Storage, Float32Array | Int32Array>();

  /**
   * Use {@link createGpuDevice}.
   *
   * @ignore
   */
  constructor(queue: CommandQueue, kernels: (dev: GpuDevice) => Kernels) {
    super();
    this.#queue = queue;
    this.adapterInfo = summarize(queue.gpu);
    this.name = `webgpu (${this.adapterInfo.description || "unnamed adapter"})`;
    this.kernels = kernels(this);
  }

  /**
   * The underlying WebGPU device (for tests and diagnostics).
   *
   * @ignore
   */
  get gpuDevice(): GPUDevice {
    return this.#queue.gpu;
  }

  /**
   * A storage buffer (pooled or new) for `length` four-byte elements.
   *
   * @ignore
   */
  protected allocateHandle(length: number, _dtype: DType): unknown {
    const bytes = length * 4;
    if (bytes > this.#queue.maxBindingBytes) {
      throw new RangeError(
        `Cannot allocate ${length} elements on the ${this.name} device: ${bytes} bytes exceed its storage binding limit of ${this.#queue.maxBindingBytes} bytes`,
      );
    }
    return this.#queue.storage(bytes, "bbits tensor");
  }

  /**
   * Returns the buffer to the pool once the work that uses it is submitted.
   *
   * @ignore
   */
  protected releaseHandle(handle: unknown): void {
    this.#queue.release(handle as GPUBuffer);
  }

  /**
   * Writes an upload with `queue.writeBuffer`.
   *
   * @ignore
   */
  protected writeHandle(
    handle: unknown,
    values: Float32Array | Int32Array,
  ): void {
    this.#queue.write(handle as GPUBuffer, values);
  }

  /**
   * Submits pending work and maps a staging copy of the buffer.
   *
   * @ignore
   */
  protected async readHandle(
    storage: Storage,
  ): Promise<Float32Array | Int32Array> {
    const copy = this.#copies.get(storage);
    if (copy) return copy.slice();
    const bytes = await this.#queue.read(
      storage.handle as GPUBuffer,
      storage.length * 4,
    );
    const values = storage.dtype === "int32"
      ? new Int32Array(bytes)
      : new Float32Array(bytes);
    if (storage.length <= HOST_COPY_LIMIT) {
      this.#copies.set(storage, values.slice());
    }
    return values;
  }

  /**
   * Records a `clearBuffer`.
   *
   * @ignore
   */
  protected zeroHandle(storage: Storage): void {
    this.#queue.settle();
    this.#queue.clear(storage.handle as GPUBuffer);
  }

  /**
   * Throws: the host cannot see GPU memory (use `await tensor.read()`).
   *
   * @throws {TypeError} Always.
   * @ignore
   */
  hostView(storage: Storage): Float32Array | Int32Array {
    const copy = this.#copies.get(storage);
    if (copy) return copy;
    throw new TypeError(
      `The ${this.name} device keeps tensors in GPU memory, which the host cannot see: read them with await tensor.read()`,
    );
  }

  /**
   * Submits the scope's commands.
   *
   * @ignore
   */
  protected override endScope(): void {
    this.#queue.flush();
  }

  /**
   * Destroys the WebGPU device and with it every buffer.
   *
   * @ignore
   */
  protected disposeResources(): void {
    this.#queue.destroy();
  }
}

/** Options of {@link createGpuDevice}. */
export interface GpuDeviceOptions {
  /**
   * Workgroups per dimension of a dispatch grid, at most the adapter's
   * `maxComputeWorkgroupsPerDimension` (the default). Larger dispatches
   * use a second dimension; a small value makes small inputs take that
   * path (for tests).
   */
  readonly maxWorkgroupsPerDimension?: number;
}

/**
 * Opens the WebGPU device on the first adapter `navigator.gpu` offers
 * (with the adapter's limits), compiling its kernels.
 *
 * @param options A smaller dispatch grid limit (for tests).
 * @returns The device; dispose it when done (`using dev = await createGpuDevice()`).
 * @throws {GpuUnavailableError} If WebGPU or an adapter is missing.
 * @throws {RangeError} If `maxWorkgroupsPerDimension` is not an integer
 *   from 1 to the adapter's limit.
 *
 * @example Quantize at 4 bits on the GPU and read the result
 * ```ts
 * import { createGpuDevice } from "@bbits/core/gpu";
 * import assert from "node:assert/strict";
 *
 * using dev = await createGpuDevice();
 * const x = dev.upload([-0.9, 0.2, 0.5], [3]);
 * const xmax = dev.upload([1], [1]);
 * const gates = dev.upload([1, 0, 0, 0], [4]); // z4 on: 4 bits
 * const xq = await dev.kernels.residualQuantize(x, xmax, gates, null, false).read();
 * // Unsigned 4 bits: steps of 1/15 in [0, 1].
 * [0, 3 / 15, 7 / 15].forEach((v, i) => assert.ok(Math.abs(xq[i] - v) < 1e-6));
 * ```
 */
export async function createGpuDevice(
  options: GpuDeviceOptions = {},
): Promise<GpuDevice> {
  const gpu = await requestDevice();
  try {
    const limit = gpu.limits.maxComputeWorkgroupsPerDimension;
    const groups = options.maxWorkgroupsPerDimension ?? limit;
    if (!Number.isInteger(groups) || groups < 1 || groups > limit) {
      throw new RangeError(
        `Cannot open the WebGPU device with maxWorkgroupsPerDimension ${groups}: expected an integer from 1 to ${limit}`,
      );
    }
    const queue = new CommandQueue(gpu, groups);
    const kernels = await gpuKernels(queue);
    return new GpuDevice(queue, kernels);
  } catch (error) {
    gpu.destroy();
    throw error;
  }
}
