/**
 * The WASM device: every tensor lives in one shared `WebAssembly.Memory`,
 * allocated by a first-fit heap (`asm/heap.ts`), and the kernels
 * (`asm/kernels.ts`) are the AssemblyScript SIMD kernels of `asm/src/`,
 * called on byte offsets and split over a pool of worker threads
 * (`asm/pool.ts`). Nothing is copied in or out per op: a kernel reads its
 * inputs where they are and allocates its outputs on the device.
 *
 * The kernels without an AssemblyScript version (elementwise arithmetic,
 * the gates, the prior, SGD, grouped convolution, the accuracy count) run
 * the reference device's TypeScript on zero-copy views of the memory, so
 * they match the reference bit for bit.
 *
 * @module
 */

import {
  BaseDevice,
  type DeviceOptions,
  type Storage,
} from "../core/device.ts";
import type { Kernels } from "../core/kernels.ts";
import type { DType, Tensor } from "../core/tensor.ts";
import { Heap } from "./heap.ts";
import { wasmKernels } from "./kernels.ts";
import { type SplitPolicy, WorkerPool } from "./pool.ts";
import {
  headerBytes,
  invokeKernel,
  type KernelArguments,
  type KernelExports,
  type KernelName,
} from "./protocol.ts";

const PAGE_BYTES = 65536;
/** The module declares at most 65536 pages (4 GiB). */
const MAX_PAGES = 65536;
const MAX_THREADS = 64;
/** Below this many elements per extra thread, a call runs on the calling thread alone. */
const DEFAULT_PARALLEL_THRESHOLD = 32768;

/**
 * A device whose tensors live in WASM memory and whose kernels run as
 * WASM SIMD on `threads` threads. Made by {@link createWasmDevice}.
 *
 * Internal members (marked `@ignore`) serve the kernels: byte offsets of
 * tensors, scratch memory, and running exports on the threads.
 */
export class WasmDevice extends BaseDevice implements SplitPolicy {
  /** Always `"wasm"`. */
  readonly kind = "wasm" as const;
  /** E.g. `"wasm (2 threads, simd128)"`. */
  readonly name: string;
  /** Threads, the calling thread included. */
  readonly threads: number;
  /** Fewest elements of work per thread worth waking it for. */
  readonly parallelThreshold: number;
  /** The SIMD instruction set the kernels use. */
  readonly simd = "simd128" as const;
  /** Every kernel (see `asm/kernels.ts`). */
  readonly kernels: Kernels;
  /**
   * The memory every tensor lives in (grows: take views from its current
   * buffer).
   *
   * @ignore
   */
  readonly memory: WebAssembly.Memory;
  readonly #pool: WorkerPool;
  readonly #heap: Heap;

  private constructor(
    memory: WebAssembly.Memory,
    heapBase: number,
    pool: WorkerPool,
    parallelThreshold: number,
  ) {
    super();
    this.memory = memory;
    this.#pool = pool;
    this.#heap = new Heap(memory, heapBase);
    this.threads = pool.threads;
    this.parallelThreshold = parallelThreshold;
    this.name = `wasm (${pool.threads} thread${
      pool.threads === 1 ? "" : "s"
    }, simd128)`;
    this.kernels = wasmKernels(this);
  }

  /**
   * Starts the workers and makes the device (use {@link createWasmDevice}).
   *
   * @ignore
   */
  static async open(
    threads: number,
    parallelThreshold: number,
  ): Promise<WasmDevice> {
    const heapBase = Math.ceil(headerBytes(threads) / PAGE_BYTES) * PAGE_BYTES;
    const memory = new WebAssembly.Memory({
      initial: heapBase / PAGE_BYTES + 1,
      maximum: MAX_PAGES,
      shared: true,
    });
    const pool = await WorkerPool.start(memory, threads);
    return new WasmDevice(memory, heapBase, pool, parallelThreshold);
  }

  /** Bytes of the memory in live tensors and scratch. */
  get bytesInUse(): number {
    return this.#heap.bytesInUse;
  }

  /** The most bytes ever in live tensors and scratch at once. */
  get peakBytes(): number {
    return this.#heap.peakBytes;
  }

  // --- memory (BaseDevice) -------------------------------------------------

  /** A heap block of `length` 4-byte elements; the handle is its byte offset. */
  protected allocateHandle(length: number, _dtype: DType): unknown {
    return this.#heap.alloc(length * 4);
  }

  /** Returns the block to the heap. */
  protected releaseHandle(handle: unknown): void {
    this.#heap.free(handle as number);
  }

  /** Copies host values into the block. */
  protected writeHandle(
    handle: unknown,
    values: Float32Array | Int32Array,
  ): void {
    const offset = handle as number;
    const buffer = this.memory.buffer;
    if (values instanceof Int32Array) {
      new Int32Array(buffer, offset, values.length).set(values);
    } else {
      new Float32Array(buffer, offset, values.length).set(values);
    }
  }

  /** Copies the elements out of the memory. */
  protected readHandle(storage: Storage): Promise<Float32Array | Int32Array> {
    // `new` + `set`: `slice()` of a view into WASM memory measured 3x slower.
    const view = this.hostView(storage);
    const copy = view instanceof Int32Array
      ? new Int32Array(view.length)
      : new Float32Array(view.length);
    copy.set(view);
    return Promise.resolve(copy);
  }

  /** Fills the block with zeros. */
  protected zeroHandle(storage: Storage): void {
    this.hostView(storage).fill(0);
  }

