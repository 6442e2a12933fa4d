/**
 * # @bbits/core/gpu — the WebGPU backend
 *
 * The fused residual quantizer (forward and straight-through backward) and
 * the counter-based uniform generator as WGSL compute kernels. The forward
 * output and `dx` match the reference backend bit for bit on an IEEE-exact
 * adapter (llvmpipe in CI); per-channel gradient sums are float32 tree sums
 * per tile added in float64 on the host. Everything is asynchronous because
 * GPU read-back is; a resident API keeps tensors on the device for training
 * loops and benchmarks.
 *
 * This subpath is separate so that importing `@bbits/core` never loads GPU
 * code.
 *
 * @example Forward and backward on the GPU, checked against the reference
 * ```ts
 * import { createGpuBackend } from "@bbits/core/gpu";
 * import { quantizerConstants, referenceBackend } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gpu = await createGpuBackend();
 * const gates = [1, 1, 0, 0] as const; // 8 bits
 * const pass = {
 *   channels: 2,
 *   z2: new Float32Array([1, 0.5]),
 *   gates,
 *   constants: quantizerConstants(0.8, true, gates),
 * };
 * const x = new Float32Array([0.1, -0.5, 0.9, -0.02]);
 * const dy = new Float32Array([1, -2, 0.5, 3]);
 * assert.deepEqual(
 *   await gpu.quantizeForward(x, pass),
 *   referenceBackend.quantizeForward(x, pass),
 * );
 * const grads = await gpu.quantizeBackward(x, dy, pass);
 * assert.deepEqual(grads.dx, referenceBackend.quantizeBackward(x, dy, pass).dx);
 * gpu.destroy();
 * ```
 *
 * @module
 */

export {
  type GpuAdapterSummary,
  type GpuDeviceHandle,
  GpuUnavailableError,
  requestGpuDevice,
  type RequestGpuDeviceOptions,
  summarizeDevice,
} from "./device.ts";
export {
  createGpuBackend,
  type GpuBackend,
  type GpuF32Buffer,
} from "./backend.ts";
export {
  BACKWARD_ELEMENTS_PER_INVOCATION,
  BACKWARD_WORKGROUP_SIZE,
  ELEMENTS_PER_TILE,
  FORWARD_WORKGROUP_SIZE,
  PARTIALS_STRIDE,
  QUANTIZER_BACKWARD_WGSL,
  QUANTIZER_FORWARD_WGSL,
  QUANTIZER_PARAMS_BYTES,
} from "./kernels/quantizer.ts";
export {
  RNG_PARAMS_BYTES,
  RNG_WORKGROUP_SIZE,
  THREEFRY_WGSL,
  UNIFORM_FILL_WGSL,
} from "./kernels/rng.ts";
export type {
  QuantizerConstants,
  QuantizerGrads,
  QuantizerPass,
} from "../core/backend.ts";
export type { RandomKey } from "../core/rng.ts";
