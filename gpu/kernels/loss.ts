/**
 * WGSL kernels of the loss and metrics family: softmax cross-entropy and
 * its gradient, and the count of correct predictions.
 *
 * Contract:
 * - Softmax: one invocation per row. The shifted logits `z - max` are exact
 *   double-floats; `exp` reduces them to `k ln2 + r` (`|r| <= ln2 / 2`,
 *   Cody-Waite) and scales WGSL's float32 `exp(r)` by `2^k`, so its error
 *   stays a few units in the last place for any argument (WGSL's own `exp`
 *   allows `3 + 2 |x|`); the row sum is double-float: probabilities within
 *   a few units in the last place of the reference's. The loss is the double-float sum
 *   over rows of `log(sum) + max - z[label]` (float32 `log`), divided by N:
 *   about `2^-22` relative of the largest row term.
 * - Gradient: `dloss (p - onehot) / N` in exact double-float steps, rounded
 *   once: the reference's bits unless within about 2^-44 relative of a
 *   rounding boundary.
 * - `countCorrect`: one invocation per row (first maximum), an atomic add
 *   into the zeroed `int32` count: exact.
 * - Labels are read as given; one outside `[0, K)` reads logit 0.
 *
 * @module
 */

import type { Kernels } from "../../core/kernels.ts";
import type { Tensor } from "../../core/tensor.ts";
import { type GpuContext, type KernelSource, PRELUDE_WGSL } from "./common.ts";

function source(name: string, decl: string, body: string): KernelSource {
  return {
    name,
    bindings: [...decl.matchAll(/var<storage, (read_write|read)>/g)].map((m) =>
      m[1] === "read" ? "r" : "w"
    ).join(""),
    workgroup: 64,
    code: PRELUDE_WGSL + decl + /* wgsl */ `
// exp(hi + lo) within a few units in the last place for any argument:
// hi + lo = k ln2 + r (Cody-Waite, k ln2_hi exact), exp(r) with |r| <= ln2 / 2.
fn exp_df(hi: f32, lo: f32) -> f32 {
  let k = round(hi * 1.4426950408889634);
  let r = opaque(hi - opaque(k * 0.693145751953125)) - opaque(k * 1.428606765330187e-6) + lo;
  return ldexp(exp(r), i32(k));
}

fn label_of(i: u32) -> u32 {
  let v = labels[i];
  return select(0u, u32(v), v >= 0 && u32(v) < pu(3u));
}

@compute @workgroup_size(64)
fn ${name}(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let e = linear(g, l, 64u);
  if (e >= pu(2u)) { return; }
  let k = pu(3u);
  ${body}
}
`,
  };
}

/** Per row: probabilities and the row's loss term `[2 N]` (double-float). */
const SOFTMAX = source(
  "softmax_rows",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;
@group(0) @binding(4) var<storage, read_write> terms: array<f32>;
`,
  /* wgsl */ `let row = e * k;
  var m = z[row];
  for (var j = 1u; j < k; j++) { m = max(m, z[row + j]); }
  var s = vec2<f32>(0.0, 0.0);
  for (var j = 0u; j < k; j++) {
    let d = two_sum(z[row + j], -m);
    s = df_add(s, exp_df(d.x, d.y));
  }
  let total = s.x + s.y;
  for (var j = 0u; j < k; j++) {
    let d = two_sum(z[row + j], -m);
    probs[row + j] = exp_df(d.x, d.y) / total;
  }
  let lse = log(s.x) + s.y / s.x;
  let t = df_add(two_sum(m, -z[row + label_of(e)]), lse);
  terms[2u * e] = t.x;
  terms[2u * e + 1u] = t.y;`,
);

/** One invocation: `loss = sum of terms / N`. */
const LOSS_TOTAL = source(
  "softmax_loss_total",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> terms: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
`,
  /* wgsl */ `let n = pu(4u);
  var s = vec2<f32>(0.0, 0.0);
  for (var i = 0u; i < n; i++) { s = df_add2(s, vec2<f32>(terms[2u * i], terms[2u * i + 1u])); }
  let nn = f32(n);
  let q = s.x / nn;
  let rest = df_add2(s, -df_mul(q, nn));
  loss[0] = q + (rest.x + rest.y) / nn;`,
);

