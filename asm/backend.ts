/**
 * The WASM SIMD backend: the fused quantizer kernels of `asm/src/` (compiled
 * by `asm/build.ts` into `asm/kernels.generated.ts`), single-threaded as
 * {@link wasmBackend} or split over Web Workers sharing one
 * `WebAssembly.Memory` with {@link createWasmBackend}.
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
  SPIN_ITERATIONS,
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
   * Runs `op` on every job: jobs 1.. on the workers, job 0 on this thread,
   * then waits for the workers (spinning briefly, then `Atomics.wait`).
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
      let spins = 0;
      while (Atomics.load(control, index) !== sequence) {
        if (++spins > SPIN_ITERATIONS) {
          Atomics.wait(control, index, Atomics.load(control, index), 1);
        }
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
      const c = pass.constants;
      const [s0, s1, s2, s3, s4] = c.scales;
      const [g0, g1, g2, g3] = pass.gates;
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
        c.lo,
        c.hi,
        c.span,
        s0,
        s1,
        s2,
        s3,
        s4,
        g0,
        g1,
        g2,
        g3,
        c.levelsForward,
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
    const transA = shape.transA === true;
    const transB = shape.transB === true;
    return this.#scoped(() => {
      const pa = this.#reserve(a.length * 4);
      const pb = this.#reserve(b.length * 4);
      const pc = this.#reserve(m * n * 4);
      const jobs = this.#gemmJobs(m, n, k);
      const byRows = m >= n;
      const scratch = jobs.map((job) =>
        this.#reserve(
          this.#kernels.gemmScratchBytes(k, byRows ? n : job.end - job.begin),
        )
      );
      // Views after every reserve: growth replaces the buffer.
      const buffer = this.memory.buffer;
      new Float32Array(buffer, pa, a.length).set(a);
      new Float32Array(buffer, pb, b.length).set(b);
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
      return new Float32Array(this.memory.buffer, pc, m * n).slice();
    });
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

  quantizeForward(x: Float32Array, pass: QuantizerPass): Float32Array {
    return this.#scoped(() => {
      const bx = this.alloc(x.length);
      bx.view().set(x);
      this.forwardResident(bx, bx, pass);
      return bx.view().slice();
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
      const bx = this.alloc(x.length);
      const bdy = this.alloc(x.length);
      bx.view().set(x);
      bdy.view().set(dy);
      const grads = this.backwardResident(bx, bdy, bdy, pass);
      return { dx: bdy.view().slice(), ...grads };
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
  shared ??= new Engine(1, DEFAULT_PARALLEL_THRESHOLD);
  return shared.gemm(shape, a, b);
}

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
    shared ??= new Engine(1, DEFAULT_PARALLEL_THRESHOLD);
    return shared.quantizeForward(x, pass);
  },
  quantizeBackward(
    x: Float32Array,
    dy: Float32Array,
    pass: QuantizerPass,
  ): QuantizerGrads {
    shared ??= new Engine(1, DEFAULT_PARALLEL_THRESHOLD);
    return shared.quantizeBackward(x, dy, pass);
  },
});
