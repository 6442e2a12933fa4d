/**
 * # @bbits/core/gpu — the WebGPU device
 *
 * Tensors live in GPU storage buffers and every kernel of `Kernels` runs
 * in WGSL (`gpu/kernels/`, one family a file): GEMM tiled in workgroup
 * memory with register tiles (split-K for long reductions), convolution as
 * implicit GEMMs, pooling, batch norm, softmax cross-entropy, the residual
 * quantizer, hard-concrete gates and their prior (from the same Threefry
 * stream as the CPU), Adam and SGD. A tensor is read back only when asked
 * (`await tensor.read()`); a device scope records its kernels into one
 * command encoder and submits it when it ends; released buffers are pooled.
 * WGSL has no float64: where the reference computes in float64 the device
 * uses double-float arithmetic or float32 within stated bounds (see the
 * module documentation of `core/kernels.ts`). A lost device or an
 * out-of-memory allocation makes the next read throw, naming the last
 * kernel recorded and its sizes.
 *
 * This subpath is separate so that importing `@bbits/core` never loads GPU
 * code; `device("webgpu")` from `@bbits/core` opens the same device.
 *
 * @example Quantize and differentiate on the GPU, checked against the reference
 * ```ts
 * import { createGpuDevice } from "@bbits/core/gpu";
 * import { Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * using gpu = await createGpuDevice();
 * const values = { x: [0.1, -0.5, 0.9, -0.02], xmax: [0.8], gates: [1, 1, 0, 0], z2: [1, 0.5] };
 * const on = (dev?: typeof gpu) => ({
 *   x: Tensor.from(values.x, [2, 2], dev),
 *   xmax: Tensor.from(values.xmax, [1], dev),
 *   gates: Tensor.from(values.gates, [4], dev),
 *   z2: Tensor.from(values.z2, [2], dev),
 * });
 * const g = on(gpu);
 * const r = on();
 * const xq = gpu.kernels.residualQuantize(g.x, g.xmax, g.gates, g.z2, true);
 * const expected = r.x.device.kernels.residualQuantize(r.x, r.xmax, r.gates, r.z2, true);
 * assert.deepEqual(await xq.read(), await expected.read());
 * ```
 *
 * @module
 */

export {
  createGpuDevice,
  type GpuAdapterSummary,
  type GpuDevice,
  type GpuDeviceOptions,
  GpuUnavailableError,
} from "./device.ts";
