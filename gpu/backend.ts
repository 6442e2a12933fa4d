/**
 * The WebGPU backend: the fused quantizer forward and backward and the
 * uniform generator as WGSL compute kernels.
 *
 * It is asynchronous because GPU read-back is. The forward output and `dx`
 * are bit for bit those of the reference backend on an IEEE-exact adapter
 * (tested on llvmpipe); the per-channel reductions are float32 tree sums per
 * tile, added in float64 on the host (relative error about 1e-6).
 *
 * For benchmarks and training loops there is a resident API that keeps
 * tensors on the device: {@link GpuBackend.upload}, {@link
 * GpuBackend.forwardResident}, {@link GpuBackend.backwardResident}, {@link
 * GpuBackend.read}.
 *
 * @module
 */

import type { QuantizerGrads, QuantizerPass } from "../core/backend.ts";
import { assertRandomKey, type RandomKey } from "../core/rng.ts";
import {
  type GpuAdapterSummary,
  requestGpuDevice,
  summarizeDevice,
} from "./device.ts";
import {
  ELEMENTS_PER_TILE,
  FORWARD_WORKGROUP_SIZE,
  PARTIALS_STRIDE,
  QUANTIZER_BACKWARD_WGSL,
  QUANTIZER_FORWARD_WGSL,
  QUANTIZER_PARAMS_BYTES,
} from "./kernels/quantizer.ts";
import {
  RNG_PARAMS_BYTES,
  RNG_WORKGROUP_SIZE,
  UNIFORM_FILL_WGSL,
} from "./kernels/rng.ts";

/** A float32 array that lives on the device, made by a {@link GpuBackend}. */
export interface GpuF32Buffer {
  /** The underlying storage buffer (usage STORAGE | COPY_SRC | COPY_DST). */
  readonly buffer: GPUBuffer;
  /** Number of float32 elements. */
  readonly length: number;
  /** Releases the device memory; the buffer must not be used afterwards. */
  destroy(): void;
}

/** The WebGPU quantizer backend made by {@link createGpuBackend}. */
export interface GpuBackend {
  /** Always `"webgpu"`. */
  readonly name: "webgpu";
  /** The device the backend runs on. */
  readonly device: GPUDevice;
  /** Summary of the adapter (fallback or not, vendor, limits). */
  readonly adapterInfo: GpuAdapterSummary;
  /**
   * Fused forward: returns `xq` for a flat float32 `x` (a new array).
   *
   * @throws {RangeError} If the shapes do not fit `pass` or the device limits.
   */
  quantizeForward(x: Float32Array, pass: QuantizerPass): Promise<Float32Array>;
  /**
   * Fused straight-through backward: all gradients in one pass over `x`, `dy`.
   *
   * @throws {RangeError} If the shapes do not fit `pass` or the device limits.
   */
  quantizeBackward(
    x: Float32Array,
    dy: Float32Array,
    pass: QuantizerPass,
  ): Promise<QuantizerGrads>;
  /**
   * Uniforms in (0, 1) from stream positions `offset .. offset + count - 1`
   * of `key`, bit for bit those of `uniform()` in `core/rng.ts`.
   *
   * @throws {TypeError} On a bad key. @throws {RangeError} On a bad count or offset.
   */
  uniform(
    key: RandomKey,
    count: number,
    offset?: number,
  ): Promise<Float32Array>;
  /** Copies `data` into a new device buffer. */
  upload(data: Float32Array): GpuF32Buffer;
  /** A new zero-filled device buffer of `length` float32 elements. */
  allocate(length: number): GpuF32Buffer;
  /**
   * Encodes and submits the forward pass `out = xq(x)` without waiting or
   * reading back. `out` must not be `x`.
   */
  forwardResident(
    x: GpuF32Buffer,
    out: GpuF32Buffer,
    pass: QuantizerPass,
  ): void;
  /**
   * Encodes and submits the backward pass writing `dx` on the device, and
   * reads back only the small per-tile partial sums.
   */
  backwardResident(
    x: GpuF32Buffer,
    dy: GpuF32Buffer,
    dx: GpuF32Buffer,
    pass: QuantizerPass,
  ): Promise<Omit<QuantizerGrads, "dx">>;
  /** Reads a device buffer back into a new Float32Array. */
  read(buffer: GpuF32Buffer): Promise<Float32Array>;
  /** Resolves when all submitted work is done. */
  sync(): Promise<void>;
  /**
   * Releases the backend's buffers, and the device if the backend requested
   * it itself (not one passed to {@link createGpuBackend}).
   */
  destroy(): void;
}

