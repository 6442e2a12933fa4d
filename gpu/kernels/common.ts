/**
 * What the WGSL kernel families share: the uniform block every family
 * kernel reads, the WGSL helpers (parameter access, the linear invocation
 * index of a 2-D grid, `opaque()`, double-float sums), and the host side
 * that compiles a kernel on first use, checks tensors and records a
 * dispatch.
 *
 * Contract of a family kernel:
 * - Binding 0 is a uniform block of {@link PARAM_WORDS} 32-bit words: word 0 is the
 *   grid width in workgroups (the linear workgroup index is
 *   `id.y * width + id.x`), word 1 is always 0 (`opaque()` XORs with it),
 *   words 2.. are the kernel's sizes (u32) and host numbers (f32 bits).
 * - Bindings 1.. are storage buffers: inputs read-only, outputs
 *   read-write, never aliased.
 * - Float64 sums of the reference are double-float sums here (an f32 pair
 *   `hi + lo` kept exact with TwoSum), rounded to float32 once at the end:
 *   they agree with the reference to a few units of 2^-44 of the sum of the
 *   magnitudes, so a result differs from the reference's only in its last
 *   bit and only when the exact sum lies that close to a rounding boundary.
 *
 * @module
 */

import type { BaseDevice } from "../../core/device.ts";
import type { DType, Shape, Tensor } from "../../core/tensor.ts";
import { type BindingKind, type CommandQueue, grid } from "../queue.ts";

/** Words of the uniform block of a family kernel. */
export const PARAM_WORDS = 32;

/** The WGSL every family kernel starts with. */
export const PRELUDE_WGSL: string = /* wgsl */ `
struct Params { v: array<vec4<u32>, 8> }
@group(0) @binding(0) var<uniform> P: Params;

fn pu(i: u32) -> u32 { return P.v[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }
fn pi(i: u32) -> i32 { return bitcast<i32>(pu(i)); }

// The linear index of an invocation in a 2-D grid of workgroups of \`size\`.
fn linear(group: vec3<u32>, local: u32, size: u32) -> u32 {
  return (group.y * pu(0u) + group.x) * size + local;
}

// Hides a value from the optimiser: a product passed through it is rounded
// on its own, never contracted with the next addition.
fn opaque(v: f32) -> f32 { return bitcast<f32>(bitcast<u32>(v) ^ pu(1u)); }

// Double-float (hi, lo): TwoSum keeps hi + lo the exact sum. Every step
// goes through opaque(), or a compiler's algebra ((a + b) - a = b) would
// cancel the error terms.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = opaque(a + b);
  let bb = opaque(s - a);
  let ab = opaque(s - bb);
  return vec2<f32>(s, opaque(a - ab) + opaque(b - bb));
}
fn df_add(a: vec2<f32>, b: f32) -> vec2<f32> {
  let t = two_sum(a.x, b);
  return two_sum(t.x, opaque(t.y + a.y));
}
fn df_add2(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return df_add(df_add(a, b.x), b.y);
}
// Dekker's split of a float32 into two 12-bit halves.
fn split(a: f32) -> vec2<f32> {
  let c = opaque(4097.0 * a);
  let h = opaque(c - opaque(c - a));
  return vec2<f32>(h, opaque(a - h));
}
// The product a b as a double-float (Dekker; no fused operation).
fn df_mul(a: f32, b: f32) -> vec2<f32> {
  let p = opaque(a * b);
  let x = split(a);
  let y = split(b);
  let e = opaque(opaque(opaque(x.x * y.x) - p) + opaque(x.x * y.y)) + opaque(x.y * y.x);
  return vec2<f32>(p, opaque(e) + opaque(x.y * y.y));
}
`;

/** One WGSL kernel: its code, entry point and bindings after the uniform. */
export interface KernelSource {
  /** A unique name (the pipeline cache key and the label in errors). */
  readonly name: string;
  /** WGSL source (starting with {@link PRELUDE_WGSL}). */
  readonly code: string;
  /** `"r"` read-only storage, `"w"` read-write storage, per binding from 1. */
  readonly bindings: string;
  /** Invocations per workgroup. */
  readonly workgroup: number;
}

/** A word of the uniform block holding the bits of a float32. */
export function f32Word(value: number): number {
  return new Uint32Array(new Float32Array([value]).buffer)[0];
}

/** A word of the uniform block holding an int32. */
export function i32Word(value: number): number {
  return value >>> 0;
}

