/**
 * # @bbits/core/gpu — the WebGPU device
 *
 * Tensors live in GPU storage buffers and kernels run in WGSL; a tensor is
 * read back only when asked (`await tensor.read()`). The residual quantizer
 * (forward, straight-through backward, and the fused max-pool of the
 * forward pass) and the Threefry uniform generator run on the GPU; the
 * quantizer derives its scales and clip bounds on the device from the
 * `xmax` and `gates` tensors, so a step never waits for the host. On an
 * IEEE-exact adapter (llvmpipe in CI) the forward output and `dx` are the
 * reference device's bits; the gradient reductions are float32 tree sums
 * that agree with the reference's float64 sums to about 1e-6 of the sum of
 * their terms' magnitudes. Every other kernel throws
 * `UnsupportedKernelError` (nothing falls back to another device): run those
 * on the `"wasm"` or `"reference"` device.
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
