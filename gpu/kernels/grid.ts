/**
 * WGSL kernel of the uniform grid every method's frozen plan may use:
 * `uniformQuantize`.
 *
 * Contract (see `core/kernels.ts`): per element `v = x / s` (a true
 * division), `q = round(v)` (WGSL `round` is half to even),
 * `y = s * clamp(q, codeMin, codeMax)`, each one float32 operation: the
 * reference's bits on an IEEE-exact device (llvmpipe is one). NaN is
 * recognised by its bits (a compiler may assume `x != x` is false) and
 * passed through; `-0` stays `-0`.
 *
 * @module
 */

import type { Kernels } from "../../core/kernels.ts";
import { checkCodeRange } from "../../core/reference/grid.ts";
import {
  f32Word,
  type GpuContext,
  type KernelSource,
  PRELUDE_WGSL,
} from "./common.ts";

const EACH = 256;

const UNIFORM_QUANTIZE: KernelSource = {
  name: "grid_uniform_quantize",
  bindings: "rrw",
  workgroup: EACH,
  code: PRELUDE_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${EACH})
fn grid_uniform_quantize(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let i = linear(g, l, ${EACH}u);
  if (i >= pu(2u)) { return; }
  let v = x[i];
  if ((bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u) {
    out[i] = v;
    return;
  }
  let s = scale[0];
  let q = round(v / s);
  let c = min(max(q, pf(3u)), pf(4u));
  out[i] = s * c;
}
`,
};

/**
 * The uniform-grid kernel of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernel.
 */
export function gridKernels(ctx: GpuContext): Pick<Kernels, "uniformQuantize"> {
  return {
    uniformQuantize: (x, scale, codeMin, codeMax) => {
      checkCodeRange("uniformQuantize", codeMin, codeMax);
      const bx = ctx.input("uniformQuantize", x, "x");
      const bs = ctx.input("uniformQuantize", scale, "scale");
      ctx.size("uniformQuantize", scale, "scale", 1);
      const out = ctx.alloc(x.shape);
      ctx.run(UNIFORM_QUANTIZE, [bx, bs, ctx.buf(out)], x.size, [
        x.size,
        f32Word(codeMin),
        f32Word(codeMax),
      ]);
      return out;
    },
  };
}