const compiled = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** The tensors, buffers and dispatches of one device's WGSL families. */
export class GpuContext {
  /**
   * Wraps a device and its queue.
   *
   * @param dev The device the tensors belong to.
   * @param queue Its command queue.
   */
  constructor(readonly dev: BaseDevice, readonly queue: CommandQueue) {}

  /** The pipeline of `source`, compiled on first use. */
  pipeline(source: KernelSource): GPUComputePipeline {
    const gpu = this.queue.gpu;
    let cache = compiled.get(gpu);
    if (!cache) compiled.set(gpu, cache = new Map());
    let pipeline = cache.get(source.name);
    if (!pipeline) {
      const kinds: BindingKind[] = ["uniform"];
      for (const c of source.bindings) kinds.push(c === "r" ? "read" : "write");
      const layout = gpu.createBindGroupLayout({
        label: source.name,
        entries: kinds.map((kind, binding) => ({
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
      pipeline = gpu.createComputePipeline({
        label: `bbits ${source.name}`,
        layout: gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: {
          module: gpu.createShaderModule({
            label: source.name,
            code: source.code,
          }),
          entryPoint: source.name,
        },
      });
      cache.set(source.name, pipeline);
    }
    return pipeline;
  }

  /** Throws a RangeError naming the kernel and the device. */
  fail(kernel: string, message: string): never {
    throw new RangeError(
      `Cannot run ${kernel} on the ${this.dev.name} device: ${message}`,
    );
  }

  /** The buffer of a live tensor of this device with the given element type. */
  input(
    kernel: string,
    t: Tensor,
    what: string,
    dtype: DType = "float32",
  ): GPUBuffer {
    const storage = this.dev.storage(t);
    if (t.dtype !== dtype) {
      throw new TypeError(
        `Cannot run ${kernel} on the ${this.dev.name} device: ${what} must be ${dtype}, got ${t.dtype}`,
      );
    }
    return storage.handle as GPUBuffer;
  }

  /** Checks that `t` has `size` elements. */
  size(kernel: string, t: Tensor, what: string, size: number): void {
    if (t.size !== size) {
      this.fail(kernel, `${what} has ${t.size} elements, expected ${size}`);
    }
  }

  /** A new output tensor. */
  alloc(shape: Shape, dtype: DType = "float32"): Tensor {
    return this.dev.alloc(shape, dtype);
  }

  /** The buffer of a tensor already checked or just allocated. */
  buf(t: Tensor): GPUBuffer {
    return this.dev.storage(t).handle as GPUBuffer;
  }

  /** A storage buffer alive until the pending commands are submitted. */
  scratch(elements: number, label: string): GPUBuffer {
    return this.queue.scratch(elements * 4, `bbits ${label}`);
  }

  /**
   * Records `source` over `invocations` invocations (rounded up to whole
   * workgroups, spread over a 2-D grid) with `words` from word 2 of the
   * uniform block on.
   */
  run(
    source: KernelSource,
    buffers: readonly GPUBuffer[],
    invocations: number,
    words: readonly number[] = [],
  ): void {
    if (invocations <= 0) return;
    if (words.length > PARAM_WORDS - 2) {
      throw new RangeError(
        `${source.name}: more than ${PARAM_WORDS - 2} parameter words`,
      );
    }
    const [width, height] = grid(
      Math.ceil(invocations / source.workgroup),
      this.queue.maxGroups,
    );
    const block = new Uint32Array(PARAM_WORDS);
    block[0] = width;
    block.set(words, 2);
    const pipeline = this.pipeline(source);
    this.queue.dispatchRaw(
      pipeline,
      [this.queue.uniform(block.buffer), ...buffers],
      [width, height],
      source.name,
    );
  }
}

/**
 * A kernel of one invocation per element (workgroups of 64): the prelude,
 * the bindings `decl` declares (their kinds read from it), the family's
 * `helpers`, and `body` run for element `e` below `pu(2u)`.
 *
 * @param name The entry point.
 * @param decl The binding declarations.
 * @param helpers WGSL functions the body uses.
 * @param body The statements for element `e`.
 * @returns The kernel source.
 */
export function perElementSource(
  name: string,
  decl: string,
  helpers: string,
  body: string,
): KernelSource {
  return {
    name,
    bindings: [...decl.matchAll(/var<storage, (read_write|read)>/g)].map((m) =>
      m[1] === "read" ? "r" : "w"
    ).join(""),
    workgroup: 64,
    code: PRELUDE_WGSL + decl + helpers + /* wgsl */ `
@compute @workgroup_size(64)
fn ${name}(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let e = linear(g, l, 64u);
  if (e >= pu(2u)) { return; }
  ${body}
}
`,
  };
}