  /**
   * A view of the storage on the memory's current buffer (take a new one
   * after any allocation: growth replaces the buffer).
   *
   * @ignore
   */
  hostView(storage: Storage): Float32Array | Int32Array {
    const offset = storage.handle as number;
    return storage.dtype === "int32"
      ? new Int32Array(this.memory.buffer, offset, storage.length)
      : new Float32Array(this.memory.buffer, offset, storage.length);
  }

  /** Stops the workers. */
  protected disposeResources(): void {
    this.#pool.dispose();
  }

  // --- what the kernels use -------------------------------------------------

  /**
   * The byte offset of a live tensor of this device.
   *
   * @ignore
   */
  offset(tensor: Tensor): number {
    return this.storage(tensor).handle as number;
  }

  /**
   * A float32 view of a tensor of this device (valid until the next
   * allocation: the memory may grow).
   *
   * @ignore
   */
  f32(tensor: Tensor): Float32Array {
    const storage = this.storage(tensor);
    if (storage.dtype !== "float32") {
      throw new TypeError(`Expected a float32 tensor, got ${storage.dtype}`);
    }
    return this.hostView(storage) as Float32Array;
  }

  /**
   * An int32 view of a tensor of this device (valid until the next
   * allocation).
   *
   * @ignore
   */
  i32(tensor: Tensor): Int32Array {
    const storage = this.storage(tensor);
    if (storage.dtype !== "int32") {
      throw new TypeError(`Expected an int32 tensor, got ${storage.dtype}`);
    }
    return this.hostView(storage) as Int32Array;
  }

  /**
   * Runs `body` with scratch blocks of the given byte sizes (contents
   * unspecified), freed when it returns or throws.
   *
   * @ignore
   */
  withScratch<T>(bytes: readonly number[], body: (offsets: number[]) => T): T {
    const offsets: number[] = [];
    try {
      for (const size of bytes) offsets.push(this.#heap.alloc(size));
      return body(offsets);
    } finally {
      for (const offset of offsets) this.#heap.free(offset);
    }
  }

  /**
   * Runs export `name` once per job over the threads (job 0 on this one).
   *
   * @ignore
   */
  run<N extends KernelName>(
    name: N,
    jobs: readonly KernelArguments[N][],
  ): void {
    this.#pool.run(name, jobs);
  }

  /**
   * Runs export `name` once per chunk, the chunks claimed by the threads as
   * they come free (chunks must write disjoint outputs). With
   * `scratchBytes`, each thread gets a private scratch block of that size,
   * passed as the `scratch` argument (the chunks' own value is replaced).
   *
   * @ignore
   */
  runChunks<N extends KernelName>(
    name: N,
    chunks: readonly KernelArguments[N][],
    scratchBytes = 0,
  ): void {
    if (scratchBytes <= 0) {
      this.#pool.runChunks(name, chunks);
      return;
    }
    const stride = Math.ceil(scratchBytes / 64) * 64;
    const used = Math.min(this.threads, chunks.length);
    this.withScratch([stride * used], ([base]) =>
      this.#pool.runChunks(
        name,
        chunks.map((c) => ({ ...c, scratch: base }) as KernelArguments[N]),
        stride,
      ));
  }

  /**
   * Calls export `name` on this thread alone.
   *
   * @ignore
   */
  call<N extends KernelName>(
    name: N,
    args: KernelArguments[N],
  ): ReturnType<KernelExports[N]> {
    return invokeKernel(this.#pool.exports, name, args);
  }
}

/**
 * Opens a WASM device: a shared memory, the kernel module instantiated on
 * the calling thread and `threads - 1` workers. Kernel calls stay
 * synchronous: the calling thread does its share and waits for the workers.
 *
 * @param options `threads` (default: all cores, at most 64) and
 *   `parallelThreshold` (default 32768; a call on fewer than
 *   `threads * parallelThreshold` elements uses fewer threads; 1 splits
 *   every call, for tests).
 * @returns The device; dispose it when done (`using dev = await ...`).
 * @throws {RangeError} If `threads` is not an integer in [1, 64] or
 *   `parallelThreshold` not a positive integer.
 * @throws {Error} If a worker fails to start.
 *
 * @example
 * ```ts
 * import { createWasmDevice } from "./device.ts";
 * import assert from "node:assert/strict";
 *
 * using dev = await createWasmDevice({ threads: 2 });
 * assert.equal(dev.name, "wasm (2 threads, simd128)");
 * const y = dev.kernels.gemm(dev.upload([1, 2], [1, 2]), dev.upload([1, 2, 3, 4], [2, 2]), { m: 1, n: 2, k: 2, transA: false, transB: false });
 * assert.deepEqual([...await y.read()], [7, 10]);
 * ```
 */
export async function createWasmDevice(
  options: DeviceOptions = {},
): Promise<WasmDevice> {
  const threads = options.threads ??
    Math.min(MAX_THREADS, Math.max(1, navigator.hardwareConcurrency ?? 1));
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new RangeError(
      `Cannot create a WASM device with ${threads} threads: threads must be an integer in [1, ${MAX_THREADS}]`,
    );
  }
  const threshold = options.parallelThreshold ?? DEFAULT_PARALLEL_THRESHOLD;
  if (!Number.isInteger(threshold) || threshold < 1) {
    throw new RangeError(
      `Cannot create a WASM device with parallelThreshold ${threshold}: it must be a positive integer`,
    );
  }
  return await WasmDevice.open(threads, threshold);
}
