/**
 * The WebGPU device's kernels: every member of `Kernels` in WGSL on
 * resident buffers, one family a file under `./kernels/` (elementwise,
 * matrix, convolution, pooling, batch norm, loss, the residual quantizer,
 * gates and prior, random numbers, optimizers). Each file's module
 * documentation is its contract, including how its arithmetic relates to
 * the reference device's float64.
 *
 * The quantizer's constants are derived on the device from the `xmax` and
 * `gates` tensors (`gpu/kernels/quantizer.ts`), so a training step never
 * waits for a value to come back to the host.
 *
 * @module
 */

import type { BaseDevice } from "../core/device.ts";
import type { Kernels, PoolGeometry } from "../core/kernels.ts";
import { CLIP_FACTOR } from "../core/reference/quantizer.ts";
import { checkUniformDraw, type RandomKey } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  CONSTANTS_PARAMS_BYTES,
  FORWARD_WORKGROUP_SIZE,
  QUANTIZER_CONSTANTS_BYTES,
  QUANTIZER_CONSTANTS_WGSL,
  QUANTIZER_FORWARD_WGSL,
  QUANTIZER_PARAM_FIELDS,
  QUANTIZER_PARAMS_BYTES,
  QUANTIZER_POOL_WGSL,
} from "./kernels/quantizer.ts";
import {
  BACKWARD_WORKGROUP_SIZE,
  ELEMENTS_PER_TILE,
  FINISH_BACKWARD_WGSL,
  PARTIALS_STRIDE,
  QUANTIZER_BACKWARD_WGSL,
  REDUCE_CHUNKS_WGSL,
  REDUCE_PARAMS_BYTES,
  REDUCE_WORKGROUP_SIZE,
  ROW_CHANNEL_LIMIT,
} from "./kernels/quantizer_backward.ts";
import {
  RNG_PARAMS_BYTES,
  RNG_WORKGROUP_SIZE,
  UNIFORM_FILL_WGSL,
} from "./kernels/rng.ts";
import { GpuContext } from "./kernels/common.ts";
import { gridKernels } from "./kernels/grid.ts";
import { UnsupportedKernelError } from "../core/device.ts";
import { elementwiseKernels } from "./kernels/elementwise.ts";
import { matrixKernels } from "./kernels/matrix.ts";
import { convKernels } from "./kernels/conv.ts";
import { poolKernels } from "./kernels/pool.ts";
import { batchNormKernels } from "./kernels/batchnorm.ts";
import { lossKernels } from "./kernels/loss.ts";
import { gateKernels } from "./kernels/gates.ts";
import { optimizerKernels } from "./kernels/optim.ts";
import {
  type BindingKind,
  type CommandQueue,
  compilePipeline,
  grid,
  type Pipeline,
} from "./queue.ts";

/** The quantizer and generator kernels (the other families live in `./kernels/`). */
type QuantizerKernelName =
  | "residualQuantize"
  | "residualQuantizeBackward"
  | "residualQuantizePool"
  | "uniform";

/** The compiled pipelines of the device. */
interface Pipelines {
  readonly constants: Pipeline;
  readonly forward: Pipeline;
  readonly pool: Pipeline;
  readonly backward: Pipeline;
  readonly backwardRows: Pipeline;
  readonly reduce: Pipeline;
  readonly finish: Pipeline;
  readonly uniform: Pipeline;
}

const BACKWARD_BINDINGS: BindingKind[] = [
  "uniform",
  "read",
  "read",
  "read",
  "read",
  "write",
  "write",
];

/** Each pipeline: WGSL, entry point and binding kinds in binding order. */
const PIPELINES: Record<
  keyof Pipelines,
  readonly [string, string, readonly BindingKind[]]
