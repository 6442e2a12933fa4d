/**
 * WGSL kernels of the elementwise family: `add`, `mul`, `scale`, `sum`,
 * `broadcast`, the activations and their backward pass.
 *
 * Contract (see `core/kernels.ts`):
 * - `add`, `mul`, the activations and their backward pass are one float32
 *   operation or comparison per element: the reference's bits on an
 *   IEEE-exact device (NaN, `-0` and infinities included).
 * - `scale` multiplies by the float64 factor split into two float32 parts
 *   (`hi + lo`) with an exact product `a hi` (Dekker) and rounds once: the
 *   reference's bits except when the exact product lies within about
 *   `2^-46` relative of a float32 rounding boundary (then one unit in the
 *   last place). Zeros, infinities and NaN take the plain product.
 * - `sum` is one workgroup of {@link SUM_WORKGROUP} invocations, each a
 *   strided double-float sum, combined as a tree: another order than the
 *   reference's, but double-float (see `./common.ts`).
 *
 * @module
 */

import type { Kernels } from "../../core/kernels.ts";
import type { Shape } from "../../core/tensor.ts";
import {
  f32Word,
  type GpuContext,
  type KernelSource,
  PRELUDE_WGSL,
} from "./common.ts";

/** Invocations of the one workgroup of `sum`. */
export const SUM_WORKGROUP = 256;

const EACH = 256;

function elementwise(name: string, bindings: string, body: string) {
  const inputs = [...bindings].slice(0, -1).map((_, i) =>
    `@group(0) @binding(${i + 1}) var<storage, read> in${i}: array<f32>;`
  ).join("\n");
  return {
    name,
    bindings,
    workgroup: EACH,
    code: PRELUDE_WGSL + /* wgsl */ `
${inputs}
@group(0) @binding(${bindings.length}) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${EACH})
fn ${name}(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let i = linear(g, l, ${EACH}u);
  if (i >= pu(2u)) { return; }
  ${body}
}
`,
  } satisfies KernelSource;
}

const ADD = elementwise("ew_add", "rrw", "out[i] = in0[i] + in1[i];");
const MUL = elementwise("ew_mul", "rrw", "out[i] = in0[i] * in1[i];");
const SCALE = elementwise(
  "ew_scale",
  "rw",
  /* wgsl */ `let a = in0[i];
  let hi = pf(3u);
  let d = df_mul(a, hi);
  let c = d.y + opaque(a * pf(4u));
  let special = (bitcast<u32>(d.x) & 0x7f800000u) == 0x7f800000u;
  out[i] = select(d.x + c, d.x, special || c == 0.0);`,
);
const BROADCAST = elementwise("ew_broadcast", "rw", "out[i] = in0[0];");
const RELU = elementwise(
  "ew_relu",
  "rw",
  "let x = in0[i]; out[i] = select(0.0, x, x > 0.0);",
);
const RELU6 = elementwise(
  "ew_relu6",
  "rw",
  "let x = in0[i]; out[i] = select(0.0, select(6.0, x, x < 6.0), x > 0.0);",
);
const RELU_BACKWARD = elementwise(
  "ew_relu_backward",
  "rrw",
  "out[i] = select(0.0, in1[i], in0[i] > 0.0);",
);
const RELU6_BACKWARD = elementwise(
  "ew_relu6_backward",
  "rrw",
  "let x = in0[i]; out[i] = select(0.0, in1[i], x > 0.0 && x < 6.0);",
);

/** The float64 sum of `in0` as a double-float tree, rounded once. */
export const SUM: KernelSource = {
  name: "ew_sum",
  bindings: "rw",
  workgroup: SUM_WORKGROUP,
  code: PRELUDE_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
var<workgroup> part: array<vec2<f32>, ${SUM_WORKGROUP}>;

@compute @workgroup_size(${SUM_WORKGROUP})
fn ew_sum(@builtin(local_invocation_index) l: u32) {
  let n = pu(2u);
  var s = vec2<f32>(0.0, 0.0);
  for (var i = l; i < n; i += ${SUM_WORKGROUP}u) {
    s = df_add(s, a[i]);
  }
  part[l] = s;
  workgroupBarrier();
  for (var half = ${SUM_WORKGROUP / 2}u; half > 0u; half >>= 1u) {
    if (l < half) {
      part[l] = df_add2(part[l], part[l + half]);
    }
    workgroupBarrier();
  }
  if (l == 0u) {
    out[0] = part[0].x + part[0].y;
  }
}
`,
};

/**
 * The elementwise kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function elementwiseKernels(
  ctx: GpuContext,
): Pick<
  Kernels,
  | "add"
  | "mul"
  | "scale"
  | "sum"
  | "broadcast"
  | "activation"
  | "activationBackward"
> {
  const binary = (
    kernel: string,
    source: KernelSource,
    a: Parameters<Kernels["add"]>[0],
    b: Parameters<Kernels["add"]>[1],
    names: [string, string],
  ) => {
    const [ba, bb] = [
      ctx.input(kernel, a, names[0]),
      ctx.input(kernel, b, names[1]),
    ];
    ctx.size(kernel, b, names[1], a.size);
    const out = ctx.alloc(a.shape);
    ctx.run(source, [ba, bb, ctx.buf(out)], a.size, [a.size]);
    return out;
  };
  return {
    add: (a, b) => binary("add", ADD, a, b, ["a", "b"]),
    mul: (a, b) => binary("mul", MUL, a, b, ["a", "b"]),
    scale: (a, factor) => {
      const buffer = ctx.input("scale", a, "a");
      const out = ctx.alloc(a.shape);
      const hi = Math.fround(factor);
      const lo = Number.isFinite(factor) ? Math.fround(factor - hi) : 0;
      ctx.run(SCALE, [buffer, ctx.buf(out)], a.size, [
        a.size,
        f32Word(hi),
        f32Word(lo),
      ]);
      return out;
    },
    sum: (a) => {
      const buffer = ctx.input("sum", a, "a");
      const out = ctx.alloc([1]);
      ctx.run(SUM, [buffer, ctx.buf(out)], SUM_WORKGROUP, [a.size]);
      return out;
    },
    broadcast: (scalar, shape: Shape) => {
      const buffer = ctx.input("broadcast", scalar, "scalar");
      ctx.size("broadcast", scalar, "scalar", 1);
      const out = ctx.alloc(shape);
      ctx.run(BROADCAST, [buffer, ctx.buf(out)], out.size, [out.size]);
      return out;
    },
    activation: (kind, x) => {
      const buffer = ctx.input("activation", x, "x");
      const out = ctx.alloc(x.shape);
      const source = kind === "relu" ? RELU : RELU6;
      ctx.run(source, [buffer, ctx.buf(out)], x.size, [x.size]);
      return out;
    },
    activationBackward: (kind, x, dy) =>
      binary(
        "activationBackward",
        kind === "relu" ? RELU_BACKWARD : RELU6_BACKWARD,
        x,
        dy,
        ["x", "dy"],
      ),
  };
}
