/**
 * Reference kernels of the bit-plane family (BSQ, spec `bsq.md` sections
 * 1, 3, 4c and 5): composing planes into a normalised weight, the
 * straight-through unit quantizer, the bit-level group Lasso, the batch-max
 * activation quantizer and the clip applied after each optimizer step.
 *
 * Planes are stored plane-major: `[N, size]` with plane 0 the most
 * significant. Arithmetic is float64, each stored value rounded to float32
 * once; reductions run in element order.
 *
 * @module
 */

import type { Kernels } from "../kernels.ts";
import { roundHalfEven } from "../round.ts";
import type { HostAccess } from "./kernels.ts";

/** The epsilon inside each group's square root (spec section 5). */
export const GROUP_LASSO_EPSILON = 1e-8;

/** `2^N - 1`: the largest code of `N` magnitude planes. */
export function planeLevels(planes: number): number {
  return 2 ** planes - 1;
}

/**
 * `sum_b (pos[b] - neg[b]) 2^(N-1-b) / (2^N - 1)` per element, MSB first.
 *
 * @param pos Positive planes `[N * size]`.
 * @param neg Negative planes `[N * size]`.
 * @param planes `N`.
 * @returns `[size]`.
 */
export function bitPlaneSumReference(
  pos: Float32Array,
  neg: Float32Array,
  planes: number,
): Float32Array {
  const size = pos.length / planes;
  const m = planeLevels(planes);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    let acc = 0;
    for (let b = 0; b < planes; b++) {
      acc += (pos[b * size + i] - neg[b * size + i]) * 2 ** (planes - 1 - b);
    }
    out[i] = acc / m;
  }
  return out;
}

/**
 * `dpos[b, i] = dy[i] 2^(N-1-b) / (2^N - 1)` and `dneg = -dpos`.
 *
 * @param dy The gradient of the sum, `[size]`.
 * @param planes `N`.
 * @returns Both plane gradients, `[N * size]` each.
 */
export function bitPlaneSumBackwardReference(
  dy: Float32Array,
  planes: number,
): { dpos: Float32Array; dneg: Float32Array } {
  const size = dy.length;
  const m = planeLevels(planes);
  const dpos = new Float32Array(planes * size);
  const dneg = new Float32Array(planes * size);
  for (let b = 0; b < planes; b++) {
    const weight = 2 ** (planes - 1 - b) / m;
    for (let i = 0; i < size; i++) {
      dpos[b * size + i] = dy[i] * weight;
      dneg[b * size + i] = -dy[i] * weight;
    }
  }
  return { dpos, dneg };
}

/** The integer code of a normalised value: `round(|clamp(x, -1, 1)| m)`, signed. */
export function unitCode(x: number, levels: number): number {
  const magnitude = roundHalfEven(Math.min(Math.abs(x), 1) * levels);
  return x < 0 ? -magnitude : magnitude;
}

/**
 * `y = sign(x) fround(fround(s / m) k)` with `k = round(|clamp(x, -1, 1)| m)`:
 * the weight on the grid `{ fround(s / m) k : k = -m..m }`.
 *
 * @param x Normalised values.
 * @param scale The layer's scale `s`.
 * @param levels `m >= 1`.
 * @returns The quantized values.
 */
export function unitQuantizeReference(
  x: Float32Array,
  scale: number,
  levels: number,
): Float32Array {
  const step = Math.fround(scale / levels);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const k = unitCode(x[i], levels);
    out[i] = k < 0 ? -Math.fround(step * -k) : Math.fround(step * k);
  }
  return out;
}

/**
 * The straight-through gradients of {@link unitQuantizeReference}: `dx =
 * dy s` (round and clamp pass the gradient), `dscale = sum dy_i k_i / m`.
 */
export function unitQuantizeBackwardReference(
  x: Float32Array,
  scale: number,
  levels: number,
  dy: Float32Array,
): { dx: Float32Array; dscale: Float32Array } {
  const dx = new Float32Array(x.length);
  let dscale = 0;
  for (let i = 0; i < x.length; i++) {
    dx[i] = dy[i] * scale;
    dscale += dy[i] * unitCode(x[i], levels) / levels;
  }
  return { dx, dscale: new Float32Array([dscale]) };
}

/** Each plane's `sqrt(eps + sum_i pos^2 + neg^2)`, in float64. */
export function planeNorms(
  pos: Float32Array,
  neg: Float32Array,
  planes: number,
): Float64Array {
  const size = pos.length / planes;
  const norms = new Float64Array(planes);
  for (let b = 0; b < planes; b++) {
    let squares = 0;
    for (let i = b * size; i < (b + 1) * size; i++) {
      squares += pos[i] * pos[i] + neg[i] * neg[i];
    }
    norms[b] = Math.sqrt(GROUP_LASSO_EPSILON + squares);
  }
  return norms;
}

/** `weight * sum_b norm_b` (spec section 5, one layer), as `[1]`. */
export function bitGroupLassoReference(
  pos: Float32Array,
  neg: Float32Array,
  planes: number,
  weight: number,
): Float32Array {
  const norms = planeNorms(pos, neg, planes);
  let total = 0;
  for (const n of norms) total += n;
  return new Float32Array([weight * total]);
}