> = {
  constants: [QUANTIZER_CONSTANTS_WGSL, "quantizer_constants", [
    "uniform",
    "read",
    "read",
    "write",
  ]],
  forward: [QUANTIZER_FORWARD_WGSL, "quantize_forward", [
    "uniform",
    "read",
    "read",
    "read",
    "write",
  ]],
  pool: [QUANTIZER_POOL_WGSL, "quantize_pool", [
    "uniform",
    "read",
    "read",
    "write",
  ]],
  backward: [QUANTIZER_BACKWARD_WGSL, "quantize_backward", BACKWARD_BINDINGS],
  backwardRows: [
    QUANTIZER_BACKWARD_WGSL,
    "quantize_backward_rows",
    BACKWARD_BINDINGS,
  ],
  reduce: [REDUCE_CHUNKS_WGSL, "reduce_chunks", ["uniform", "read", "write"]],
  finish: [FINISH_BACKWARD_WGSL, "finish_backward", [
    "uniform",
    "read",
    "read",
    "read",
    "write",
    "write",
    "write",
  ]],
  uniform: [UNIFORM_FILL_WGSL, "uniform_fill", ["uniform", "write"]],
};

async function compileAll(gpu: GPUDevice): Promise<Pipelines> {
  const entries = await Promise.all(
    Object.entries(PIPELINES).map(async ([name, [code, entry, bindings]]) =>
      [
        name,
        await compilePipeline(gpu, `bbits ${entry}`, code, entry, bindings),
      ] as const
    ),
  );
  return Object.fromEntries(entries) as unknown as Pipelines;
}

type ParamField = (typeof QUANTIZER_PARAM_FIELDS)[number];

/** The quantizer uniform block; unnamed fields (and `zero`) are 0. */
function quantizerParams(
  fields: Partial<Record<ParamField, number>>,
): ArrayBuffer {
  const words = new Uint32Array(QUANTIZER_PARAMS_BYTES / 4);
  QUANTIZER_PARAM_FIELDS.forEach((name, i) => words[i] = fields[name] ?? 0);
  return words.buffer;
}

/** The uniform block of `reduce_chunks` or `finish_backward`: up to four u32. */
function reduceParams(...words: number[]): ArrayBuffer {
  const block = new Uint32Array(REDUCE_PARAMS_BYTES / 4);
  block.set(words);
  return block.buffer;
}

/** The uniform block of `quantizer_constants` for a signed or unsigned grid. */
function constantsParams(signed: boolean): ArrayBuffer {
  const bytes = new ArrayBuffer(CONSTANTS_PARAMS_BYTES);
  const f = new Float32Array(bytes);
  // d s_l / d xmax of levels 0..4, exactly, rounded once.
  const k2 = (signed ? 2 : 1) / 3;
  f.set([k2, k2 / 5, k2 / 85, k2 / 21845, k2 / 1431655765, CLIP_FACTOR]);
  new Uint32Array(bytes)[6] = signed ? 1 : 0;
  return bytes;
}

/**
 * The kernels of the methods beside Bayesian Bits that have no WGSL version
 * yet (FracBits' and BSQ's): each throws `UnsupportedKernelError`, and the
 * parity test checks that they do.
 */
export const PENDING_WGSL = Object.freeze(
  [
    "fracWeightQuantize",
    "fracWeightQuantizeBackward",
    "pactQuantize",
    "pactQuantizeBackward",
    "widthCost",
    "widthCostBackward",
    "targetPenalty",
    "targetPenaltyBackward",
    "bitPlaneSum",
    "bitPlaneSumBackward",
    "unitQuantize",
    "unitQuantizeBackward",
    "bitGroupLasso",
    "bitGroupLassoBackward",
    "maxAbsQuantize",
    "clip",
  ] as const,
);

/** Kernels that throw `UnsupportedKernelError` on `dev`. */
function unsupported<K extends keyof Kernels>(
  dev: BaseDevice,
  names: readonly K[],
): Pick<Kernels, K> {
  return Object.fromEntries(names.map((name) => [name, () => {
    throw new UnsupportedKernelError(name, dev.name);
  }])) as unknown as Pick<Kernels, K>;
}

