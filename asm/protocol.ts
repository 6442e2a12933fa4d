/**
 * The calling thread and the workers of a multi-threaded WASM backend share
 * the first bytes of the module's memory: one control block of
 * {@link CONTROL_WORDS} int32 per thread slot (its own cache line), then
 * {@link MAX_ARGS} float64 kernel arguments per slot.
 *
 * A job: the caller writes the arguments, `op` and `argCount`, then stores a
 * new `sequence` and notifies; the worker runs the kernel, sets `failed`,
 * stores `done = sequence` and notifies. Neither side spins: both block in
 * `Atomics.wait` as soon as there is nothing to do. On the 2-vCPU machines this
 * was built on, a waiting thread that spins (a loop of `Atomics.load`) slows
 * the thread doing the work once V8's optimizing compiler has compiled the
 * loop (after some seconds of load): with 20,000 spins the two-thread training
 * step fell by about 40 % and stayed there, with none it holds its speed
 * (README, "Two threads: the spinning wait").
 *
 * Internal to `asm/backend.ts` and `asm/worker.ts`; not part of the public API.
 *
 * @module
 */

/** Int32 words per thread slot in the control block (64 bytes). */
export const CONTROL_WORDS = 16;

/** Word indices inside a slot. */
export const CONTROL = Object.freeze({
  sequence: 0,
  done: 1,
  op: 2,
  argCount: 3,
  failed: 4,
});

/** Float64 arguments per slot. */
export const MAX_ARGS = 32;

/** Kernel operations a worker runs. */
export enum Op {
  /** Leave the worker loop (sent by `dispose()`). */
  quit = -1,
  forward = 1,
  backward = 2,
  copy = 3,
  uniform = 4,
  /** `gemm` on one row or column block of `C` (`asm/src/gemm.ts`). */
  gemm = 5,
  // The training-op kernels of `asm/src/ops.ts`, each on one range.
  activation = 6,
  maxPoolForward = 7,
  maxPoolBackward = 8,
  avgPoolForward = 9,
  avgPoolBackward = 10,
  batchNormStats = 11,
  batchNormApply = 12,
  batchNormBackward = 13,
  im2col = 14,
  col2im = 15,
  rowsToNchw = 16,
  nchwToRows = 17,
  addBias = 18,
  columnSums = 19,
  adamUpdate = 20,
  /** `quantizePoolForward` of `asm/src/quantizer.ts` on a range of planes. */
  quantizePool = 21,
}

/** The export each training-op {@link Op} runs (arguments in the export's order). */
const OP_EXPORTS = {
  [Op.activation]: "activation",
  [Op.maxPoolForward]: "maxPoolForward",
  [Op.maxPoolBackward]: "maxPoolBackward",
  [Op.avgPoolForward]: "avgPoolForward",
  [Op.avgPoolBackward]: "avgPoolBackward",
  [Op.batchNormStats]: "batchNormStats",
  [Op.batchNormApply]: "batchNormApply",
  [Op.batchNormBackward]: "batchNormBackward",
  [Op.im2col]: "im2col",
  [Op.col2im]: "col2im",
  [Op.rowsToNchw]: "rowsToNchw",
  [Op.nchwToRows]: "nchwToRows",
  [Op.addBias]: "addBias",
  [Op.columnSums]: "columnSums",
  [Op.adamUpdate]: "adamUpdate",
} as const;

/** Names of the range kernels of `asm/src/ops.ts` that threads can share. */
export type RangeKernel = (typeof OP_EXPORTS)[keyof typeof OP_EXPORTS];

/** Bytes of the control block and argument slots for `threads` threads. */
export function headerBytes(threads: number): number {
  return threads * CONTROL_WORDS * 4 + threads * MAX_ARGS * 8;
}

/** Byte offset of slot `slot`'s arguments. */
export function argsOffset(slot: number, threads: number): number {
  return threads * CONTROL_WORDS * 4 + slot * MAX_ARGS * 8;
}

/**
 * The exports of the kernel module (`asm/src/index.ts`); the range kernels
 * of `asm/src/ops.ts` take the arguments of their contracts there.
 */
export interface KernelExports
  extends Record<RangeKernel, (...args: number[]) => void> {
  quantizeForward(...args: number[]): void;
  quantizeBackward(...args: number[]): void;
  quantizePoolForward(...args: number[]): void;
  copy(x: number, y: number, begin: number, end: number): void;
  fillUniform(...args: number[]): void;
  /** `(a, b, c, m, n, k, lda, ldb, ldc, flags, i0, i1, j0, j1, scratch)`. */
  gemm(...args: number[]): void;
  /** Scratch bytes one `gemm` call needs for `k` and `cols` columns of `C`. */
  gemmScratchBytes(k: number, cols: number): number;
  /** `(z, labels, probs, n, k)`, returns the summed loss. */
  softmaxForward(...args: number[]): number;
  /** `(probs, labels, dz, n, k, scale)`. */
  softmaxBackward(...args: number[]): void;
}

/** Runs kernel `op` with `args` (the argument order of the AssemblyScript export). */
export function runOp(
  kernels: KernelExports,
  op: Op,
  args: ArrayLike<number>,
): void {
  const a = Array.from(args);
  switch (op) {
    case Op.forward:
      return kernels.quantizeForward(...a);
    case Op.backward:
      return kernels.quantizeBackward(...a);
    case Op.quantizePool:
      return kernels.quantizePoolForward(...a);
    case Op.copy:
      return kernels.copy(a[0], a[1], a[2], a[3]);
    case Op.uniform:
      return kernels.fillUniform(...a);
    case Op.gemm:
      return kernels.gemm(...a);
    default: {
      const name = (OP_EXPORTS as Partial<Record<Op, RangeKernel>>)[op];
      if (name === undefined) {
        throw new RangeError(`Unknown WASM kernel op ${op}`);
      }
      return kernels[name](...a);
    }
  }
}
