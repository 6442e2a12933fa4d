/**
 * The WASM SIMD backend: the fused quantizer kernels of `asm/src/` (compiled
 * by `asm/build.ts` into `asm/kernels.generated.ts`), single-threaded as
 * {@link wasmBackend} or split over Web Workers sharing one
 * `WebAssembly.Memory` with {@link createWasmBackend}; the same module's
 * GEMM ({@link wasmGemm}, {@link WasmBackend.gemm}) and training-op kernels
 * ({@link wasmKernels}, {@link WasmBackend.kernels}).
 *
 * The forward output and `dx` are bit-for-bit those of the reference backend
 * (`core/reference.ts`); the reductions (`dxmax`, `dz2`, `dgates`) are summed
 * in float32 lanes flushed into float64 every 128 elements, then combined on
 * the host in a fixed order, so they agree with the reference to about 1e-6
 * relative and are deterministic for a given thread count.
 *
 * @module
 */

import type {
  QuantizerBackend,
  QuantizerGrads,
  QuantizerPass,
} from "../core/backend.ts";
import { assertRandomKey, type RandomKey } from "../core/rng.ts";
import type { GemmShape } from "../core/ops/gemm.ts";
import type {
  AdamResult,
  AdamStep,
  ChannelLayout,
  ConvGeometry,
  OpKernels,
  PoolGeometry,
} from "../core/ops/kernels.ts";
import { decodeBase64 } from "./base64.ts";
import { KERNELS_WASM_BASE64 } from "./kernels.generated.ts";
import {
  argsOffset,
  CONTROL,
  CONTROL_WORDS,
  headerBytes,
  type KernelExports,
  MAX_ARGS,
  Op,
  runOp,
} from "./protocol.ts";

const PAGE_BYTES = 65536;
/** The module declares at most 65536 pages (4 GiB). */
const MAX_PAGES = 65536;
const ALIGN = 64;
/** Below this many elements per extra thread, a call runs on the calling thread alone. */
const DEFAULT_PARALLEL_THRESHOLD = 32768;
/** Threads split work at multiples of this many elements (a cache line of float32). */
const SPLIT_GRAIN = 16;
const MAX_THREADS = 64;
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

let compiledModule: WebAssembly.Module | undefined;

function kernelModule(): WebAssembly.Module {
  compiledModule ??= new WebAssembly.Module(
    decodeBase64(KERNELS_WASM_BASE64),
  );
  return compiledModule;
}

/**
 * A float32 array living in a {@link WasmBackend}'s memory, made by
 * {@link WasmBackend.alloc}. Valid until the backend's `reset()` or
 * `dispose()`.
 *
 * @example
 * ```ts
 * import { createWasmBackend } from "./backend.ts";
 * import assert from "node:assert/strict";
 *
 * using wasm = await createWasmBackend({ threads: 1 });
 * const buffer = wasm.alloc(3);
 * buffer.view().set([1, 2, 3]);
 * assert.equal(buffer.length, 3);
 * assert.deepEqual(Array.from(buffer.view()), [1, 2, 3]);
 * ```
 */
export interface WasmF32Buffer {
  /** Number of float32 elements. */
  readonly length: number;
  /** Byte offset in the backend's memory (64-byte aligned). */
  readonly byteOffset: number;
  /**
   * A view of the elements. Take a fresh view after any call that may grow
   * the memory (an `alloc`, or a copying `quantizeForward`/`quantizeBackward`):
   * growth replaces the memory's buffer and older views stop at the old size.
   */
  view(): Float32Array;
}

/**
 * Options of {@link createWasmBackend}.
 *
 * @example
 * ```ts
 * import { createWasmBackend, type WasmBackendOptions } from "./backend.ts";
 * import assert from "node:assert/strict";
 *
 * const options: WasmBackendOptions = { threads: 2, parallelThreshold: 65536 };
 * using wasm = await createWasmBackend(options);
 * assert.equal(wasm.threads, 2);
 * ```
 */
export interface WasmBackendOptions {
  /**
   * Threads, the calling thread included: 1 runs everything on the calling
   * thread, `n > 1` starts `n - 1` workers. Default:
   * `navigator.hardwareConcurrency` (at most 64).
   */
  readonly threads?: number;
  /**
   * Calls on fewer than `threads * parallelThreshold` elements use fewer
   * threads (at least this many elements each), since waking a worker costs
   * tens of microseconds. Default 32768; 1 splits every call (for tests).
   */
  readonly parallelThreshold?: number;
}

/**
 * A WASM backend with workers and buffers resident in its memory.
 *
 * @example Random numbers and the copy kernel on resident buffers
 * ```ts
 * import { createWasmBackend } from "./backend.ts";
 * import { uniform } from "../core/rng.ts";
 * import assert from "node:assert/strict";
 *
 * const wasm = await createWasmBackend({ threads: 2 });
 * try {
 *   const u = wasm.alloc(10);
 *   wasm.uniformInto([0, 7], 5, u); // stream elements 5..14 of key [0, 7]
 *   assert.deepEqual(u.view(), uniform([0, 7], 10, 5));
 *   const copy = wasm.alloc(10);
 *   wasm.copyResident(u, copy);
 *   assert.deepEqual(copy.view(), u.view());
 *   wasm.reset(); // frees u and copy
 * } finally {
 *   wasm.dispose();
 * }
 * ```
 */
export interface WasmBackend extends QuantizerBackend {
  /** Threads in use, the calling thread included. */
  readonly threads: number;
  /** The SIMD instruction set the kernels use. */
  readonly simd: "simd128" | "relaxed-simd";
  /** Allocates `length` float32 elements (zeroed) in the module's memory. */
  alloc(length: number): WasmF32Buffer;
  /** Frees every buffer made by {@link WasmBackend.alloc} at once. */
  reset(): void;
  /** Fused forward from resident `x` into resident `out` (may be `x`). */
  forwardResident(
    x: WasmF32Buffer,
    out: WasmF32Buffer,
    pass: QuantizerPass,
  ): void;
  /** Fused backward; writes `dx` (may alias `x` or `dy`) and returns the reductions. */
  backwardResident(
    x: WasmF32Buffer,
    dy: WasmF32Buffer,
    dx: WasmF32Buffer,
    pass: QuantizerPass,
  ): Omit<QuantizerGrads, "dx">;
  /**
   * Inference only: the max-pool of `xq` in one pass (each thread quantizes
   * one plane at a time into a plane-sized scratch and pools it), bit for bit
   * `maxPool2dReference(quantizeForward(x, pass), g).y`. Planes are split
   * over the threads.
   *
   * @throws {RangeError} If the pass has `z2` gates or `x` is not `n c h w` long.
   */
  quantizePoolForward(
    x: Float32Array,
    pass: QuantizerPass,
    g: PoolGeometry,
  ): Float32Array;
  /** Copies `x` into `y` with the v128 copy kernel (the bandwidth yardstick). */
  copyResident(x: WasmF32Buffer, y: WasmF32Buffer): void;
  /** Fills `out` with uniforms from stream position `offset` of `key` (as `core/rng.ts`'s `uniform`). */
  uniformInto(key: RandomKey, offset: number, out: WasmF32Buffer): void;
  /**
   * `C[m x n] = op(A) * op(B)` with the WASM SIMD GEMM kernel, synchronous:
   * copies `a` and `b` into the backend's memory, splits `C` by rows
   * (multiples of 4, when `m >= n`) or columns (multiples of 12) over the
   * threads (one thread below about 2 MFLOP per thread, see
   * {@link WasmBackendOptions.parallelThreshold}), and copies the product out
   * into a new array. Same contract as `gemmReference`; results differ from
   * it only by float32 rounding (blocked float32 accumulation). The
   * temporaries are freed on return (the memory grows once to the largest
   * call and is reused); resident buffers from `alloc` are untouched.
   *
   * A bound function property: it can be passed as is, e.g. to `withGemm`.
   *
   * @throws {RangeError} If a size is not a non-negative integer or an
   *   array's length does not match the shape.
   */
  readonly gemm: (
    shape: GemmShape,
    a: Float32Array,
    b: Float32Array,
  ) => Float32Array;
  /**
   * The WASM SIMD kernels of every training op (`asm/src/ops.ts`), for
   * `withKernels` or the `kernels` option of `trainFloat`: each copies its
   * inputs into the backend's memory, splits the work over the threads
   * (one thread below {@link WasmBackendOptions.parallelThreshold} elements
   * per thread; softmax cross-entropy always on one) and copies the results
   * out into new arrays. The fused `conv2dGemmForward` /
   * `conv2dGemmBackward` keep the column matrix in the memory and run this
   * backend's GEMM on it (what `conv2d` then uses in place of the scoped
   * GEMM). Results are the references' bit for bit, up to the two float64
   * roundings that `OpKernels` names (batch-norm statistics, softmax), and
   * the thread count never changes a result.
   */
  readonly kernels: Required<OpKernels>;
  /** Terminates the workers; the backend must not be used afterwards. */
  dispose(): void;
  /** Same as {@link WasmBackend.dispose}, for `using`. */
  [Symbol.dispose](): void;
}