/**
 * Compiles the kernels' pipelines on `queue`'s device.
 *
 * @param queue The device's command queue.
 * @returns A function making the `Kernels` of a device that uses `queue`.
 */
export async function gpuKernels(
  queue: CommandQueue,
): Promise<(dev: BaseDevice) => Kernels> {
  const pipelines = await compileAll(queue.gpu);
  return (dev) => {
    const ctx = new GpuContext(dev, queue);
    return Object.freeze({
      ...settled(queue, new GpuKernels(dev, queue, pipelines).supported()),
      ...settled(queue, elementwiseKernels(ctx)),
      ...settled(queue, matrixKernels(ctx)),
      ...settled(queue, convKernels(ctx)),
      ...settled(queue, poolKernels(ctx)),
      ...settled(queue, batchNormKernels(ctx)),
      ...settled(queue, lossKernels(ctx)),
      ...settled(queue, gateKernels(ctx)),
      ...settled(queue, optimizerKernels(ctx)),
      ...settled(queue, gridKernels(ctx)),
      ...unsupported(dev, PENDING_WGSL),
    });
  };
}

/** A kernel argument in an error message: a tensor's shape, else JSON. */
function describe(arg: unknown): string {
  if (arg === null || typeof arg !== "object") return String(arg);
  if ("shape" in arg && "dtype" in arg) {
    return `[${(arg as Tensor).shape}]`;
  }
  try {
    return JSON.stringify(arg);
  } catch {
    return "{...}";
  }
}

/**
 * Each kernel of `family`, starting where a submit is allowed and naming
 * itself and its sizes in later errors.
 */
function settled<T extends object>(queue: CommandQueue, family: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, kernel] of Object.entries(family)) {
    out[name] = (...args: unknown[]) => {
      queue.settle();
      queue.setContext(`${name}(${args.map(describe).join(", ")})`);
      return (kernel as (...a: unknown[]) => unknown)(...args);
    };
  }
  return out as T;
}

/** The WGSL kernels of one device. */
class GpuKernels {
  constructor(
    readonly dev: BaseDevice,
    readonly queue: CommandQueue,
    readonly p: Pipelines,
  ) {}

  /** The kernels, each starting where a submit is allowed. */
  supported(): Pick<Kernels, QuantizerKernelName> {
    const q = this.queue;
    return {
      residualQuantize: (x, xmax, gates, z2, signed) => {
        q.settle();
        return this.forward(x, xmax, gates, z2, signed);
      },
      residualQuantizeBackward: (x, xmax, gates, z2, signed, dy) => {
        q.settle();
        return this.backward(x, xmax, gates, z2, signed, dy);
      },
      residualQuantizePool: (x, xmax, gates, signed, g) => {
        q.settle();
        return this.pool(x, xmax, gates, signed, g);
      },
      uniform: (key, count, offset) => {
        q.settle();
        return this.uniform(key, count, offset);
      },
    };
  }

  /** The buffer of a live float32 tensor on this device. */
  buffer(t: Tensor, what: string, kernel: string): GPUBuffer {
    const storage = this.dev.storage(t);
    if (t.dtype !== "float32") {
      throw new TypeError(
        `Cannot run ${kernel} on the ${this.dev.name} device: ${what} must be float32, got ${t.dtype}`,
      );
    }
    return storage.handle as GPUBuffer;
  }

  fail(kernel: string, message: string): never {
    throw new RangeError(
      `Cannot run ${kernel} on the ${this.dev.name} device: ${message}`,
    );
  }

