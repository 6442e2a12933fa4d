/**
 * The WASM device's threads: the calling thread plus `threads - 1` Web
 * Workers, each with its own instance of the kernel module over one shared
 * memory, and the rules that split a kernel call into per-thread jobs.
 *
 * A call stays synchronous: {@link WorkerPool.run} hands jobs 1.. to the
 * workers, runs job 0 on the calling thread, then waits for the workers in
 * `Atomics.wait` (protocol in `asm/protocol.ts`).
 * {@link WorkerPool.runChunks} instead lets every thread claim chunks of
 * the call until none is left, so a thread that another process holds up
 * delays the call by one chunk, not by its whole share: for kernels whose
 * chunks write disjoint outputs (GEMM, convolution, im2col).
 *
 * The splits decide which elements each thread sums, so they fix the order
 * of every threaded reduction: for a given thread count and
 * `parallelThreshold` a kernel's result never changes. Reductions therefore
 * keep one static job per thread; a chunk never sums across chunks.
 *
 * @module
 */

import {
  argsOffset,
  chunkTableOffset,
  claimChunks,
  CONTROL,
  CONTROL_WORDS,
  HEADER_BASE,
  instantiateKernels,
  invokeKernel,
  KERNEL_NAMES,
  type KernelArguments,
  type KernelExports,
  type KernelName,
  MAX_ARGS,
  MAX_CHUNKS,
  positionalArguments,
  QUIT,
} from "./protocol.ts";

/** One thread's share of a call: a contiguous range of elements or units. */
export interface Job {
  /** First element (or unit) of the range. */
  readonly begin: number;
  /** One past the last. */
  readonly end: number;
}

/** Threads split work at multiples of this many elements (a cache line of float32). */
const SPLIT_GRAIN = 16;
/**
 * A GEMM of fewer than `threads * parallelThreshold * GEMM_FLOPS_PER_ELEMENT`
 * flops uses fewer threads (at least that many flops each): 32768 * 64 is
 * about 2 MFLOP, below which waking a worker costs more than it saves.
 */
const GEMM_FLOPS_PER_ELEMENT = 64;
/** Row splits of a GEMM fall on multiples of the micro-tile's 4 rows. */
export const GEMM_ROW_GRAIN = 4;
/** Column splits fall on multiples of the micro-tile's 12 columns. */
export const GEMM_COL_GRAIN = 12;

/** How a device splits calls: its thread count and threshold. */
export interface SplitPolicy {
  /** Threads, the calling one included. */
  readonly threads: number;
  /** Fewest elements of work per thread worth waking it for. */
  readonly parallelThreshold: number;
}

/**
 * Splits `[0, length)` into contiguous ranges, one per thread used (at
 * least `parallelThreshold` elements each), at multiples of 16 elements.
 *
 * @param policy Threads and threshold.
 * @param length Elements.
 * @returns At least one job (empty ranges possible at the end).
 *
 * @example
 * ```ts
 * import { splitElements } from "./pool.ts";
 * import assert from "node:assert/strict";
 *
 * const jobs = splitElements({ threads: 2, parallelThreshold: 1 }, 40);
 * assert.deepEqual(jobs, [{ begin: 0, end: 32 }, { begin: 32, end: 40 }]);
 * ```
 */
export function splitElements(policy: SplitPolicy, length: number): Job[] {
  const byThreshold = Math.floor(length / policy.parallelThreshold);
  const used = Math.max(1, Math.min(policy.threads, byThreshold));
  const chunk = Math.ceil(length / used / SPLIT_GRAIN) * SPLIT_GRAIN;
  const jobs: Job[] = [];
  for (let t = 0; t < used; t++) {
    const begin = Math.min(length, t * chunk);
    const end = Math.min(length, begin + chunk);
    jobs.push({ begin, end });
  }
  return jobs;
}