/** Per element: `dz = dloss (p - onehot) / N`. */
const SOFTMAX_BACKWARD = source(
  "softmax_backward",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read> dloss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;
`,
  /* wgsl */ `let i = e / k;
  let hot = select(0.0, 1.0, label_of(i) == e % k);
  let d = two_sum(probs[e], -hot);
  let scale = dloss[0];
  let p = df_mul(d.x, scale);
  let t = df_add(p, opaque(d.y * scale));
  let nn = f32(pu(4u));
  let q = t.x / nn;
  let rest = df_add2(t, -df_mul(q, nn));
  let special = (bitcast<u32>(q) & 0x7f800000u) == 0x7f800000u;
  dz[e] = select(q + (rest.x + rest.y) / nn, q, special || q == 0.0);`,
);

/** Per row: 1 where the first maximum is at the label. */
const COUNT_CORRECT = source(
  "count_correct",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> count: array<atomic<i32>>;
`,
  /* wgsl */ `let row = e * k;
  var best = 0u;
  for (var j = 1u; j < k; j++) {
    if (z[row + j] > z[row + best]) { best = j; }
  }
  if (i32(best) == labels[e]) { atomicAdd(&count[0], 1); }`,
);

/** Checks `[N, K]` logits against `[N]` int32 labels. */
function rows(
  ctx: GpuContext,
  kernel: string,
  z: Tensor,
  labels: Tensor,
  what: string,
): [number, number, GPUBuffer, GPUBuffer] {
  const bz = ctx.input(kernel, z, what);
  const bl = ctx.input(kernel, labels, "labels", "int32");
  if (z.shape.length !== 2) {
    ctx.fail(kernel, `${what} must be [N, K], got [${z.shape}]`);
  }
  const [n, k] = z.shape;
  ctx.size(kernel, labels, "labels", n);
  return [n, k, bz, bl];
}

/**
 * The loss and metrics kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function lossKernels(
  ctx: GpuContext,
): Pick<
  Kernels,
  "softmaxCrossEntropy" | "softmaxCrossEntropyBackward" | "countCorrect"
> {
  return {
    softmaxCrossEntropy: (logits, labels) => {
      const kernel = "softmaxCrossEntropy";
      const [n, k, bz, bl] = rows(ctx, kernel, logits, labels, "logits");
      const probs = ctx.alloc(logits.shape);
      const loss = ctx.alloc([1]);
      const terms = ctx.scratch(2 * n, "softmax row terms");
      ctx.run(SOFTMAX, [bz, bl, ctx.buf(probs), terms], n, [n, k]);
      ctx.run(LOSS_TOTAL, [terms, bl, ctx.buf(loss)], 1, [1, k, n]);
      return { loss, probs };
    },
    softmaxCrossEntropyBackward: (probs, labels, dloss) => {
      const kernel = "softmaxCrossEntropyBackward";
      const [n, k, bp, bl] = rows(ctx, kernel, probs, labels, "probs");
      const bd = ctx.input(kernel, dloss, "dloss");
      ctx.size(kernel, dloss, "dloss", 1);
      const dz = ctx.alloc(probs.shape);
      ctx.run(SOFTMAX_BACKWARD, [bp, bl, bd, ctx.buf(dz)], n * k, [
        n * k,
        k,
        n,
      ]);
      return dz;
    },
    countCorrect: (logits, labels) => {
      const kernel = "countCorrect";
      const [n, k, bz, bl] = rows(ctx, kernel, logits, labels, "logits");
      const count = ctx.alloc([1], "int32");
      ctx.queue.clear(ctx.buf(count));
      ctx.run(COUNT_CORRECT, [bz, bl, ctx.buf(count)], n, [n, k]);
      return count;
    },
  };
}
