/**
 * The WASM device's threads: the calling thread plus `threads - 1` Web
 * Workers, each with its own instance of the kernel module over one shared
 * memory, and the rules that split a kernel call into per-thread jobs.
 *
 * A call stays synchronous: {@link WorkerPool.run} hands jobs 1.. to the
 * workers, runs job 0 on the calling thread, then waits for the workers in
 * `Atomics.wait` (protocol in `asm/protocol.ts`).
 *
 * The splits decide which elements each thread sums, so they fix the order
 * of every threaded reduction: for a given thread count and
 * `parallelThreshold` a kernel's result never changes.
 *
 * @module
 */

import {
  argsOffset,
  CONTROL,
  CONTROL_WORDS,
  instantiateKernels,
  invokeKernel,
  KERNEL_NAMES,
  type KernelArguments,
  type KernelExports,
  type KernelName,
  MAX_ARGS,
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
const GEMM_ROW_GRAIN = 4;
/** Column splits fall on multiples of the micro-tile's 12 columns. */
const GEMM_COL_GRAIN = 12;

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
    this.#control = new Int32Array(memory.buffer, 0, threads * CONTROL_WORDS);
    this.exports = instantiateKernels(memory);
  }

  /**
   * Starts `threads - 1` workers over `memory`, whose first
   * `headerBytes(threads)` bytes hold the control block.
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
    const control = this.#control;
    const sequence = ++this.#sequence;
    const buffer = this.#memory.buffer;
    const op = KERNEL_NAMES.indexOf(name);
    for (let t = 1; t < jobs.length; t++) {
      const values = positionalArguments(name, jobs[t]);
      new Float64Array(buffer, argsOffset(t, this.threads), MAX_ARGS).set(
        values,
      );
      const base = t * CONTROL_WORDS;
      control[base + CONTROL.op] = op;
      control[base + CONTROL.argCount] = values.length;
      Atomics.store(control, base + CONTROL.sequence, sequence);
      Atomics.notify(control, base + CONTROL.sequence);
    }
    let failure: unknown;
    try {
      if (jobs.length > 0) invokeKernel(this.exports, name, jobs[0]);
    } catch (error) {
      failure = error;
    }
    for (let t = 1; t < jobs.length; t++) {
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
    if (failure !== undefined) throw failure;
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