  /**
   * Checks the quantizer's inputs.
   *
   * @returns The number of channels.
   */
  check(
    kernel: string,
    x: Tensor,
    xmax: Tensor,
    gates: Tensor,
    z2: Tensor | null,
  ): number {
    this.buffer(x, "x", kernel);
    this.buffer(xmax, "xmax", kernel);
    this.buffer(gates, "gates", kernel);
    if (xmax.size !== 1) {
      this.fail(kernel, `xmax has ${xmax.size} elements, expected 1`);
    }
    if (gates.size !== 4) {
      this.fail(kernel, `gates has ${gates.size} elements, expected 4`);
    }
    if (!z2) return 1;
    this.buffer(z2, "z2", kernel);
    if (x.size > 0 && (z2.size === 0 || x.size % z2.size !== 0)) {
      this.fail(
        kernel,
        `x has ${x.size} elements, not a multiple of the ${z2.size} channels of z2`,
      );
    }
    return z2.size;
  }

  /** Records the constants kernel; returns the constants block. */
  constants(xmax: Tensor, gates: Tensor, signed: boolean): GPUBuffer {
    const q = this.queue;
    const block = q.scratch(
      QUANTIZER_CONSTANTS_BYTES,
      "bbits quantizer constants",
    );
    q.dispatch(this.p.constants, [
      q.uniform(constantsParams(signed)),
      this.handle(xmax),
      this.handle(gates),
      block,
    ], [1, 1]);
    return block;
  }

  /** The buffer of a tensor already checked (or just allocated). */
  handle(t: Tensor): GPUBuffer {
    return this.dev.storage(t).handle as GPUBuffer;
  }

  /** `z2`'s buffer, or a placeholder that the kernels do not read. */
  z2Binding(z2: Tensor | null): GPUBuffer {
    return z2 ? this.handle(z2) : this.queue.scratch(4, "bbits no z2");
  }

  forward(
    x: Tensor,
    xmax: Tensor,
    gates: Tensor,
    z2: Tensor | null,
    signed: boolean,
  ): Tensor {
    const channels = this.check("residualQuantize", x, xmax, gates, z2);
    const out = this.dev.alloc(x.shape);
    if (x.size === 0) return out;
    const block = this.constants(xmax, gates, signed);
    const [width, height] = grid(
      Math.ceil(x.size / FORWARD_WORKGROUP_SIZE),
      this.queue.maxGroups,
    );
    const params = quantizerParams({
      length: x.size,
      per_channel: x.size / channels,
      has_z2: z2 ? 1 : 0,
      grid_width: width,
    });
    this.queue.dispatch(this.p.forward, [
      this.queue.uniform(params),
      block,
      this.handle(x),
      this.z2Binding(z2),
      this.handle(out),
    ], [width, height]);
    return out;
  }

  backward(
    x: Tensor,
    xmax: Tensor,
    gates: Tensor,
    z2: Tensor | null,
    signed: boolean,
    dy: Tensor,
  ): { dx: Tensor; dxmax: Tensor; dgates: Tensor; dz2: Tensor | null } {
    const kernel = "residualQuantizeBackward";
    const channels = this.check(kernel, x, xmax, gates, z2);
    this.buffer(dy, "dy", kernel);
    if (dy.size !== x.size) {
      this.fail(kernel, `dy has ${dy.size} elements, x has ${x.size}`);
    }
    const grads = {
      dx: this.dev.alloc(x.shape),
      dxmax: this.dev.alloc([1]),
      dgates: this.dev.alloc([4]),
      dz2: z2 ? this.dev.alloc(z2.shape) : null,
    };
    const q = this.queue;
    if (x.size === 0) {
      for (const t of [grads.dxmax, grads.dgates, grads.dz2]) {
        if (t) q.clear(this.handle(t));
      }
      return grads;
    }
    const block = this.constants(xmax, gates, signed);
    const sums = this.tiles(x, dy, z2, channels, block, this.handle(grads.dx));
    q.dispatch(this.p.finish, [
      q.uniform(reduceParams(channels, z2 ? 1 : 0)),
      sums,
      block,
      this.z2Binding(z2),
      grads.dz2 ? this.handle(grads.dz2) : q.scratch(4, "bbits no dz2"),
      this.handle(grads.dgates),
      this.handle(grads.dxmax),
    ], [1, 1]);
    return grads;
  }