/** `dr weight v / norm_b` for every plane entry `v`. */
export function bitGroupLassoBackwardReference(
  pos: Float32Array,
  neg: Float32Array,
  planes: number,
  weight: number,
  dr: number,
): { dpos: Float32Array; dneg: Float32Array } {
  const norms = planeNorms(pos, neg, planes);
  const size = pos.length / planes;
  const dpos = new Float32Array(pos.length);
  const dneg = new Float32Array(neg.length);
  for (let b = 0; b < planes; b++) {
    const factor = dr * weight / norms[b];
    for (let i = b * size; i < (b + 1) * size; i++) {
      dpos[i] = pos[i] * factor;
      dneg[i] = neg[i] * factor;
    }
  }
  return { dpos, dneg };
}

/**
 * BSQ's activation quantizer with the whole tensor's `S = max |x|`:
 * `step = fround(S / m)`, `y = sign(x) fround(step min(round(fround(|x| /
 * step)), m))`; `S = 0` gives zeros. A NaN makes `S` NaN.
 *
 * @param x The activations.
 * @param levels `m = 2^a - 1 >= 1`.
 * @returns The quantized values and `S`.
 */
export function maxAbsQuantizeReference(
  x: Float32Array,
  levels: number,
): { y: Float32Array; maxAbs: number } {
  let maxAbs = 0;
  for (let i = 0; i < x.length; i++) maxAbs = Math.max(maxAbs, Math.abs(x[i]));
  maxAbs = Math.fround(maxAbs);
  const y = new Float32Array(x.length);
  if (maxAbs === 0) return { y, maxAbs };
  const step = Math.fround(maxAbs / levels);
  for (let i = 0; i < x.length; i++) {
    const k = Math.min(
      roundHalfEven(Math.fround(Math.abs(x[i]) / step)),
      levels,
    );
    const v = Math.fround(step * k);
    y[i] = x[i] < 0 ? -v : v;
  }
  return { y, maxAbs };
}

/** `min(max(x, lo), hi)`; NaN stays NaN. */
export function clipReference(
  x: Float32Array,
  lo: number,
  hi: number,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    out[i] = v < lo ? lo : v > hi ? hi : v;
  }
  return out;
}

/** Throws unless the plane count is a positive integer dividing both sizes. */
function checkPlanes(
  what: string,
  pos: Float32Array,
  neg: Float32Array,
  n: number,
) {
  if (
    !Number.isInteger(n) || n < 1 || pos.length !== neg.length ||
    pos.length % n !== 0
  ) {
    throw new RangeError(
      `${what}: planes of ${pos.length} and ${neg.length} elements do not split into ${n} planes`,
    );
  }
}

/**
 * The reference kernels of the bit-plane family.
 *
 * @param host The device's tensor access.
 * @returns The kernels.
 */
export function bitPlaneKernels(
  { f32, out, scalar }: HostAccess,
): Pick<
  Kernels,
  | "bitPlaneSum"
  | "bitPlaneSumBackward"
  | "unitQuantize"
  | "unitQuantizeBackward"
  | "bitGroupLasso"
  | "bitGroupLassoBackward"
  | "maxAbsQuantize"
  | "clip"
> {
  return {
    bitPlaneSum: (pos, neg) => {
      const n = pos.shape[0];
      checkPlanes("bitPlaneSum", f32(pos), f32(neg), n);
      return out(
        bitPlaneSumReference(f32(pos), f32(neg), n),
        pos.shape.slice(1),
      );
    },
    bitPlaneSumBackward: (dy, planes) => {
      const r = bitPlaneSumBackwardReference(f32(dy), planes);
      const shape = [planes, ...dy.shape];
      return { dpos: out(r.dpos, shape), dneg: out(r.dneg, shape) };
    },
    unitQuantize: (x, scale, levels) =>
      out(unitQuantizeReference(f32(x), scalar(scale), levels), x.shape),
    unitQuantizeBackward: (x, scale, levels, dy) => {
      const r = unitQuantizeBackwardReference(
        f32(x),
        scalar(scale),
        levels,
        f32(dy),
      );
      return { dx: out(r.dx, x.shape), dscale: out(r.dscale, [1]) };
    },
    bitGroupLasso: (pos, neg, weight) => {
      checkPlanes("bitGroupLasso", f32(pos), f32(neg), pos.shape[0]);
      return out(
        bitGroupLassoReference(f32(pos), f32(neg), pos.shape[0], weight),
        [1],
      );
    },
    bitGroupLassoBackward: (pos, neg, weight, dr) => {
      const r = bitGroupLassoBackwardReference(
        f32(pos),
        f32(neg),
        pos.shape[0],
        weight,
        scalar(dr),
      );
      return { dpos: out(r.dpos, pos.shape), dneg: out(r.dneg, neg.shape) };
    },
    maxAbsQuantize: (x, levels) => {
      const r = maxAbsQuantizeReference(f32(x), levels);
      return {
        y: out(r.y, x.shape),
        maxAbs: out(new Float32Array([r.maxAbs]), [1]),
      };
    },
    clip: (x, lo, hi) => out(clipReference(f32(x), lo, hi), x.shape),
  };
}