/**
 * Splits `units` (planes, samples, channels, rows: each `perUnit` elements
 * of work) into contiguous ranges, one per thread used, with at least
 * `parallelThreshold` elements per thread.
 *
 * @param policy Threads and threshold.
 * @param units Units of work.
 * @param perUnit Elements per unit.
 * @returns At least one job.
 *
 * @example
 * ```ts
 * import { splitUnits } from "./pool.ts";
 * import assert from "node:assert/strict";
 *
 * const jobs = splitUnits({ threads: 2, parallelThreshold: 1 }, 3, 10);
 * assert.deepEqual(jobs, [{ begin: 0, end: 2 }, { begin: 2, end: 3 }]);
 * ```
 */
export function splitUnits(
  policy: SplitPolicy,
  units: number,
  perUnit: number,
): Job[] {
  const byThreshold = Math.floor(units * perUnit / policy.parallelThreshold);
  const used = Math.max(1, Math.min(policy.threads, byThreshold, units));
  const chunk = Math.ceil(units / used);
  const jobs: Job[] = [];
  for (let begin = 0; begin < units || jobs.length === 0; begin += chunk) {
    jobs.push({ begin, end: Math.min(units, begin + chunk) });
  }
  return jobs;
}

/**
 * Splits `C`'s rows (when `m >= n`, in multiples of 4) or columns (in
 * multiples of 12) over the threads a GEMM of `2 m n k` flops deserves.
 *
 * @param policy Threads and threshold.
 * @param m Rows of `C`.
 * @param n Columns of `C`.
 * @param k The inner dimension.
 * @returns The row ranges (`m >= n`) or column ranges; none when `C` is empty.
 *
 * @example
 * ```ts
 * import { splitGemm } from "./pool.ts";
 * import assert from "node:assert/strict";
 *
 * const jobs = splitGemm({ threads: 2, parallelThreshold: 1 }, 10, 3, 5);
 * assert.deepEqual(jobs, [{ begin: 0, end: 8 }, { begin: 8, end: 10 }]);
 * ```
 */
export function splitGemm(
  policy: SplitPolicy,
  m: number,
  n: number,
  k: number,
): Job[] {
  const flops = 2 * m * n * k;
  const perThread = policy.parallelThreshold * GEMM_FLOPS_PER_ELEMENT;
  const byRows = m >= n;
  const length = byRows ? m : n;
  const grain = byRows ? GEMM_ROW_GRAIN : GEMM_COL_GRAIN;
  const used = Math.max(
    1,
    Math.min(
      policy.threads,
      Math.floor(flops / perThread),
      Math.ceil(length / grain),
    ),
  );
  const chunk = Math.ceil(length / used / grain) * grain;
  const jobs: Job[] = [];
  for (let begin = 0; begin < length; begin += chunk) {
    jobs.push({ begin, end: Math.min(length, begin + chunk) });
  }
  return jobs;
}

/** Chunks per thread of a call split by {@link splitChunks}. */
const CHUNKS_PER_THREAD = 4;

/**
 * Cuts the range a static split covers (`jobs`, from the split functions
 * above) into about `perThread` times as many chunks, at multiples of
 * `grain`, for threads that claim chunks as they come free: a thread held
 * up by another process then delays the call by one chunk, not by its
 * whole share. One job stays one chunk (a call too small to share).
 *
 * @param jobs A split of `[0, length)` into contiguous ranges.
 * @param grain Chunk boundaries fall on multiples of it (except the end).
 * @param perThread Chunks per job (default 4; at most 64 chunks in all).
 * @returns The chunks, in order, covering the same range.
 *
 * @example
 * ```ts
 * import { splitChunks } from "./pool.ts";
 * import assert from "node:assert/strict";
 *
 * const chunks = splitChunks([{ begin: 0, end: 8 }, { begin: 8, end: 10 }], 2, 2);
 * assert.deepEqual(chunks.map((c) => c.begin), [0, 4, 8]);
 * assert.equal(chunks[2].end, 10);
 * ```
 */
