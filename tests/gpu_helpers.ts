/**
 * The WebGPU backend shared by the GPU test files: created once per test
 * module; without an adapter every test that asks for it fails (never skips)
 * with the reason.
 */

import { createGpuBackend, type GpuBackend } from "../gpu/mod.ts";

let gpu: GpuBackend | undefined;
let setupError: unknown;
try {
  gpu = await createGpuBackend();
} catch (error) {
  setupError = error;
}

/** The shared backend; throws with the setup error when there is none. */
export function backend(): GpuBackend {
  if (gpu === undefined) {
    throw new Error(
      `The WebGPU tests need a WebGPU adapter (a software one such as llvmpipe will do) and none could be used: ${setupError}`,
      { cause: setupError },
    );
  }
  return gpu;
}

/** Whether the adapter is the exact software fallback (or unknown, when there is none). */
export function onFallbackAdapter(): boolean {
  return gpu?.adapterInfo.isFallbackAdapter !== false;
}