  /**
   * Records the backward tile pass (writing `dx`) and the chunk reductions.
   *
   * @returns The per-channel sums `[channels][8]`.
   */
  tiles(
    x: Tensor,
    dy: Tensor,
    z2: Tensor | null,
    channels: number,
    block: GPUBuffer,
    dx: GPUBuffer,
  ): GPUBuffer {
    const q = this.queue;
    const perChannel = x.size / channels;
    const rows = perChannel <= ROW_CHANNEL_LIMIT;
    let chunks = rows ? 1 : Math.ceil(perChannel / ELEMENTS_PER_TILE);
    const [width, height] = grid(
      rows ? Math.ceil(channels / BACKWARD_WORKGROUP_SIZE) : channels * chunks,
      q.maxGroups,
    );
    let sums = q.scratch(
      channels * chunks * PARTIALS_STRIDE * 4,
      "bbits backward partial sums",
    );
    q.dispatch(rows ? this.p.backwardRows : this.p.backward, [
      q.uniform(quantizerParams({
        length: x.size,
        per_channel: perChannel,
        has_z2: z2 ? 1 : 0,
        grid_width: width,
        chunks_per_channel: chunks,
      })),
      block,
      this.handle(x),
      this.z2Binding(z2),
      this.handle(dy),
      dx,
      sums,
    ], [width, height]);
    while (chunks > 1) {
      const next = Math.ceil(chunks / REDUCE_WORKGROUP_SIZE);
      const [w, h] = grid(channels * next, q.maxGroups);
      const out = q.scratch(
        channels * next * PARTIALS_STRIDE * 4,
        "bbits backward channel sums",
      );
      q.dispatch(this.p.reduce, [
        q.uniform(reduceParams(channels, chunks, next, w)),
        sums,
        out,
      ], [w, h]);
      sums = out;
      chunks = next;
    }
    return sums;
  }

  pool(
    x: Tensor,
    xmax: Tensor,
    gates: Tensor,
    signed: boolean,
    g: PoolGeometry,
  ): Tensor {
    const kernel = "residualQuantizePool";
    this.check(kernel, x, xmax, gates, null);
    if (x.size !== g.n * g.c * g.h * g.w) {
      this.fail(
        kernel,
        `x has ${x.size} elements, the geometry needs ${g.n} x ${g.c} x ${g.h} x ${g.w}`,
      );
    }
    const out = this.dev.alloc([g.n, g.c, g.oh, g.ow]);
    if (out.size === 0) return out;
    const block = this.constants(xmax, gates, signed);
    const [width, height] = grid(
      Math.ceil(out.size / FORWARD_WORKGROUP_SIZE),
      this.queue.maxGroups,
    );
    const params = quantizerParams({
      length: out.size,
      grid_width: width,
      h: g.h,
      w: g.w,
      oh: g.oh,
      ow: g.ow,
      kernel: g.kernel,
      stride: g.stride,
      padding: g.padding,
    });
    this.queue.dispatch(this.p.pool, [
      this.queue.uniform(params),
      block,
      this.handle(x),
      this.handle(out),
    ], [width, height]);
    return out;
  }

  uniform(key: RandomKey, count: number, offset: number): Tensor {
    checkUniformDraw(key, count, offset);
    const out = this.dev.alloc([count]);
    if (count === 0) return out;
    const parity = offset % 2;
    const blocks = Math.ceil((count + parity) / 2);
    const [width, height] = grid(
      Math.ceil(blocks / RNG_WORKGROUP_SIZE),
      this.queue.maxGroups,
    );
    const params = new Uint32Array(RNG_PARAMS_BYTES / 4);
    params.set([key[0], key[1], Math.floor(offset / 2), parity, count, width]);
    this.queue.dispatch(this.p.uniform, [
      this.queue.uniform(params.buffer),
      this.handle(out),
    ], [width, height]);
    return out;
  }
}