export function splitChunks(
  jobs: readonly Job[],
  grain: number,
  perThread = CHUNKS_PER_THREAD,
): Job[] {
  if (jobs.length <= 1) return [...jobs];
  const begin = jobs[0].begin;
  const end = jobs[jobs.length - 1].end;
  const count = Math.min(MAX_CHUNKS, jobs.length * perThread);
  const size = Math.max(
    grain,
    Math.ceil((end - begin) / count / grain) * grain,
  );
  const chunks: Job[] = [];
  for (let b = begin; b < end; b += size) {
    chunks.push({ begin: b, end: Math.min(end, b + size) });
  }
  return chunks;
}

/** The calling thread and its workers over one shared memory. */
export class WorkerPool {
  /** Threads, the calling one included. */
  readonly threads: number;
  /** The calling thread's instance of the kernel module. */
  readonly exports: KernelExports;
  readonly #memory: WebAssembly.Memory;
  readonly #control: Int32Array;
  readonly #workers: Worker[] = [];
  #sequence = 0;
  #closed = false;

  private constructor(memory: WebAssembly.Memory, threads: number) {
    this.threads = threads;
    this.#memory = memory;
    this.#control = new Int32Array(
      memory.buffer,
      HEADER_BASE,
      threads * CONTROL_WORDS,
    );
    this.exports = instantiateKernels(memory);
  }

  /**
   * Starts `threads - 1` workers over `memory`, whose first
   * bytes below `headerBytes(threads)` hold the control block.
   *
   * @param memory The shared memory.
   * @param threads Threads, the calling one included.
   * @returns The pool, once every worker is ready.
   * @throws {Error} If a worker fails to start (the others are stopped).
   */
  static async start(
    memory: WebAssembly.Memory,
    threads: number,
  ): Promise<WorkerPool> {
    const pool = new WorkerPool(memory, threads);
    const ready: Promise<void>[] = [];
    for (let slot = 1; slot < threads; slot++) {
      const worker = new Worker(new URL("./worker.ts", import.meta.url), {
        type: "module",
      });
      pool.#workers.push(worker);
      ready.push(workerReady(worker, slot));
      worker.postMessage({ memory, slot, threads });
    }
    try {
      await Promise.all(ready);
    } catch (error) {
      pool.dispose();
      throw error;
    }
    return pool;
  }

  /**
   * Runs export `name` once per job: jobs 1.. on the workers, job 0 on
   * this thread, and returns when all are done.
   *
   * @param name The export.
   * @param jobs Each thread's named arguments (at most `threads`).
   * @throws {Error} If a kernel failed on any thread, or after dispose.
   */
  run<N extends KernelName>(
    name: N,
    jobs: readonly KernelArguments[N][],
  ): void {
    if (this.#closed) throw new Error("The WASM worker pool was disposed");
    if (jobs.length > this.threads) {
      throw new RangeError(
        `Cannot run ${jobs.length} jobs of ${name} on ${this.threads} threads`,
      );
    }
    const sequence = ++this.#sequence;
    const buffer = this.#memory.buffer;
    const op = KERNEL_NAMES.indexOf(name);
    for (let t = 1; t < jobs.length; t++) {
      const values = positionalArguments(name, jobs[t]);
      new Float64Array(buffer, argsOffset(t, this.threads), MAX_ARGS).set(
        values,
      );
      this.#post(t, op, values.length, 0, 0, sequence);
    }
    let failure: unknown;
    try {
      if (jobs.length > 0) invokeKernel(this.exports, name, jobs[0]);
    } catch (error) {
      failure = error;
    }
    failure = this.#join(name, jobs.length, sequence, failure);
    if (failure !== undefined) throw failure;
  }

  /**
   * Runs export `name` once per chunk, the chunks claimed by the threads as
   * they come free (see `claimChunks` in `asm/protocol.ts`): for calls
   * whose chunks write disjoint outputs, so the results do not depend on
   * which thread runs which. A chunk's `scratch` argument (if the export
   * has one) is offset by `slot * scratchStride` bytes on each thread.
   *
   * @param name The export.
   * @param chunks Each chunk's named arguments (at most `MAX_CHUNKS`).
   * @param scratchStride Bytes between the threads' scratch blocks (0 without scratch).
   * @throws {Error} If a kernel failed on any thread, or after dispose.
   */
  runChunks<N extends KernelName>(
    name: N,
    chunks: readonly KernelArguments[N][],
    scratchStride = 0,
  ): void {
    if (this.#closed) throw new Error("The WASM worker pool was disposed");
    if (chunks.length > MAX_CHUNKS) {
      throw new RangeError(
        `Cannot run ${chunks.length} chunks of ${name}: at most ${MAX_CHUNKS}`,
      );
    }
    if (chunks.length === 0) return;
    const buffer = this.#memory.buffer;
    const table = new Float64Array(
      buffer,
      chunkTableOffset(this.threads),
      MAX_CHUNKS * MAX_ARGS,
    );
    let argCount = 0;
    chunks.forEach((chunk, i) => {
      const values = positionalArguments(name, chunk);
      argCount = values.length;
      table.set(values, i * MAX_ARGS);
    });
    const sequence = ++this.#sequence;
    const op = KERNEL_NAMES.indexOf(name);
    const helpers = Math.min(this.threads, chunks.length);
    Atomics.store(this.#control, CONTROL.next, 0);
    for (let t = 1; t < helpers; t++) {
      this.#post(t, op, argCount, chunks.length, scratchStride, sequence);
    }
    let failure: unknown;
    try {
      claimChunks(
        this.exports,
        name,
        this.#memory,
        this.threads,
        0,
        chunks.length,
        argCount,
        scratchStride,
      );
    } catch (error) {
      failure = error;
      // Leave no chunk unclaimed, so the workers stop.
      Atomics.store(this.#control, CONTROL.next, chunks.length);
    }
    failure = this.#join(name, helpers, sequence, failure);
    if (failure !== undefined) throw failure;
  }

  /** Hands worker `t` a job: the kernel, its argument count and mode. */
  #post(
    t: number,
    op: number,
    argCount: number,
    chunks: number,
    scratchStride: number,
    sequence: number,
  ): void {
    const control = this.#control;
    const base = t * CONTROL_WORDS;
    control[base + CONTROL.op] = op;
    control[base + CONTROL.argCount] = argCount;
    control[base + CONTROL.chunks] = chunks;
    control[base + CONTROL.scratchStride] = scratchStride;
    Atomics.store(control, base + CONTROL.sequence, sequence);
    Atomics.notify(control, base + CONTROL.sequence);
  }

  /** Waits for workers `1 .. used - 1`; returns the first failure. */
  #join(
    name: string,
    used: number,
    sequence: number,
    failure: unknown,
  ): unknown {
    const control = this.#control;
    for (let t = 1; t < used; t++) {
      const index = t * CONTROL_WORDS + CONTROL.done;
      for (
        let done = Atomics.load(control, index);
        done !== sequence;
        done = Atomics.load(control, index)
      ) {
        Atomics.wait(control, index, done, 1);
      }
      if (control[t * CONTROL_WORDS + CONTROL.failed] !== 0) {
        failure ??= new Error(`WASM worker ${t} failed running ${name}`);
      }
    }
    return failure;
  }

  /** Stops the workers; idempotent. */
  dispose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const sequence = ++this.#sequence;
    for (let t = 1; t <= this.#workers.length; t++) {
      const base = t * CONTROL_WORDS;
      this.#control[base + CONTROL.op] = QUIT;
      Atomics.store(this.#control, base + CONTROL.sequence, sequence);
      Atomics.notify(this.#control, base + CONTROL.sequence);
    }
    for (const worker of this.#workers) worker.terminate();
    this.#workers.length = 0;
  }
}

function workerReady(worker: Worker, slot: number): Promise<void> {
  return new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      if (event.data === "ready") resolve();
      else {
        reject(
          new Error(`WASM worker ${slot} failed to start: ${event.data}`),
        );
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      reject(
        new Error(`WASM worker ${slot} failed to start: ${event.message}`),
      );
    };
  });
}
