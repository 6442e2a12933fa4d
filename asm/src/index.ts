/**
 * The one WASM module of the SIMD backend: every kernel, exported.
 * Contracts are in each kernel's file.
 */

// @ts-nocheck: AssemblyScript, not TypeScript.

export {
  quantizeBackward,
  quantizeForward,
  quantizePoolForward,
} from "./quantizer";
export { fillUniform, threefry2x32 } from "./rng";
export { copy } from "./copy";
export { convGemm, convGemmScratchBytes, gemm, gemmScratchBytes } from "./gemm";
export {
  gemmSparseRows,
  gemmSparseScratchBytes,
  gemmSparseTransA,
  nonFiniteCount,
  nonzeroCount,
  sparseCol2im,
  sparseCol2imScratchBytes,
} from "./gemm_sparse";
export {
  activation,
  adamUpdate,
  addBias,
  avgPoolBackward,
  avgPoolForward,
  batchNormApply,
  batchNormBackward,
  batchNormStats,
  col2im,
  columnSums,
  im2col,
  maxPoolBackward,
  maxPoolForward,
  nchwToRows,
  rowsToNchw,
  softmaxBackward,
  softmaxForward,
} from "./ops";
