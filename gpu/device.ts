/**
 * Acquiring a WebGPU device with the adapter's full limits.
 *
 * WebGPU's default limits are small (256 invocations per workgroup, 16 KiB
 * of workgroup memory, 128 MiB per storage binding); the kernels of this
 * library ask for whatever the adapter offers instead.
 *
 * @module
 */

/** Thrown when WebGPU, or a usable adapter, is not available. */
export class GpuUnavailableError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was missing.
   * @param options Standard error options (`cause`).
   *
   * @example
   * ```ts
   * import { GpuUnavailableError } from "@bbits/core/gpu";
   * import assert from "node:assert/strict";
   *
   * const error = new GpuUnavailableError("no adapter");
   * assert.equal(error.name, "GpuUnavailableError");
   * ```
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GpuUnavailableError";
  }
}

/** What a benchmark report needs to know about the adapter. */
export interface GpuAdapterSummary {
  /** Whether this is a software / fallback adapter (e.g. llvmpipe). */
  readonly isFallbackAdapter: boolean;
  /** Adapter vendor as the implementation reports it (may be empty). */
  readonly vendor: string;
  /** Adapter architecture (may be empty). */
  readonly architecture: string;
  /** Adapter device name or id (may be empty). */
  readonly device: string;
  /** Human-readable description, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits)"`. */
  readonly description: string;
  /** Features the device was created with. */
  readonly features: readonly string[];
  /** `maxStorageBufferBindingSize` of the device, in bytes. */
  readonly maxStorageBufferBindingSize: number;
  /** `maxBufferSize` of the device, in bytes. */
  readonly maxBufferSize: number;
}

/** Options of {@link requestGpuDevice}. */
export interface RequestGpuDeviceOptions {
  /** Adapter power preference (default: the implementation's choice). */
  readonly powerPreference?: GPUPowerPreference;
  /** Optional features to enable when the adapter has them, e.g. `"timestamp-query"`. */
  readonly optionalFeatures?: readonly GPUFeatureName[];
}

/** A device together with a summary of its adapter. */
export interface GpuDeviceHandle {
  /** The device, with the adapter's limits. Destroy it when done. */
  readonly device: GPUDevice;
  /** The adapter summary, for reports and tolerance decisions. */
  readonly adapterInfo: GpuAdapterSummary;
}

// Limits worth raising to the adapter's values. Asking for every limit the
// adapter lists fails on some implementations (unknown or unsupported names).
const RAISED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
] as const;

/**
 * Requests a WebGPU adapter and a device with the adapter's limits.
 *
 * @param options Power preference and optional features.
 * @returns The device and a summary of the adapter.
 * @throws {GpuUnavailableError} If `navigator.gpu` is missing, no adapter is
 * found, or the device request fails.
 *
 * @example
 * ```ts
 * import { requestGpuDevice } from "@bbits/core/gpu";
 * import assert from "node:assert/strict";
 *
 * const { device, adapterInfo } = await requestGpuDevice();
 * assert.equal(typeof adapterInfo.isFallbackAdapter, "boolean");
 * assert.ok(device.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20);
 * device.destroy();
 * ```
 */
export async function requestGpuDevice(
  options: RequestGpuDeviceOptions = {},
): Promise<GpuDeviceHandle> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new GpuUnavailableError(
      "Cannot use the WebGPU backend: navigator.gpu is undefined in this runtime",
    );
  }
  const adapter = await gpu.requestAdapter(
    options.powerPreference
      ? { powerPreference: options.powerPreference }
      : undefined,
  );
  if (!adapter) {
    throw new GpuUnavailableError(
      "Cannot use the WebGPU backend: navigator.gpu.requestAdapter() returned null (no GPU or software adapter found)",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const requiredFeatures = (options.optionalFeatures ?? []).filter((f) =>
    adapter.features.has(f)
  );
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (cause) {
    throw new GpuUnavailableError(
      `Cannot use the WebGPU backend: requestDevice() failed with limits ${
        JSON.stringify(requiredLimits)
      }`,
      { cause },
    );
  }
  return { device, adapterInfo: summarizeDevice(device) };
}

/**
 * Summarises the adapter of an existing device (`device.adapterInfo`).
 *
 * @param device A WebGPU device.
 * @returns The adapter summary.
 *
 * @example
 * ```ts
 * import { requestGpuDevice, summarizeDevice } from "@bbits/core/gpu";
 * import assert from "node:assert/strict";
 *
 * const { device } = await requestGpuDevice();
 * assert.equal(typeof summarizeDevice(device).description, "string");
 * device.destroy();
 * ```
 */
export function summarizeDevice(device: GPUDevice): GpuAdapterSummary {
  const info = device.adapterInfo;
  return Object.freeze({
    isFallbackAdapter: info?.isFallbackAdapter === true,
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    device: info?.device ?? "",
    description: info?.description ?? "",
    features: Object.freeze([...device.features].sort()),
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
  });
}