const F32 = Float32Array.BYTES_PER_ELEMENT;

/** Workgroup grid `[x, y]` for `groups` workgroups under the per-dimension limit. */
function grid(groups: number, maxPerDimension: number): [number, number] {
  if (groups <= maxPerDimension) return [groups, 1];
  const height = Math.ceil(groups / maxPerDimension);
  return [Math.ceil(groups / height), height];
}

function checkPass(
  pass: QuantizerPass,
  length: number,
  what: string,
): void {
  const { channels, z2, constants } = pass;
  if (!Number.isInteger(channels) || channels < 1) {
    throw new RangeError(
      `Cannot run the WebGPU ${what}: channels must be a positive integer, got ${channels}`,
    );
  }
  if (length % channels !== 0) {
    throw new RangeError(
      `Cannot run the WebGPU ${what}: length ${length} is not a multiple of the ${channels} channels`,
    );
  }
  if (z2 !== null && z2.length !== channels) {
    throw new RangeError(
      `Cannot run the WebGPU ${what}: z2 has ${z2.length} values for ${channels} channels`,
    );
  }
  for (const levels of [constants.levelsForward, constants.levelsBackward]) {
    if (!Number.isInteger(levels) || levels < 1 || levels > 5) {
      throw new RangeError(
        `Cannot run the WebGPU ${what}: levels must be 1 to 5, got ${levels}`,
      );
    }
  }
}

/**
 * Creates the WebGPU backend, compiling its pipelines once.
 *
 * @param device A device to run on; by default one is requested with
 * `requestGpuDevice()` and destroyed by {@link GpuBackend.destroy}.
 * @returns The backend.
 * @throws {GpuUnavailableError} If no device is given and none can be had.
 *
 * @example Quantize at 4 bits and read back the same values as the reference
 * ```ts
 * import { createGpuBackend } from "@bbits/core/gpu";
 * import { quantizerConstants, referenceBackend } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gpu = await createGpuBackend();
 * const gates = [1, 0, 0, 0] as const;
 * const pass = { channels: 1, z2: null, gates, constants: quantizerConstants(1, true, gates) };
 * const x = new Float32Array([-0.9, -0.1, 0.35, 2]);
 * const xq = await gpu.quantizeForward(x, pass);
 * assert.deepEqual(xq, referenceBackend.quantizeForward(x, pass));
 * gpu.destroy();
 * ```
 */
export async function createGpuBackend(
  device?: GPUDevice,
): Promise<GpuBackend> {
  const ownsDevice = device === undefined;
  let adapterInfo: GpuAdapterSummary;
  if (device === undefined) {
    ({ device, adapterInfo } = await requestGpuDevice());
  } else {
    adapterInfo = summarizeDevice(device);
  }
  const dev: GPUDevice = device;
  try {
    return await buildBackend(dev, adapterInfo, ownsDevice);
  } catch (error) {
    if (ownsDevice) dev.destroy();
    throw error;
  }
}