class Buffer implements WasmF32Buffer {
  constructor(
    readonly engine: Engine,
    readonly generation: number,
    readonly byteOffset: number,
    readonly length: number,
  ) {}

  view(): Float32Array {
    this.engine.checkBuffer(this, "view");
    return new Float32Array(
      this.engine.memory.buffer,
      this.byteOffset,
      this.length,
    );
  }
}

interface Job {
  begin: number;
  end: number;
}

/**
 * The trailing arguments of the forward kernels: `lo, hi, span`, the five
 * scales, the four gates and the level count.
 */
function forwardConstants(pass: QuantizerPass): number[] {
  const c = pass.constants;
  return [c.lo, c.hi, c.span, ...c.scales, ...pass.gates, c.levelsForward];
}

class Engine implements WasmBackend {
  readonly name = "wasm";
  readonly simd = "simd128" as const;
  readonly memory: WebAssembly.Memory;
  readonly threads: number;
  readonly #kernels: KernelExports;
  readonly #workers: Worker[] = [];
  readonly #control: Int32Array;
  readonly #arenaBase: number;
  readonly #parallelThreshold: number;
  #top: number;
  #generation = 0;
  #seq = 0;
  #disposed = false;

  constructor(threads: number, parallelThreshold: number) {
    this.threads = threads;
    this.#parallelThreshold = parallelThreshold;
    this.#arenaBase = Math.ceil(headerBytes(threads) / PAGE_BYTES) * PAGE_BYTES;
    this.memory = new WebAssembly.Memory({
      initial: this.#arenaBase / PAGE_BYTES + 1,
      maximum: MAX_PAGES,
      shared: true,
    });
    this.#top = this.#arenaBase;
    this.#control = new Int32Array(
      this.memory.buffer,
      0,
      threads * CONTROL_WORDS,
    );
    const instance = new WebAssembly.Instance(kernelModule(), {
      env: { memory: this.memory },
    });
    this.#kernels = instance.exports as unknown as KernelExports;
  }

  async startWorkers(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let slot = 1; slot < this.threads; slot++) {
      const worker = new Worker(new URL("./worker.ts", import.meta.url), {
        type: "module",
      });
      this.#workers.push(worker);
      ready.push(
        new Promise((resolve, reject) => {
          worker.onmessage = (event) => {
            if (event.data === "ready") resolve();
            else {reject(
                new Error(`WASM worker ${slot} failed to start: ${event.data}`),
              );}
          };
          worker.onerror = (event) => {
            event.preventDefault();
            reject(
              new Error(
                `WASM worker ${slot} failed to start: ${event.message}`,
              ),
            );
          };
        }),
      );
      worker.postMessage({ memory: this.memory, slot, threads: this.threads });
    }
    try {
      await Promise.all(ready);
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  // --- memory -------------------------------------------------------------

  checkBuffer(buffer: WasmF32Buffer, what: string): void {
    if (this.#disposed) {
      throw new Error(`Cannot ${what}: the WASM backend was disposed`);
    }
    if (!(buffer instanceof Buffer) || buffer.engine !== this) {
      throw new TypeError(
        `Cannot ${what}: the buffer was not allocated by this WASM backend`,
      );
    }
    if (buffer.generation !== this.#generation) {
      throw new Error(
        `Cannot ${what}: the buffer at byte ${buffer.byteOffset} was freed by reset()`,
      );
    }
  }

  #reserve(bytes: number): number {
    if (this.#disposed) {
      throw new Error("Cannot allocate: the WASM backend was disposed");
    }
    const offset = this.#top;
    const end = offset + Math.ceil(bytes / ALIGN) * ALIGN;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE_BYTES);
      if (have / PAGE_BYTES + pages > MAX_PAGES) {
        throw new RangeError(
          `Cannot allocate ${bytes} bytes in the WASM memory: ${offset} bytes are in use and the limit is 4 GiB`,
        );
      }
      this.memory.grow(pages);
    }
    this.#top = end;
    return offset;
  }

  alloc(length: number): WasmF32Buffer {
    if (!Number.isInteger(length) || length < 0 || length >= 2 ** 30) {
      throw new RangeError(
        `Cannot allocate ${length} float32 elements: length must be an integer in [0, 2^30)`,
      );
    }
    const offset = this.#reserve(length * 4);
    new Float32Array(this.memory.buffer, offset, length).fill(0);
    return new Buffer(this, this.#generation, offset, length);
  }

  reset(): void {
    this.#generation++;
    this.#top = this.#arenaBase;
  }

  /** Runs `body` with temporary allocations that are freed afterwards. */
  #scoped<T>(body: () => T): T {
    const top = this.#top;
    try {
      return body();
    } finally {
      this.#top = top;
    }
  }

  /** Copies `values` into a temporary of the same type; returns its byte offset. */
  #put(values: Float32Array | Int32Array | Float64Array): number {
    const offset = this.#reserve(values.byteLength);
    const buffer = this.memory.buffer;
    if (values instanceof Float32Array) {
      new Float32Array(buffer, offset, values.length).set(values);
    } else if (values instanceof Int32Array) {
      new Int32Array(buffer, offset, values.length).set(values);
    } else {
      new Float64Array(buffer, offset, values.length).set(values);
    }
    return offset;
  }

  /**
   * A copy of `length` float32 elements at byte `offset`. (`new` + `set`:
   * `slice()` of a view into the WASM memory measured 3x slower.)
   */
  #take(offset: number, length: number): Float32Array {
    const out = new Float32Array(length);
    out.set(new Float32Array(this.memory.buffer, offset, length));
    return out;
  }

  /** A scoped buffer holding a copy of `values` (no zero fill first). */
  #temporaryBuffer(values: Float32Array): Buffer {
    return new Buffer(
      this,
      this.#generation,
      this.#temporary(values),
      values.length,
    );
  }

  #temporary(values: ArrayLike<number>): number {
    const offset = this.#reserve(values.length * 4);
    new Float32Array(this.memory.buffer, offset, values.length).set(values);
    return offset;
  }

  // --- threads ------------------------------------------------------------

  /** Splits `[0, length)` into contiguous ranges, one per thread used. */
  #split(length: number): Job[] {
    const byThreshold = Math.floor(length / this.#parallelThreshold);
    const used = Math.max(1, Math.min(this.threads, byThreshold));
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
   * Splits `units` (planes, samples, channels, rows: each `perUnit`
   * elements of work) into contiguous ranges, one per thread used, with at
   * least `parallelThreshold` elements per thread.
   */
  #splitUnits(units: number, perUnit: number): Job[] {
    const byThreshold = Math.floor(units * perUnit / this.#parallelThreshold);
    const used = Math.max(1, Math.min(this.threads, byThreshold, units));
    const chunk = Math.ceil(units / used);
    const jobs: Job[] = [];
    for (let begin = 0; begin < units || jobs.length === 0; begin += chunk) {
      jobs.push({ begin, end: Math.min(units, begin + chunk) });
    }
    return jobs;
  }

  /**
   * Runs `op` on every job: jobs 1.. on the workers, job 0 on this thread,
   * then waits for the workers in `Atomics.wait` (no spinning: see
   * `asm/protocol.ts`).
   */
  #run(op: Op, jobs: Job[], args: (job: Job, index: number) => number[]): void {
    const control = this.#control;
    const sequence = ++this.#seq;
    const buffer = this.memory.buffer;
    for (let t = 1; t < jobs.length; t++) {
      const values = args(jobs[t], t);
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
      runOp(this.#kernels, op, args(jobs[0], 0));
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
        failure ??= new Error(
          `WASM worker ${t} failed running kernel op ${op}`,
        );
      }
    }
    if (failure !== undefined) throw failure;
  }

  // --- kernels ------------------------------------------------------------

  #checkPass(length: number, pass: QuantizerPass): void {
    const { channels, z2 } = pass;
    if (
      !Number.isInteger(channels) || channels < 1 || length % channels !== 0
    ) {
      throw new RangeError(
        `Cannot quantize ${length} elements in ${channels} channels: the length must be a multiple of a positive channel count`,
      );
    }
    if (z2 !== null && z2.length !== channels) {
      throw new RangeError(
        `Cannot quantize with ${z2.length} z2 gates for ${channels} channels`,
      );
    }
  }

  #sameLength(what: string, ...buffers: WasmF32Buffer[]): void {
    for (const b of buffers) this.checkBuffer(b, what);
    const lengths = buffers.map((b) => b.length);
    if (lengths.some((n) => n !== lengths[0])) {
      throw new RangeError(
        `Cannot ${what}: buffer lengths differ (${lengths.join(", ")})`,
      );
    }
  }

  forwardResident(
    x: WasmF32Buffer,
    out: WasmF32Buffer,
    pass: QuantizerPass,
  ): void {
    this.#sameLength("run the quantizer forward", x, out);
    this.#checkPass(x.length, pass);
    if (x.length === 0) return;
    this.#scoped(() => {
      const z2 = pass.z2 ? this.#temporary(pass.z2) : 0;
      const per = x.length / pass.channels;
      this.#run(Op.forward, this.#split(x.length), (job) => [
        x.byteOffset,
        out.byteOffset,
        job.begin,
        job.end,
        per,
        z2,
        pass.z2 ? 1 : 0,
        ...forwardConstants(pass),
      ]);
    });
  }

  backwardResident(
    x: WasmF32Buffer,
    dy: WasmF32Buffer,
    dx: WasmF32Buffer,
    pass: QuantizerPass,
  ): Omit<QuantizerGrads, "dx"> {
    this.#sameLength("run the quantizer backward", x, dy, dx);
    this.#checkPass(x.length, pass);
    const channels = pass.channels;
    const per = x.length / channels;
    const sums = new Float64Array(channels * 6);
    if (x.length > 0) {
      this.#scoped(() => {
        const c = pass.constants;
        const [s0, s1, s2, s3, s4] = c.scales;
        const [f0, f1, f2, f3, f4] = c.xmaxFactors;
        const z2 = pass.z2 ? this.#temporary(pass.z2) : 0;
        const jobs = this.#split(x.length);
        // Each thread writes 6 float64 per channel its range touches.
        const firsts = jobs.map((j) => Math.floor(j.begin / per));
        const counts = jobs.map((j, t) =>
          j.end > j.begin ? Math.floor((j.end - 1) / per) - firsts[t] + 1 : 0
        );
        const scratch = counts.map((n) => this.#reserve(n * 48));
        this.#run(Op.backward, jobs, (job, t) => [
          x.byteOffset,
          dy.byteOffset,
          dx.byteOffset,
          job.begin,
          job.end,
          per,
          z2,
          pass.z2 ? 1 : 0,
          c.lo,
          c.hi,
          c.span,
          s0,
          s1,
          s2,
          s3,
          s4,
          f0,
          f1,
          f2,
          f3,
          f4,
          c.clipGradHi,
          c.clipGradLo,
          c.levelsForward,
          c.levelsBackward,
          scratch[t],
        ]);
        // Combine in thread order: deterministic for a given split.
        const buffer = this.memory.buffer;
        for (let t = 0; t < jobs.length; t++) {
          const part = new Float64Array(buffer, scratch[t], counts[t] * 6);
          const base = firsts[t] * 6;
          for (let k = 0; k < part.length; k++) sums[base + k] += part[k];
        }
      });
    }
    // The kernel sums dy * e_l per level; the brackets are linear in the
    // levels: sum dy*inner_l = sum dy*e_l + z_{l+1} * sum dy*inner_{l+1}.
    // Then the host combination of core/reference.ts, channel by channel.
    const dz2 = pass.z2 ? new Float64Array(channels) : null;
    const dgates = [0, 0, 0, 0];
    const inner = new Float64Array(5);
    let dxmax = 0;
    for (let ch = 0; ch < channels; ch++) {
      const z2 = pass.z2 ? pass.z2[ch] : 1;
      inner[4] = sums[ch * 6 + 4];
      for (let l = 3; l >= 0; l--) {
        inner[l] = sums[ch * 6 + l] + pass.gates[l] * inner[l + 1];
      }
      if (dz2) dz2[ch] = inner[0];
      let below = z2;
      for (let l = 1; l < 5; l++) {
        dgates[l - 1] += below * inner[l];
        below *= pass.gates[l - 1];
      }
      dxmax += z2 * sums[ch * 6 + 5];
    }
    return {
      dxmax,
      dz2,
      dgates: dgates as unknown as QuantizerGrads["dgates"],
    };
  }

  copyResident(x: WasmF32Buffer, y: WasmF32Buffer): void {
    this.#sameLength("copy", x, y);
    if (x.length === 0) return;
    this.#run(Op.copy, this.#split(x.length), (job) => [
      x.byteOffset,
      y.byteOffset,
      job.begin,
      job.end,
    ]);
  }

  uniformInto(key: RandomKey, offset: number, out: WasmF32Buffer): void {
    this.checkBuffer(out, "draw uniforms");
    assertRandomKey(key);
    if (
      !Number.isInteger(offset) || offset < 0 || offset + out.length > 2 ** 33
    ) {
      throw new RangeError(
        `Cannot draw ${out.length} uniforms from stream offset ${offset}: the stream has 2^33 elements`,
      );
    }
    if (out.length === 0) return;
    this.#run(Op.uniform, this.#split(out.length), (job) => {
      const start = offset + job.begin;
      return [
        out.byteOffset + job.begin * 4,
        job.end - job.begin,
        key[0],
        key[1],
        start % 2 ** 32,
        Math.floor(start / 2 ** 32),
      ];
    });
  }

  readonly gemm = (
    shape: GemmShape,
    a: Float32Array,
    b: Float32Array,
  ): Float32Array => this.#gemm(shape, a, b);

  #gemm(shape: GemmShape, a: Float32Array, b: Float32Array): Float32Array {
    const { m, n, k } = shape;
    for (const [name, v] of [["m", m], ["n", n], ["k", k]] as const) {
      if (!Number.isInteger(v) || v < 0) {
        throw new RangeError(
          `gemm: ${name} must be a non-negative integer, got ${v}`,
        );
      }
    }
    if (a.length !== m * k || b.length !== k * n) {
      throw new RangeError(
        `gemm: A has ${a.length} elements (expected ${
          m * k
        }), B has ${b.length} (expected ${k * n})`,
      );
    }
    if (this.#disposed) {
      throw new Error("Cannot run gemm: the WASM backend was disposed");
    }
    if (m * n === 0 || k === 0) return new Float32Array(m * n);
    return this.#scoped(() => {
      const pa = this.#put(a);
      const pb = this.#put(b);
      const pc = this.#reserve(m * n * 4);
      this.#gemmResident(shape, pa, pb, pc);
      return this.#take(pc, m * n);
    });
  }

  /**
   * `C = op(A) op(B)` on operands already in the memory (byte offsets `pa`,
   * `pb`, `pc`), split over the threads; reserves the packing scratch, so
   * it runs inside `#scoped`. Sizes are trusted.
   */
  #gemmResident(shape: GemmShape, pa: number, pb: number, pc: number): void {
    const { m, n, k } = shape;
    if (m * n === 0) return;
    const transA = shape.transA === true;
    const transB = shape.transB === true;
    const jobs = this.#gemmJobs(m, n, k);
    const byRows = m >= n;
    const scratch = jobs.map((job) =>
      this.#reserve(
        this.#kernels.gemmScratchBytes(k, byRows ? n : job.end - job.begin),
      )
    );
    const flags = (transA ? 1 : 0) | (transB ? 2 : 0);
    this.#run(Op.gemm, jobs, (job, t) => [
      pa,
      pb,
      pc,
      m,
      n,
      k,
      transA ? m : k,
      transB ? k : n,
      n,
      flags,
      byRows ? job.begin : 0,
      byRows ? job.end : m,
      byRows ? 0 : job.begin,
      byRows ? n : job.end,
      scratch[t],
    ]);
  }

  /**
   * Splits `C`'s rows (when `m >= n`, in multiples of 4) or columns (in
   * multiples of 12) over the threads a GEMM of `2 m n k` flops deserves.
   */
  #gemmJobs(m: number, n: number, k: number): Job[] {
    const flops = 2 * m * n * k;
    const perThread = this.#parallelThreshold * GEMM_FLOPS_PER_ELEMENT;
    const byRows = m >= n;
    const length = byRows ? m : n;
    const grain = byRows ? GEMM_ROW_GRAIN : GEMM_COL_GRAIN;
    const used = Math.max(
      1,
      Math.min(
        this.threads,
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

  // --- training-op kernels (asm/src/ops.ts) --------------------------------

  readonly kernels: Required<OpKernels> = Object.freeze({
    relu: (x: Float32Array) => this.#activation(0, x, null),
    reluBackward: (x: Float32Array, dy: Float32Array) =>
      this.#activation(1, x, dy),
    relu6: (x: Float32Array) => this.#activation(2, x, null),
    relu6Backward: (x: Float32Array, dy: Float32Array) =>
      this.#activation(3, x, dy),
    maxPool2d: (x: Float32Array, g: PoolGeometry) => this.#maxPool(x, g),
    maxPool2dBackward: (
      dy: Float32Array,
      argmax: Int32Array,
      g: PoolGeometry,
    ) => this.#maxPoolBackward(dy, argmax, g),
    globalAvgPool: (x: Float32Array, planes: number, area: number) =>
      this.#avgPool(Op.avgPoolForward, x, planes, area, planes),
    globalAvgPoolBackward: (dy: Float32Array, planes: number, area: number) =>
      this.#avgPool(Op.avgPoolBackward, dy, planes, area, planes * area),
    batchNormStatistics: (x: Float32Array, layout: ChannelLayout) =>
      this.#batchNormStatistics(x, layout),
    batchNormNormalize: (
      x: Float32Array,
      layout: ChannelLayout,
      mean: Float64Array,
      invStd: Float64Array,
      gamma: Float32Array,
      beta: Float32Array,
    ) => this.#batchNormNormalize(x, layout, mean, invStd, gamma, beta),
    batchNormBackward: (
      dy: Float32Array,
      xhat: Float32Array,
      layout: ChannelLayout,
      gamma: Float32Array,
      invStd: Float64Array,
      train: boolean,
    ) => this.#batchNormBackward(dy, xhat, layout, gamma, invStd, train),
    softmaxCrossEntropy: (
      logits: Float32Array,
      labels: Int32Array,
      k: number,
    ) => this.#softmax(logits, labels, k),
    softmaxCrossEntropyBackward: (
      probs: Float32Array,
      labels: Int32Array,
      k: number,
      scale: number,
    ) => this.#softmaxBackward(probs, labels, k, scale),
    conv2dGemmForward: (
      x: Float32Array,
      w: Float32Array,
      bias: Float32Array | null,
      g: ConvGeometry,
    ) => this.#convForward(x, w, bias, g),
    conv2dGemmBackward: (
      x: Float32Array,
      w: Float32Array,
      dy: Float32Array,
      g: ConvGeometry,
      needInput: boolean,
      needBias: boolean,
    ) => this.#convBackward(x, w, dy, g, needInput, needBias),
    im2col: (x: Float32Array, g: ConvGeometry) => this.#im2col(x, g),
    col2im: (cols: Float32Array, g: ConvGeometry) => this.#col2im(cols, g),
    rowsToNchw: (
      rows: Float32Array,
      n: number,
      p: number,
      o: number,
      bias: Float32Array | null,
    ) => this.#rowsToNchw(rows, n, p, o, bias),
    nchwToRows: (y: Float32Array, n: number, p: number, o: number) =>
      this.#nchwToRows(y, n, p, o),
    addBias: (a: Float32Array, cols: number, bias: Float32Array) =>
      this.#addBias(a, cols, bias),
    biasGrad: (a: Float32Array, cols: number) => this.#biasGrad(a, cols),
    adamUpdate: (step: AdamStep) => this.#adam(step),
  });

  /** Throws a RangeError naming `what` unless `array` has `length` elements. */
  #expect(
    what: string,
    array: { readonly length: number },
    length: number,
  ): void {
    if (array.length !== length) {
      throw new RangeError(
        `${what} has ${array.length} elements, expected ${length}`,
      );
    }
  }

  #activation(
    kind: number,
    x: Float32Array,
    dy: Float32Array | null,
  ): Float32Array {
    if (dy) this.#expect("activation backward: dy", dy, x.length);
    return this.#scoped(() => {
      const px = this.#put(x);
      const pg = dy ? this.#put(dy) : 0;
      const out = this.#reserve(x.length * 4);
      this.#run(Op.activation, this.#split(x.length), (job) => [
        kind,
        px,
        pg,
        out,
        job.begin,
        job.end,
      ]);
      return this.#take(out, x.length);
    });
  }

  #maxPool(
    x: Float32Array,
    g: PoolGeometry,
  ): { y: Float32Array; argmax: Int32Array } {
    const planes = g.n * g.c;
    const outLength = planes * g.oh * g.ow;
    this.#expect("maxPool2d: x", x, planes * g.h * g.w);
    return this.#scoped(() => {
      const px = this.#put(x);
      const py = this.#reserve(outLength * 4);
      const pa = this.#reserve(outLength * 4);
      this.#run(
        Op.maxPoolForward,
        this.#splitUnits(planes, g.h * g.w),
        (job) => [
          px,
          py,
          pa,
          job.begin,
          job.end,
          g.h,
          g.w,
          g.oh,
          g.ow,
          g.kernel,
          g.stride,
          g.padding,
        ],
      );
      const argmax = new Int32Array(outLength);
      argmax.set(new Int32Array(this.memory.buffer, pa, outLength));
      return { y: this.#take(py, outLength), argmax };
    });
  }

  #maxPoolBackward(
    dy: Float32Array,
    argmax: Int32Array,
    g: PoolGeometry,
  ): Float32Array {
    const planes = g.n * g.c;
    const inPerPlane = g.h * g.w;
    const outPerPlane = g.oh * g.ow;
    this.#expect("maxPool2d backward: dy", dy, planes * outPerPlane);
    this.#expect("maxPool2d backward: argmax", argmax, planes * outPerPlane);
    return this.#scoped(() => {
      const pg = this.#put(dy);
      const pa = this.#put(argmax);
      const pdx = this.#reserve(planes * inPerPlane * 4);
      this.#run(
        Op.maxPoolBackward,
        this.#splitUnits(planes, inPerPlane),
        (job) => [pg, pa, pdx, job.begin, job.end, inPerPlane, outPerPlane],
      );
      return this.#take(pdx, planes * inPerPlane);
    });
  }

  #avgPool(
    op: Op.avgPoolForward | Op.avgPoolBackward,
    input: Float32Array,
    planes: number,
    area: number,
    outLength: number,
  ): Float32Array {
    const forward = op === Op.avgPoolForward;
    this.#expect(
      `globalAvgPool${forward ? "" : " backward"}: input`,
      input,
      forward ? planes * area : planes,
    );
    return this.#scoped(() => {
      const pin = this.#put(input);
      const pout = this.#reserve(outLength * 4);
      this.#run(
        op,
        this.#splitUnits(planes, area),
        (job) => [pin, pout, job.begin, job.end, area],
      );
      return this.#take(pout, outLength);
    });
  }

  #batchNormStatistics(
    x: Float32Array,
    layout: ChannelLayout,
  ): { mean: Float64Array; variance: Float64Array } {
    const { n, c, area } = layout;
    this.#expect("batchNorm statistics: x", x, n * c * area);
    return this.#scoped(() => {
      const px = this.#put(x);
      const pm = this.#reserve(c * 8);
      const pv = this.#reserve(c * 8);
      this.#run(
        Op.batchNormStats,
        this.#splitUnits(c, n * area),
        (job) => [px, pm, pv, job.begin, job.end, n, c, area],
      );
      const mean = new Float64Array(c);
      const variance = new Float64Array(c);
      mean.set(new Float64Array(this.memory.buffer, pm, c));
      variance.set(new Float64Array(this.memory.buffer, pv, c));
      return { mean, variance };
    });
  }

  #batchNormNormalize(
    x: Float32Array,
    layout: ChannelLayout,
    mean: Float64Array,
    invStd: Float64Array,
    gamma: Float32Array,
    beta: Float32Array,
  ): { xhat: Float32Array; y: Float32Array } {
    const { n, c, area } = layout;
    this.#expect("batchNorm: x", x, n * c * area);
    for (
      const [name, v] of [
        ["mean", mean],
        ["invStd", invStd],
        ["gamma", gamma],
        ["beta", beta],
      ] as const
    ) {
      this.#expect(`batchNorm: ${name}`, v, c);
    }
    return this.#scoped(() => {
      const args = [x, mean, invStd, gamma, beta].map((v) => this.#put(v));
      const pxhat = this.#reserve(x.length * 4);
      const py = this.#reserve(x.length * 4);
      this.#run(
        Op.batchNormApply,
        this.#splitUnits(c, n * area),
        (job) => [
          args[0],
          pxhat,
          py,
          ...args.slice(1),
          job.begin,
          job.end,
          n,
          c,
          area,
        ],
      );
      return { xhat: this.#take(pxhat, x.length), y: this.#take(py, x.length) };
    });
  }

  #batchNormBackward(
    dy: Float32Array,
    xhat: Float32Array,
    layout: ChannelLayout,
    gamma: Float32Array,
    invStd: Float64Array,
    train: boolean,
  ): { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array } {
    const { n, c, area } = layout;
    this.#expect("batchNorm backward: dy", dy, n * c * area);
    this.#expect("batchNorm backward: xhat", xhat, n * c * area);
    this.#expect("batchNorm backward: gamma", gamma, c);
    this.#expect("batchNorm backward: invStd", invStd, c);
    return this.#scoped(() => {
      const pg = this.#put(dy);
      const ph = this.#put(xhat);
      const pgamma = this.#put(gamma);
      const pis = this.#put(invStd);
      const pdx = this.#reserve(dy.length * 4);
      const pdgamma = this.#reserve(c * 4);
      const pdbeta = this.#reserve(c * 4);
      this.#run(
        Op.batchNormBackward,
        this.#splitUnits(c, n * area),
        (job) => [
          pg,
          ph,
          pdx,
          pgamma,
          pis,
          pdgamma,
          pdbeta,
          job.begin,
          job.end,
          n,
          c,
          area,
          train ? 1 : 0,
        ],
      );
      return {
        dx: this.#take(pdx, dy.length),
        dgamma: this.#take(pdgamma, c),
        dbeta: this.#take(pdbeta, c),
      };
    });
  }

  #softmax(
    logits: Float32Array,
    labels: Int32Array,
    k: number,
  ): { total: number; probs: Float32Array } {
    const n = labels.length;
    this.#expect("softmaxCrossEntropy: logits", logits, n * k);
    return this.#scoped(() => {
      const pz = this.#put(logits);
      const pl = this.#put(labels);
      const pp = this.#reserve(logits.length * 4);
      const total = this.#kernels.softmaxForward(pz, pl, pp, n, k);
      return { total, probs: this.#take(pp, logits.length) };
    });
  }

  #softmaxBackward(
    probs: Float32Array,
    labels: Int32Array,
    k: number,
    scale: number,
  ): Float32Array {
    const n = labels.length;
    this.#expect("softmaxCrossEntropy backward: probs", probs, n * k);
    return this.#scoped(() => {
      const pp = this.#put(probs);
      const pl = this.#put(labels);
      const pdz = this.#reserve(probs.length * 4);
      this.#kernels.softmaxBackward(pp, pl, pdz, n, k, scale);
      return this.#take(pdz, probs.length);
    });
  }

  /** The kernel arguments of a convolution's geometry after the range. */
  #convArgs(g: ConvGeometry): number[] {
    return [g.c, g.h, g.w, g.kh, g.kw, g.oh, g.ow, g.stride, g.padding];
  }

  #im2col(x: Float32Array, g: ConvGeometry): Float32Array {
    this.#expect("im2col: x", x, g.n * g.c * g.h * g.w);
    const length = g.n * g.oh * g.ow * g.c * g.kh * g.kw;
    return this.#scoped(() =>
      this.#take(this.#im2colResident(this.#put(x), g), length)
    );
  }

  /** Output channels of a conv weight `w` for geometry `g`; checks `x` too. */
  #convChannels(
    what: string,
    x: Float32Array,
    w: Float32Array,
    g: ConvGeometry,
  ): number {
    this.#expect(`${what}: x`, x, g.n * g.c * g.h * g.w);
    const taps = g.c * g.kh * g.kw;
    const o = w.length / taps;
    if (!Number.isInteger(o) || o < 1) {
      throw new RangeError(
        `${what}: the weight's ${w.length} elements are not whole output channels of ${taps} taps`,
      );
    }
    return o;
  }

  /** Writes the column matrix of the resident `px` into a new temporary; returns it. */
  #im2colResident(px: number, g: ConvGeometry): number {
    const rows = g.n * g.oh * g.ow;
    const taps = g.c * g.kh * g.kw;
    const pcols = this.#reserve(rows * taps * 4);
    const geometry = this.#convArgs(g);
    this.#run(
      Op.im2col,
      this.#splitUnits(rows, taps),
      (job) => [px, pcols, job.begin, job.end, ...geometry],
    );
    return pcols;
  }

  #convForward(
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    g: ConvGeometry,
  ): Float32Array {
    const o = this.#convChannels("conv2dGemmForward", x, w, g);
    if (bias) this.#expect("conv2dGemmForward: bias", bias, o);
    const p = g.oh * g.ow;
    const rows = g.n * p;
    const taps = g.c * g.kh * g.kw;
    return this.#scoped(() => {
      const px = this.#put(x);
      const pw = this.#put(w);
      const pb = bias ? this.#put(bias) : 0;
      const pcols = this.#im2colResident(px, g);
      const pRows = this.#reserve(rows * o * 4);
      this.#gemmResident(
        { m: rows, n: o, k: taps, transB: true },
        pcols,
        pw,
        pRows,
      );
      const py = this.#reserve(rows * o * 4);
      this.#run(
        Op.rowsToNchw,
        this.#splitUnits(g.n, p * o),
        (job) => [pRows, py, pb, bias ? 1 : 0, job.begin, job.end, p, o],
      );
      return this.#take(py, rows * o);
    });
  }

  #convBackward(
    x: Float32Array,
    w: Float32Array,
    dy: Float32Array,
    g: ConvGeometry,
    needInput: boolean,
    needBias: boolean,
  ): { dx: Float32Array | null; dw: Float32Array; db: Float32Array | null } {
    const o = this.#convChannels("conv2dGemmBackward", x, w, g);
    const p = g.oh * g.ow;
    const rows = g.n * p;
    const taps = g.c * g.kh * g.kw;
    this.#expect("conv2dGemmBackward: dy", dy, rows * o);
    return this.#scoped(() => {
      const pdy = this.#put(dy);
      const pRows = this.#reserve(rows * o * 4);
      this.#run(
        Op.nchwToRows,
        this.#splitUnits(g.n, p * o),
        (job) => [pdy, pRows, job.begin, job.end, p, o],
      );
      let db: Float32Array | null = null;
      if (needBias) {
        const pdb = this.#reserve(o * 4);
        this.#run(
          Op.columnSums,
          this.#splitUnits(Math.ceil(o / 4), rows * 4),
          (job) => [
            pRows,
            pdb,
            rows,
            o,
            Math.min(o, job.begin * 4),
            Math.min(o, job.end * 4),
          ],
        );
        db = this.#take(pdb, o);
      }
      // The column matrix again, from x: cheaper than keeping it since the forward pass.
      const pcols = this.#im2colResident(this.#put(x), g);
      const pdw = this.#reserve(o * taps * 4);
      this.#gemmResident(
        { m: o, n: taps, k: rows, transA: true },
        pRows,
        pcols,
        pdw,
      );
      const dw = this.#take(pdw, o * taps);
      let dx: Float32Array | null = null;
      if (needInput) {
        const pw = this.#put(w);
        const pdcols = this.#reserve(rows * taps * 4);
        this.#gemmResident({ m: rows, n: taps, k: o }, pRows, pw, pdcols);
        const length = g.n * g.c * g.h * g.w;
        const pdx = this.#reserve(length * 4);
        const geometry = this.#convArgs(g);
        this.#run(
          Op.col2im,
          this.#splitUnits(g.n, p * taps),
          (job) => [pdcols, pdx, job.begin, job.end, ...geometry],
        );
        dx = this.#take(pdx, length);
      }
      return { dx, dw, db };
    });
  }

  #col2im(cols: Float32Array, g: ConvGeometry): Float32Array {
    const taps = g.c * g.kh * g.kw;
    this.#expect("col2im: cols", cols, g.n * g.oh * g.ow * taps);
    const length = g.n * g.c * g.h * g.w;
    return this.#scoped(() => {
      const pcols = this.#put(cols);
      const px = this.#reserve(length * 4);
      const geometry = this.#convArgs(g);
      this.#run(
        Op.col2im,
        this.#splitUnits(g.n, g.oh * g.ow * taps),
        (job) => [pcols, px, job.begin, job.end, ...geometry],
      );
      return this.#take(px, length);
    });
  }

  #rowsToNchw(
    rows: Float32Array,
    n: number,
    p: number,
    o: number,
    bias: Float32Array | null,
  ): Float32Array {
    this.#expect("rowsToNchw: rows", rows, n * p * o);
    if (bias) this.#expect("rowsToNchw: bias", bias, o);
    return this.#scoped(() => {
      const pr = this.#put(rows);
      const pb = bias ? this.#put(bias) : 0;
      const py = this.#reserve(rows.length * 4);
      this.#run(
        Op.rowsToNchw,
        this.#splitUnits(n, p * o),
        (job) => [pr, py, pb, bias ? 1 : 0, job.begin, job.end, p, o],
      );
      return this.#take(py, rows.length);
    });
  }

  #nchwToRows(y: Float32Array, n: number, p: number, o: number): Float32Array {
    this.#expect("nchwToRows: y", y, n * p * o);
    return this.#scoped(() => {
      const py = this.#put(y);
      const pr = this.#reserve(y.length * 4);
      this.#run(
        Op.nchwToRows,
        this.#splitUnits(n, p * o),
        (job) => [py, pr, job.begin, job.end, p, o],
      );
      return this.#take(pr, y.length);
    });
  }

  #addBias(a: Float32Array, cols: number, bias: Float32Array): Float32Array {
    this.#expect("addBias: bias", bias, cols);
    const rows = cols === 0 ? 0 : a.length / cols;
    if (!Number.isInteger(rows)) {
      throw new RangeError(
        `addBias: ${a.length} elements do not make rows of ${cols}`,
      );
    }
    return this.#scoped(() => {
      const pa = this.#put(a);
      const pb = this.#put(bias);
      const pout = this.#reserve(a.length * 4);
      this.#run(
        Op.addBias,
        this.#splitUnits(rows, cols),
        (job) => [pa, pb, pout, job.begin, job.end, cols],
      );
      return this.#take(pout, a.length);
    });
  }

  #biasGrad(a: Float32Array, cols: number): Float32Array {
    const rows = cols === 0 ? 0 : a.length / cols;
    if (!Number.isInteger(rows)) {
      throw new RangeError(
        `biasGrad: ${a.length} elements do not make rows of ${cols}`,
      );
    }
    return this.#scoped(() => {
      const pa = this.#put(a);
      const pout = this.#reserve(cols * 4);
      // Threads take column groups of 4 (each sums its columns in row order).
      const groups = Math.ceil(cols / 4);
      this.#run(
        Op.columnSums,
        this.#splitUnits(groups, rows * 4),
        (job) => [
          pa,
          pout,
          rows,
          cols,
          Math.min(cols, job.begin * 4),
          Math.min(cols, job.end * 4),
        ],
      );
      return this.#take(pout, cols);
    });
  }

  #adam(step: AdamStep): AdamResult {
    const { theta } = step;
    for (const name of ["grad", "m", "v"] as const) {
      this.#expect(`adamUpdate: ${name}`, step[name], theta.length);
    }
    return this.#scoped(() => {
      const inputs = [theta, step.grad, step.m, step.v].map((v) =>
        this.#put(v)
      );
      const outputs = [0, 1, 2].map(() => this.#reserve(theta.length * 4));
      this.#run(Op.adamUpdate, this.#split(theta.length), (job) => [
        ...inputs,
        ...outputs,
        job.begin,
        job.end,
        step.beta1,
        1 - step.beta1,
        step.beta2,
        1 - step.beta2,
        step.eps,
        step.weightDecay,
        step.stepSize,
        step.sqrtCorrection2,
      ]);
      const [t, m, v] = outputs.map((p) => this.#take(p, theta.length));
      return { theta: t, m, v };
    });
  }

  quantizePoolForward(
    x: Float32Array,
    pass: QuantizerPass,
    g: PoolGeometry,
  ): Float32Array {
    if (pass.z2 !== null) {
      throw new RangeError(
        "Cannot quantize and pool with pruning gates z2: the fused inference kernel takes activations",
      );
    }
    const planes = g.n * g.c;
    const area = g.h * g.w;
    const outLength = planes * g.oh * g.ow;
    this.#expect("quantize and pool: x", x, planes * area);
    return this.#scoped(() => {
      const px = this.#put(x);
      const py = this.#reserve(outLength * 4);
      const jobs = this.#splitUnits(planes, area);
      const scratch = jobs.map(() => this.#reserve(area * 4));
      this.#run(Op.quantizePool, jobs, (job, t) => [
        px,
        py,
        scratch[t],
        job.begin,
        job.end,
        g.h,
        g.w,
        g.oh,
        g.ow,
        g.kernel,
        g.stride,
        g.padding,
        ...forwardConstants(pass),
      ]);
      return this.#take(py, outLength);
    });
  }

  quantizeForward(x: Float32Array, pass: QuantizerPass): Float32Array {
    return this.#scoped(() => {
      // A temporary, not `alloc`: no zero fill before the copy.
      const bx = this.#temporaryBuffer(x);
      this.forwardResident(bx, bx, pass);
      return this.#take(bx.byteOffset, bx.length);
    });
  }

  quantizeBackward(
    x: Float32Array,
    dy: Float32Array,
    pass: QuantizerPass,
  ): QuantizerGrads {
    if (dy.length !== x.length) {
      throw new RangeError(
        `Cannot run the quantizer backward: dy has ${dy.length} elements, x has ${x.length}`,
      );
    }
    return this.#scoped(() => {
      const bx = this.#temporaryBuffer(x);
      const bdy = this.#temporaryBuffer(dy);
      const grads = this.backwardResident(bx, bdy, bdy, pass);
      return { dx: this.#take(bdy.byteOffset, bdy.length), ...grads };
    });
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const sequence = ++this.#seq;
    for (let t = 1; t <= this.#workers.length; t++) {
      const base = t * CONTROL_WORDS;
      this.#control[base + CONTROL.op] = Op.quit;
      Atomics.store(this.#control, base + CONTROL.sequence, sequence);
      Atomics.notify(this.#control, base + CONTROL.sequence);
    }
    for (const worker of this.#workers) worker.terminate();
    this.#workers.length = 0;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Creates a WASM backend over `threads` threads (the calling thread and
 * `threads - 1` workers sharing one memory). Its calls stay synchronous: the
 * calling thread does its share and then waits for the workers.
 *
 * @param options Thread count and split threshold; see {@link WasmBackendOptions}.
 * @returns A backend that must be {@link WasmBackend.dispose}d (or `using`'d).
 * @throws {RangeError} If `threads` is not an integer in [1, 64] or
 *   `parallelThreshold` not a positive integer.
 *
 * @example Forward and backward on resident buffers, two threads
 * ```ts
 * import { createWasmBackend } from "./backend.ts";
 * import { quantizerConstants } from "../core/backend.ts";
 * import assert from "node:assert/strict";
 *
 * const gates = [1, 1, 0, 0] as const; // 8 bits
 * const pass = { channels: 2, z2: new Float32Array([1, 0]), gates, constants: quantizerConstants(1, true, gates) };
 * const wasm = await createWasmBackend({ threads: 2 });
 * try {
 *   const x = wasm.alloc(4);
 *   const xq = wasm.alloc(4);
 *   x.view().set([0.5, -2, 0.25, 0.75]);
 *   wasm.forwardResident(x, xq, pass);
 *   assert.equal(xq.view()[2], 0); // channel 1 is pruned
 *   const dy = wasm.alloc(4);
 *   dy.view().fill(1);
 *   const grads = wasm.backwardResident(x, dy, dy, pass);
 *   assert.deepEqual(Array.from(dy.view()), [1, 0, 0, 0]); // -2 is clipped, channel 1 pruned
 *   assert.equal(grads.dz2?.length, 2);
 * } finally {
 *   wasm.dispose();
 * }
 * ```
 */
export async function createWasmBackend(
  options: WasmBackendOptions = {},
): Promise<WasmBackend> {
  const threads = options.threads ??
    Math.min(MAX_THREADS, Math.max(1, navigator.hardwareConcurrency ?? 1));
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new RangeError(
      `Cannot create a WASM backend with ${threads} threads: threads must be an integer in [1, ${MAX_THREADS}]`,
    );
  }
  const threshold = options.parallelThreshold ?? DEFAULT_PARALLEL_THRESHOLD;
  if (!Number.isInteger(threshold) || threshold < 1) {
    throw new RangeError(
      `Cannot create a WASM backend with parallelThreshold ${threshold}: it must be a positive integer`,
    );
  }
  const engine = new Engine(threads, threshold);
  await engine.startWorkers();
  return engine;
}

let shared: Engine | undefined;

/**
 * `C[m x n] = op(A) * op(B)` on the single-threaded WASM backend (the engine
 * behind {@link wasmBackend}, instantiated on first use): the same contract
 * as `gemmReference` and {@link WasmBackend.gemm}. Pass it to `withGemm` to
 * run `dense` and `conv2d` on the SIMD kernel.
 *
 * @param shape Sizes and transposes.
 * @param a `A`, `m x k` (or `k x m` with `transA`).
 * @param b `B`, `k x n` (or `n x k` with `transB`).
 * @returns A new `m x n` Float32Array.
 * @throws {RangeError} If a size is not a non-negative integer or an array's
 *   length does not match the shape.
 *
 * @example
 * ```ts
 * import { wasmGemm } from "./backend.ts";
 * import assert from "node:assert/strict";
 *
 * // x W^T with W stored [out x in]
 * const y = wasmGemm({ m: 1, n: 2, k: 2, transB: true }, new Float32Array([1, 2]), new Float32Array([1, 3, 2, 4]));
 * assert.deepEqual([...y], [7, 10]);
 * ```
 */
export function wasmGemm(
  shape: GemmShape,
  a: Float32Array,
  b: Float32Array,
): Float32Array {
  return sharedEngine().gemm(shape, a, b);
}

function sharedEngine(): Engine {
  shared ??= new Engine(1, DEFAULT_PARALLEL_THRESHOLD);
  return shared;
}

/**
 * The WASM SIMD kernels of the training ops on the single-threaded engine
 * (the one behind {@link wasmBackend} and {@link wasmGemm}, instantiated
 * on first use): {@link WasmBackend.kernels} with one thread. Pass it to
 * `withKernels`, or as `trainFloat`'s `kernels` (with `gemm: wasmGemm`).
 *
 * @example
 * ```ts
 * import { wasmKernels } from "./backend.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...wasmKernels.relu(new Float32Array([-2, 3]))], [0, 3]);
 * const db = wasmKernels.biasGrad(new Float32Array([1, 2, 3, 4]), 2); // 2 rows of 2
 * assert.deepEqual([...db], [4, 6]);
 * ```
 */
export const wasmKernels: Required<OpKernels> = Object.freeze({
  relu: (x) => sharedEngine().kernels.relu(x),
  reluBackward: (x, dy) => sharedEngine().kernels.reluBackward(x, dy),
  relu6: (x) => sharedEngine().kernels.relu6(x),
  relu6Backward: (x, dy) => sharedEngine().kernels.relu6Backward(x, dy),
  maxPool2d: (x, g) => sharedEngine().kernels.maxPool2d(x, g),
  maxPool2dBackward: (dy, argmax, g) =>
    sharedEngine().kernels.maxPool2dBackward(dy, argmax, g),
  globalAvgPool: (x, planes, area) =>
    sharedEngine().kernels.globalAvgPool(x, planes, area),
  globalAvgPoolBackward: (dy, planes, area) =>
    sharedEngine().kernels.globalAvgPoolBackward(dy, planes, area),
  batchNormStatistics: (x, layout) =>
    sharedEngine().kernels.batchNormStatistics(x, layout),
  batchNormNormalize: (x, layout, mean, invStd, gamma, beta) =>
    sharedEngine().kernels.batchNormNormalize(
      x,
      layout,
      mean,
      invStd,
      gamma,
      beta,
    ),
  batchNormBackward: (dy, xhat, layout, gamma, invStd, train) =>
    sharedEngine().kernels.batchNormBackward(
      dy,
      xhat,
      layout,
      gamma,
      invStd,
      train,
    ),
  softmaxCrossEntropy: (logits, labels, k) =>
    sharedEngine().kernels.softmaxCrossEntropy(logits, labels, k),
  softmaxCrossEntropyBackward: (probs, labels, k, scale) =>
    sharedEngine().kernels.softmaxCrossEntropyBackward(probs, labels, k, scale),
  conv2dGemmForward: (x, w, bias, g) =>
    sharedEngine().kernels.conv2dGemmForward(x, w, bias, g),
  conv2dGemmBackward: (x, w, dy, g, needInput, needBias) =>
    sharedEngine().kernels.conv2dGemmBackward(
      x,
      w,
      dy,
      g,
      needInput,
      needBias,
    ),
  im2col: (x, g) => sharedEngine().kernels.im2col(x, g),
  col2im: (cols, g) => sharedEngine().kernels.col2im(cols, g),
  rowsToNchw: (rows, n, p, o, bias) =>
    sharedEngine().kernels.rowsToNchw(rows, n, p, o, bias),
  nchwToRows: (y, n, p, o) => sharedEngine().kernels.nchwToRows(y, n, p, o),
  addBias: (a, cols, bias) => sharedEngine().kernels.addBias(a, cols, bias),
  biasGrad: (a, cols) => sharedEngine().kernels.biasGrad(a, cols),
  adamUpdate: (step) => sharedEngine().kernels.adamUpdate(step),
});

/**
 * The single-threaded WASM SIMD backend: synchronous, instantiated on first
 * use, copying inputs into its own memory and results out. Bit-for-bit the
 * reference backend's `xq` and `dx`.
 *
 * @example
 * ```ts
 * import { wasmBackend } from "./backend.ts";
 * import { quantizerConstants } from "../core/backend.ts";
 * import assert from "node:assert/strict";
 *
 * const gates = [1, 0, 0, 0] as const; // 4 bits
 * const pass = { channels: 1, z2: null, gates, constants: quantizerConstants(1, false, gates) };
 * const xq = wasmBackend.quantizeForward(new Float32Array([0.45]), pass);
 * assert.ok(Math.abs(xq[0] - 7 / 15) < 1e-6); // the 4-bit unsigned grid has step 1/15
 * ```
 */
export const wasmBackend: QuantizerBackend = Object.freeze({
  name: "wasm",
  quantizeForward(x: Float32Array, pass: QuantizerPass): Float32Array {
    return sharedEngine().quantizeForward(x, pass);
  },
  quantizePoolForward(
    x: Float32Array,
    pass: QuantizerPass,
    g: PoolGeometry,
  ): Float32Array {
    return sharedEngine().quantizePoolForward(x, pass, g);
  },
  quantizeBackward(
    x: Float32Array,
    dy: Float32Array,
    pass: QuantizerPass,
  ): QuantizerGrads {
    return sharedEngine().quantizeBackward(x, dy, pass);
  },
});
