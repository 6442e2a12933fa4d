/**
 * Command recording for the WebGPU device: pipelines, one pending command
 * encoder, a buffer pool, and read-back.
 *
 * Kernels record compute passes into the pending encoder; it is submitted
 * when a tensor is read, when a device scope ends, or when a kernel starts
 * with {@link MAX_PENDING_COMMANDS} commands pending. Buffers released while commands
 * are pending may still be used by them, so they return to the pool (or
 * are destroyed) only after the submit; from then on the queue orders any
 * reuse after that work. Uniform blocks and scratch buffers live until the
 * submit of the commands that use them.
 *
 * Trap: `queue.writeBuffer` runs at the next submit, before the pending
 * encoder's commands. It is only used on buffers that no pending command
 * touches: new uniform blocks (written at creation) and uploads into fresh
 * or recycled storage.
 *
 * @module
 */

/** How a kernel binds a buffer. */
export type BindingKind = "uniform" | "read" | "write";

/** A compiled compute pipeline with its bind group layout. */
export interface Pipeline {
  /** The pipeline. */
  readonly pipeline: GPUComputePipeline;
  /** Its one bind group's layout. */
  readonly layout: GPUBindGroupLayout;
}

/** Commands recorded before the pending encoder is submitted anyway. */
export const MAX_PENDING_COMMANDS = 256;

/** Bytes of released storage kept for reuse; beyond it buffers are destroyed. */
export const POOL_LIMIT_BYTES = 256 * 2 ** 20;

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/**
 * Compiles a compute pipeline whose bind group 0 has `bindings` in order.
 *
 * @param gpu The device.
 * @param label A name for errors.
 * @param code WGSL source.
 * @param entryPoint The compute entry point.
 * @param bindings Binding `i` is `bindings[i]`.
 * @returns The pipeline.
 */
export async function compilePipeline(
  gpu: GPUDevice,
  label: string,
  code: string,
  entryPoint: string,
  bindings: readonly BindingKind[],
): Promise<Pipeline> {
  const layout = gpu.createBindGroupLayout({
    label,
    entries: bindings.map((kind, binding) => ({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: {
        type: kind === "uniform"
          ? "uniform"
          : kind === "read"
          ? "read-only-storage"
          : "storage",
      },
    })),
  });
  const pipeline = await gpu.createComputePipelineAsync({
    label,
    layout: gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module: gpu.createShaderModule({ label, code }), entryPoint },
  });
  return { pipeline, layout };
}

/** Workgroup grid `[x, y]` for `groups` workgroups under the per-dimension limit. */
export function grid(
  groups: number,
  maxPerDimension: number,
): [number, number] {
  if (groups <= maxPerDimension) return [groups, 1];
  const height = Math.ceil(groups / maxPerDimension);
  return [Math.ceil(groups / height), height];
}

/** Records and submits the device's commands; owns its buffers' life cycle. */
export class CommandQueue {
  /** The largest storage buffer, in bytes, a kernel can bind. */
  readonly maxBindingBytes: number;
  /** `maxComputeWorkgroupsPerDimension` of the device. */
  readonly maxGroups: number;
  #encoder: GPUCommandEncoder | null = null;
  #pendingCommands = 0;
  /** Storage released while commands were pending: recycled after the submit. */
  #released: GPUBuffer[] = [];
  /** Uniform blocks and scratch buffers of the pending commands. */
  #transient: GPUBuffer[] = [];
  readonly #pool = new Map<number, GPUBuffer[]>();
  #pooledBytes = 0;
  #error: Error | null = null;
  #destroyed = false;