async function buildBackend(
  device: GPUDevice,
  adapterInfo: GpuAdapterSummary,
  ownsDevice: boolean,
): Promise<GpuBackend> {
  const storage = (
    readOnly: boolean,
    binding: number,
  ): GPUBindGroupLayoutEntry => ({
    binding,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: readOnly ? "read-only-storage" : "storage" },
  });
  const uniformEntry: GPUBindGroupLayoutEntry = {
    binding: 0,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: "uniform" },
  };
  const forwardLayout = device.createBindGroupLayout({
    label: "bbits quantizer forward",
    entries: [
      uniformEntry,
      storage(true, 1),
      storage(true, 2),
      storage(false, 3),
    ],
  });
  const backwardLayout = device.createBindGroupLayout({
    label: "bbits quantizer backward",
    entries: [
      uniformEntry,
      storage(true, 1),
      storage(true, 2),
      storage(true, 3),
      storage(false, 4),
      storage(false, 5),
    ],
  });
  const rngLayout = device.createBindGroupLayout({
    label: "bbits uniform fill",
    entries: [uniformEntry, storage(false, 1)],
  });
  const pipeline = (
    label: string,
    code: string,
    entryPoint: string,
    layout: GPUBindGroupLayout,
  ) =>
    device.createComputePipelineAsync({
      label,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: {
        module: device.createShaderModule({ label, code }),
        entryPoint,
      },
    });
  const [forwardPipeline, backwardPipeline, rngPipeline] = await Promise.all([
    pipeline(
      "bbits quantizer forward",
      QUANTIZER_FORWARD_WGSL,
      "quantize_forward",
      forwardLayout,
    ),
    pipeline(
      "bbits quantizer backward",
      QUANTIZER_BACKWARD_WGSL,
      "quantize_backward",
      backwardLayout,
    ),
    pipeline(
      "bbits uniform fill",
      UNIFORM_FILL_WGSL,
      "uniform_fill",
      rngLayout,
    ),
  ]);

  const maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
  const maxBinding = Math.min(
    device.limits.maxStorageBufferBindingSize,
    device.limits.maxBufferSize,
  );
  // Uniform blocks are rewritten with queue.writeBuffer before each submit;
  // queue order makes that safe for back-to-back resident calls.
  const forwardParams = device.createBuffer({
    label: "bbits quantizer forward params",
    size: QUANTIZER_PARAMS_BYTES,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  const backwardParams = device.createBuffer({
    label: "bbits quantizer backward params",
    size: QUANTIZER_PARAMS_BYTES,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  let z2Buffer = device.createBuffer({
    label: "bbits z2",
    size: F32,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  let destroyed = false;

  const live = (what: string) => {
    if (destroyed) {
      throw new Error(`Cannot run ${what}: the WebGPU backend was destroyed`);
    }
  };

  const checkLength = (length: number, what: string) => {
    if (length * F32 > maxBinding) {
      throw new RangeError(
        `Cannot run the WebGPU ${what} on ${length} elements: ${
          length * F32
        } bytes exceed the device's storage binding limit of ${maxBinding} bytes`,
      );
    }
  };

  const makeBuffer = (length: number, label: string): GpuF32Buffer => {
    if (!Number.isInteger(length) || length < 0) {
      throw new RangeError(
        `Cannot allocate a device buffer of ${length} elements: the length must be a non-negative integer`,
      );
    }
    checkLength(length, label);
    const buffer = device.createBuffer({
      label,
      // Zero-sized bindings are invalid; an empty array still gets 4 bytes.
      size: Math.max(length, 1) * F32,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST,
    });
    return Object.freeze({ buffer, length, destroy: () => buffer.destroy() });
  };

  const upload = (data: Float32Array): GpuF32Buffer => {
    live("upload()");
    const b = makeBuffer(data.length, "bbits upload");
    if (data.length > 0) {
      device.queue.writeBuffer(b.buffer, 0, data as Float32Array<ArrayBuffer>);
    }
    return b;
  };

  const read = async (b: GpuF32Buffer): Promise<Float32Array> => {
    live("read()");
    if (b.length === 0) return new Float32Array(0);
    const staging = device.createBuffer({
      label: "bbits read-back",
      size: b.length * F32,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(b.buffer, 0, staging, 0, b.length * F32);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      return new Float32Array(staging.getMappedRange().slice(0));
    } finally {
      staging.destroy();
    }
  };

  /** Writes z2 (or nothing) and returns the buffer to bind. */
  const bindZ2 = (pass: QuantizerPass): GPUBuffer => {
    if (pass.z2 === null) return z2Buffer;
    if (z2Buffer.size < pass.z2.length * F32) {
      z2Buffer.destroy(); // submitted work that uses it still completes
      z2Buffer = device.createBuffer({
        label: "bbits z2",
        size: pass.z2.length * F32,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
    }
    device.queue.writeBuffer(
      z2Buffer,
      0,
      pass.z2 as Float32Array<ArrayBuffer>,
    );
    return z2Buffer;
  };

  const writeParams = (
    target: GPUBuffer,
    pass: QuantizerPass,
    length: number,
    levels: number,
    chunksPerChannel: number,
    gridWidth: number,
  ) => {
    const c = pass.constants;
    const bytes = new ArrayBuffer(QUANTIZER_PARAMS_BYTES);
    const u = new Uint32Array(bytes);
    const f = new Float32Array(bytes);
    u.set([
      length,
      length / pass.channels,
      levels,
      c.levelsForward,
      pass.z2 === null ? 0 : 1,
      chunksPerChannel,
      gridWidth,
      0, // zero: see opaque() in the kernel
    ]);
    f.set([c.hi, c.lo, c.span, c.clipGradHi, c.clipGradLo], 8);
    f.set(c.scales.slice(0, 4), 16);
    f.set(pass.gates, 20);
    f.set(c.xmaxFactors.slice(0, 4), 24);
    f[28] = c.scales[4];
    f[29] = c.xmaxFactors[4];
    device.queue.writeBuffer(target, 0, bytes);
  };

  const forwardResident = (
    x: GpuF32Buffer,
    out: GpuF32Buffer,
    pass: QuantizerPass,
  ): void => {
    live("forwardResident()");
    checkPass(pass, x.length, "forward pass");
    if (out.length !== x.length) {
      throw new RangeError(
        `Cannot run the WebGPU forward pass: out has ${out.length} elements, x has ${x.length}`,
      );
    }
    if (out.buffer === x.buffer) {
      throw new RangeError(
        "Cannot run the WebGPU forward pass: out must not be the buffer x",
      );
    }
    if (x.length === 0) return;
    const [width, height] = grid(
      Math.ceil(x.length / FORWARD_WORKGROUP_SIZE),
      maxGroups,
    );
    const z2 = bindZ2(pass);
    writeParams(
      forwardParams,
      pass,
      x.length,
      pass.constants.levelsForward,
      1,
      width,
    );
    const bindGroup = device.createBindGroup({
      layout: forwardLayout,
      entries: [
        { binding: 0, resource: { buffer: forwardParams } },
        { binding: 1, resource: { buffer: x.buffer } },
        { binding: 2, resource: { buffer: z2 } },
        { binding: 3, resource: { buffer: out.buffer } },
      ],
    });
    const encoder = device.createCommandEncoder();
    const compute = encoder.beginComputePass();
    compute.setPipeline(forwardPipeline);
    compute.setBindGroup(0, bindGroup);
    compute.dispatchWorkgroups(width, height);
    compute.end();
    device.queue.submit([encoder.finish()]);
  };

  const backwardResident = async (
    x: GpuF32Buffer,
    dy: GpuF32Buffer,
    dx: GpuF32Buffer,
    pass: QuantizerPass,
  ): Promise<Omit<QuantizerGrads, "dx">> => {
    live("backwardResident()");
    checkPass(pass, x.length, "backward pass");
    if (dy.length !== x.length || dx.length !== x.length) {
      throw new RangeError(
        `Cannot run the WebGPU backward pass: x, dy and dx have ${x.length}, ${dy.length} and ${dx.length} elements`,
      );
    }
    if (dx.buffer === x.buffer || dx.buffer === dy.buffer) {
      throw new RangeError(
        "Cannot run the WebGPU backward pass: dx must not be the buffer x or dy",
      );
    }
    const channels = pass.channels;
    const perChannel = x.length / channels;
    const dz2 = pass.z2 ? new Float64Array(channels) : null;
    const dgates: [number, number, number, number] = [0, 0, 0, 0];
    if (x.length === 0) return { dxmax: 0, dz2, dgates };

    const chunksPerChannel = Math.ceil(perChannel / ELEMENTS_PER_TILE);
    const tiles = channels * chunksPerChannel;
    const [width, height] = grid(tiles, maxGroups);
    const partialBytes = tiles * PARTIALS_STRIDE * F32;
    const partials = device.createBuffer({
      label: "bbits backward partial sums",
      size: partialBytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    });
    const staging = device.createBuffer({
      label: "bbits backward partial sums read-back",
      size: partialBytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    let sums: Float32Array;
    try {
      const z2 = bindZ2(pass);
      writeParams(
        backwardParams,
        pass,
        x.length,
        pass.constants.levelsBackward,
        chunksPerChannel,
        width,
      );
      const bindGroup = device.createBindGroup({
        layout: backwardLayout,
        entries: [
          { binding: 0, resource: { buffer: backwardParams } },
          { binding: 1, resource: { buffer: x.buffer } },
          { binding: 2, resource: { buffer: z2 } },
          { binding: 3, resource: { buffer: dy.buffer } },
          { binding: 4, resource: { buffer: dx.buffer } },
          { binding: 5, resource: { buffer: partials } },
        ],
      });
      const encoder = device.createCommandEncoder();
      const compute = encoder.beginComputePass();
      compute.setPipeline(backwardPipeline);
      compute.setBindGroup(0, bindGroup);
      compute.dispatchWorkgroups(width, height);
      compute.end();
      encoder.copyBufferToBuffer(partials, 0, staging, 0, partialBytes);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      sums = new Float32Array(staging.getMappedRange().slice(0));
    } finally {
      partials.destroy();
      staging.destroy();
    }

    // Combine exactly as core/reference.ts does, in float64.
    let dxmax = 0;
    const channelSums = new Float64Array(6);
    for (let ch = 0; ch < channels; ch++) {
      channelSums.fill(0);
      for (let chunk = 0; chunk < chunksPerChannel; chunk++) {
        const base = (ch * chunksPerChannel + chunk) * PARTIALS_STRIDE;
        for (let k = 0; k < 6; k++) channelSums[k] += sums[base + k];
      }
      const z2 = pass.z2 ? pass.z2[ch] : 1;
      if (dz2) dz2[ch] = channelSums[0];
      // dL/dz_b = z2 * (gates below b) * sum(dy * inner_b)
      let below = z2;
      for (let l = 1; l < 5; l++) {
        dgates[l - 1] += below * channelSums[l];
        below *= pass.gates[l - 1];
      }
      dxmax += z2 * channelSums[5];
    }
    return { dxmax, dz2, dgates };
  };

  const checkHostArray = (array: Float32Array, name: string, what: string) => {
    if (!(array instanceof Float32Array)) {
      throw new TypeError(
        `Cannot run the WebGPU ${what}: ${name} must be a Float32Array, got ${
          Object.prototype.toString.call(array)
        }`,
      );
    }
    checkLength(array.length, what);
  };

  const quantizeForward = async (
    x: Float32Array,
    pass: QuantizerPass,
  ): Promise<Float32Array> => {
    live("quantizeForward()");
    checkHostArray(x, "x", "forward pass");
    checkPass(pass, x.length, "forward pass");
    if (x.length === 0) return new Float32Array(0);
    const xb = upload(x);
    const out = makeBuffer(x.length, "bbits forward out");
    try {
      forwardResident(xb, out, pass);
      return await read(out);
    } finally {
      xb.destroy();
      out.destroy();
    }
  };

  const quantizeBackward = async (
    x: Float32Array,
    dy: Float32Array,
    pass: QuantizerPass,
  ): Promise<QuantizerGrads> => {
    live("quantizeBackward()");
    checkHostArray(x, "x", "backward pass");
    checkHostArray(dy, "dy", "backward pass");
    checkPass(pass, x.length, "backward pass");
    if (dy.length !== x.length) {
      throw new RangeError(
        `Cannot run the WebGPU backward pass: dy has ${dy.length} elements, x has ${x.length}`,
      );
    }
    const xb = upload(x);
    const dyb = upload(dy);
    const dxb = makeBuffer(x.length, "bbits backward dx");
    try {
      // Both read-backs wait in the same queue poll (about 11 ms each in
      // Deno when awaited one after the other). backwardResident submits
      // before its first await, so the copy of dx is queued after it.
      const [rest, dx] = await Promise.all([
        backwardResident(xb, dyb, dxb, pass),
        read(dxb),
      ]);
      return { dx, ...rest };
    } finally {
      xb.destroy();
      dyb.destroy();
      dxb.destroy();
    }
  };

  const uniform = async (
    key: RandomKey,
    count: number,
    offset = 0,
  ): Promise<Float32Array> => {
    live("uniform()");
    assertRandomKey(key);
    if (!Number.isInteger(count) || count < 0) {
      throw new RangeError(
        `Cannot draw ${count} uniforms: count must be a non-negative integer`,
      );
    }
    if (!Number.isInteger(offset) || offset < 0 || offset + count > 2 ** 33) {
      throw new RangeError(
        `Cannot draw from stream offset ${offset}: out of range`,
      );
    }
    checkLength(count, "uniform fill");
    if (count === 0) return new Float32Array(0);
    const parity = offset % 2;
    const blocks = Math.ceil((count + parity) / 2);
    const [width, height] = grid(
      Math.ceil(blocks / RNG_WORKGROUP_SIZE),
      maxGroups,
    );
    const params = device.createBuffer({
      label: "bbits uniform fill params",
      size: RNG_PARAMS_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    const out = makeBuffer(count, "bbits uniform fill out");
    try {
      device.queue.writeBuffer(
        params,
        0,
        new Uint32Array([
          key[0],
          key[1],
          Math.floor(offset / 2),
          parity,
          count,
          width,
          0,
          0,
        ]),
      );
      const encoder = device.createCommandEncoder();
      const compute = encoder.beginComputePass();
      compute.setPipeline(rngPipeline);
      compute.setBindGroup(
        0,
        device.createBindGroup({
          layout: rngLayout,
          entries: [
            { binding: 0, resource: { buffer: params } },
            { binding: 1, resource: { buffer: out.buffer } },
          ],
        }),
      );
      compute.dispatchWorkgroups(width, height);
      compute.end();
      device.queue.submit([encoder.finish()]);
      return await read(out);
    } finally {
      params.destroy();
      out.destroy();
    }
  };

  return Object.freeze({
    name: "webgpu" as const,
    device,
    adapterInfo,
    quantizeForward,
    quantizeBackward,
    uniform,
    upload,
    allocate: (length: number) => {
      live("allocate()");
      return makeBuffer(length, "bbits allocate");
    },
    forwardResident,
    backwardResident,
    read,
    sync: () => device.queue.onSubmittedWorkDone(),
    destroy: () => {
      if (destroyed) return;
      destroyed = true;
      forwardParams.destroy();
      backwardParams.destroy();
      z2Buffer.destroy();
      if (ownsDevice) device.destroy();
    },
  });
}