  /**
   * Wraps a device.
   *
   * @param gpu The device the commands run on.
   * @param maxGroups Workgroups per grid dimension (default: the limit).
   */
  constructor(
    readonly gpu: GPUDevice,
    maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension,
  ) {
    this.maxBindingBytes = Math.min(
      gpu.limits.maxStorageBufferBindingSize,
      gpu.limits.maxBufferSize,
    );
    this.maxGroups = maxGroups;
    gpu.addEventListener("uncapturederror", (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      this.#fail(
        `${error.message} (the last kernel recorded: ${this.#context})`,
        error,
      );
    });
    gpu.lost.then((info) => {
      if (this.#destroyed) return;
      this.#fail(
        `the device was lost (${info.reason}: ${
          info.message || "no message"
        }); the last kernel recorded: ${this.#context}`,
      );
    });
  }

  /** What the next commands and allocations belong to, for error messages. */
  #context = "none yet";

  /**
   * Names the kernel being recorded (with its sizes) in later errors.
   *
   * @param context E.g. `gemm(A [128, 400], B [120, 400], {"m":128,...})`.
   */
  setContext(context: string): void {
    this.#context = context;
  }

  #fail(message: string, cause?: unknown): void {
    this.#error ??= new Error(message, { cause });
  }

  /**
   * A storage buffer of at least `bytes` (rounded up to 4, at least 4: a
   * binding cannot be empty), recycled when one of that size is pooled.
   */
  storage(bytes: number, label: string): GPUBuffer {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const pooled = this.#pool.get(size)?.pop();
    if (pooled) {
      this.#pooledBytes -= size;
      return pooled;
    }
    const context = this.#context;
    this.gpu.pushErrorScope("out-of-memory");
    const buffer = this.gpu.createBuffer({ label, size, usage: STORAGE_USAGE });
    this.gpu.popErrorScope().then((error) => {
      if (error) {
        this.#fail(
          `out of GPU memory allocating ${size} bytes for ${context}: ${error.message}`,
          error,
        );
      }
    });
    return buffer;
  }

  /** Returns a storage buffer; pending commands may still use it. */
  release(buffer: GPUBuffer): void {
    if (this.#destroyed) return;
    if (this.#encoder) this.#released.push(buffer);
    else this.#recycle(buffer);
  }

  #recycle(buffer: GPUBuffer): void {
    if (this.#pooledBytes + buffer.size > POOL_LIMIT_BYTES) {
      buffer.destroy();
      return;
    }
    const list = this.#pool.get(buffer.size);
    if (list) list.push(buffer);
    else this.#pool.set(buffer.size, [buffer]);
    this.#pooledBytes += buffer.size;
  }

  /** A uniform block holding `data`, alive until the pending commands run. */
  uniform(data: ArrayBuffer): GPUBuffer {
    const buffer = this.gpu.createBuffer({
      label: "bbits uniform block",
      size: Math.ceil(data.byteLength / 16) * 16,
      usage: GPUBufferUsage.UNIFORM,
      mappedAtCreation: true,
    });
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data));
    buffer.unmap();
    this.#transient.push(buffer);
    return buffer;
  }

  /** A storage buffer for intermediate results of the pending commands. */
  scratch(bytes: number, label: string): GPUBuffer {
    const buffer = this.gpu.createBuffer({
      label,
      size: Math.max(4, Math.ceil(bytes / 4) * 4),
      usage: GPUBufferUsage.STORAGE,
    });
    this.#transient.push(buffer);
    return buffer;
  }

  /** Copies host values into a buffer that no pending command uses. */
  write(buffer: GPUBuffer, values: Float32Array | Int32Array): void {
    if (values.length === 0) return;
    this.gpu.queue.writeBuffer(
      buffer,
      0,
      values.buffer as ArrayBuffer,
      values.byteOffset,
      values.byteLength,
    );
  }

  #pending(): GPUCommandEncoder {
    this.#encoder ??= this.gpu.createCommandEncoder({ label: "bbits step" });
    return this.#encoder;
  }

  /**
   * Submits the pending commands when there are many. Call it only between
   * kernels: a submit ends the life of the scratch buffers and uniform
   * blocks that a kernel's later dispatches would still bind.
   */
  settle(): void {
    if (this.#pendingCommands >= MAX_PENDING_COMMANDS) this.flush();
  }

  /** Records a fill of the whole buffer with zero bytes. */
  clear(buffer: GPUBuffer): void {
    this.#pending().clearBuffer(buffer);
    this.#pendingCommands++;
  }

  /**
   * Records one dispatch of `pipeline` over a `[x, y]` workgroup grid with
   * `buffers[i]` at binding `i`.
   */
  dispatch(
    pipeline: Pipeline,
    buffers: readonly GPUBuffer[],
    [x, y]: readonly [number, number],
  ): void {
    this.dispatchRaw(pipeline.pipeline, buffers, [x, y], "", pipeline.layout);
  }

  /**
   * Records one dispatch of a compute pipeline (its bind group 0 from
   * `layout`, or the pipeline's own) with `buffers[i]` at binding `i`.
   */
  dispatchRaw(
    pipeline: GPUComputePipeline,
    buffers: readonly GPUBuffer[],
    [x, y]: readonly [number, number],
    label: string,
    layout: GPUBindGroupLayout = pipeline.getBindGroupLayout(0),
  ): void {
    if (x === 0 || y === 0) return;
    const bindGroup = this.gpu.createBindGroup({
      label,
      layout,
      entries: buffers.map((buffer, binding) => ({
        binding,
        resource: { buffer },
      })),
    });
    const pass = this.#pending().beginComputePass({ label });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y);
    pass.end();
    this.#pendingCommands++;
  }

  /** Submits the pending commands, then recycles what they released. */
  flush(): void {
    if (this.#destroyed) return;
    if (this.#encoder) {
      this.gpu.queue.submit([this.#encoder.finish()]);
      this.#encoder = null;
      this.#pendingCommands = 0;
    }
    // Destroying a buffer that submitted work uses waits for that work.
    for (const buffer of this.#transient) buffer.destroy();
    this.#transient = [];
    const released = this.#released;
    this.#released = [];
    for (const buffer of released) this.#recycle(buffer);
  }

  /**
   * Submits everything pending and copies `bytes` of `buffer` to the host.
   *
   * @throws {Error} If a WebGPU error was reported since the device opened.
   */
  async read(buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    this.#check();
    this.flush();
    if (bytes === 0) return new ArrayBuffer(0);
    const staging = this.gpu.createBuffer({
      label: "bbits read-back",
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      const encoder = this.gpu.createCommandEncoder({ label: "bbits read" });
      encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
      this.gpu.queue.submit([encoder.finish()]);
      try {
        await staging.mapAsync(GPUMapMode.READ);
      } catch (cause) {
        // A lost device rejects the mapping before its lost promise runs.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          this.gpu.lost,
          new Promise((resolve) => timer = setTimeout(resolve, 100)),
        ]);
        clearTimeout(timer);
        await Promise.resolve();
        this.#check();
        throw new Error(
          `Cannot read back a tensor from the WebGPU device (the last kernel recorded: ${this.#context})`,
          { cause },
        );
      }
      this.#check();
      return staging.getMappedRange().slice(0);
    } finally {
      staging.destroy();
    }
  }

  #check(): void {
    if (this.#destroyed) {
      throw new Error("Cannot read from the WebGPU device: it was disposed");
    }
    if (this.#error) {
      throw new Error(
        `The WebGPU device reported an error, so its results cannot be trusted: ${this.#error.message}`,
        { cause: this.#error },
      );
    }
  }

  /** Drops pending commands and destroys the device with every buffer. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#encoder = null;
    this.#transient = [];
    this.#released = [];
    this.#pool.clear();
    this.gpu.destroy();
  }
}
