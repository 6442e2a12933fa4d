/**
 * Gradients of the quantizer against central finite differences.
 *
 * The straight-through estimator is the exact gradient of a surrogate in
 * which every rounding `round(v)` is replaced by `v + c` with the rounding
 * offset `c = round(v) - v` frozen at the point of evaluation. The surrogate
 * below is written independently of the library, in float64, and
 * differentiated numerically.
 */

import assert from "node:assert/strict";
import { quantizeGrad } from "../../core/methods/bayesian_bits/quantizer.ts";
import {
  CLIP_FACTOR,
  quantizeBackwardFloat64,
  quantizerPass,
} from "../../core/reference/quantizer.ts";
import { roundHalfEven } from "../../core/round.ts";
import { Tensor } from "../../core/tensor.ts";
import { assertClose, randomValues } from "../_fixtures.ts";

interface Params {
  x: Float64Array;
  xmax: number;
  z2: number[] | null;
  gates: number[]; // z4, z8, z16, z32
}

/** Loss sum(dy * xq) of the surrogate; records offsets when `offsets` is empty. */
function surrogateLoss(
  p: Params,
  signed: boolean,
  dy: Float64Array,
  offsets: number[][],
): number {
  const record = offsets.length === 0;
  const hi = CLIP_FACTOR * p.xmax;
  const lo = signed ? -hi : 0;
  const scales = [(signed ? 2 : 1) * p.xmax / 3];
  for (const d of [5, 17, 257, 65537]) {
    scales.push(scales[scales.length - 1] / d);
  }
  const channels = p.z2 ? p.z2.length : 1;
  const per = p.x.length / channels;
  let loss = 0;
  for (let i = 0; i < p.x.length; i++) {
    let residual = Math.min(hi, Math.max(lo, p.x[i]));
    const levels: number[] = [];
    if (record) offsets.push([]);
    for (let l = 0; l < 5; l++) {
      const v = residual / scales[l];
      if (record) offsets[i].push(roundHalfEven(v) - v);
      const e = scales[l] * (v + offsets[i][l]);
      levels.push(e);
      residual -= e;
    }
    let inner = levels[4];
    for (let l = 3; l >= 0; l--) inner = levels[l] + p.gates[l] * inner;
    const z2 = p.z2 ? p.z2[Math.floor(i / per)] : 1;
    loss += dy[i] * z2 * inner;
  }
  return loss;
}

function numericGrad(
  base: Params,
  signed: boolean,
  dy: Float64Array,
  perturb: (p: Params, h: number) => Params,
  h: number,
): number {
  const offsets: number[][] = [];
  surrogateLoss(base, signed, dy, offsets);
  const plus = surrogateLoss(perturb(base, h), signed, dy, offsets);
  const minus = surrogateLoss(perturb(base, -h), signed, dy, offsets);
  return (plus - minus) / (2 * h);
}

/** What a quantizer gradient gives back, host values. */
interface Grads {
  dx: ArrayLike<number>;
  dxmax: number;
  dz2: ArrayLike<number> | null;
  dgates: readonly number[]; // dz4, dz8, dz16, dz32
}

/** A way of computing the quantizer's gradients, named for messages. */
interface GradVariant {
  name: string;
  grad(
    x: Float32Array,
    dy: Float32Array,
    channels: number,
    range: { xmax: number; signed: boolean },
    gates: number[],
    z2: number[] | null,
  ): Grads;
}

/** The library's quantizeGrad() on the reference device (float32). */
const float32Reference: GradVariant = {
  name: "reference",
  grad(x, dy, channels, range, gates, z2) {
    const shape = [channels, x.length / channels];
    const g = quantizeGrad(
      Tensor.from(x, shape),
      range,
      {
        ...(z2 ? { z2 } : {}),
        z4: gates[0],
        z8: gates[1],
        z16: gates[2],
        z32: gates[3],
      },
      Tensor.from(dy, shape),
    );
    return {
      dx: g.dx.toFloat32Array(),
      dxmax: g.dxmax,
      dz2: g.dz2,
      dgates: [g.dz4, g.dz8, g.dz16, g.dz32],
    };
  },
};

/** The reference arithmetic carried out in float64. */
const float64Reference: GradVariant = {
  name: "reference-float64",
  grad(x, dy, _channels, range, gates, z2) {
    const g = quantizeBackwardFloat64(
      x,
      dy,
      quantizerPass(
        range.xmax,
        range.signed,
        gates.map(Math.fround),
        z2 ? Float32Array.from(z2) : null,
      ),
    );
    return { dx: g.dx, dxmax: g.dxmax, dz2: g.dz2, dgates: g.dgates };
  },
};

function checkGradients(
  variant: GradVariant,
  signed: boolean,
  gates: number[],
  withZ2: boolean,
  seed: number,
  rtol: number,
  gateCount: number,
) {
  const channels = 3;
  const per = 7;
  const xmax = 0.8;
  // Some elements outside the range so the clip contributes to dxmax.
  const x32 = randomValues(seed, channels * per, signed ? -1.1 : -0.3, 1.1);
  const dy32 = randomValues(seed + 1, channels * per, -1, 1);
  const z2 = withZ2 ? [0.875, 0.375, 0.625] : null; // exact in float32, as the library stores z2
  const base: Params = { x: Float64Array.from(x32), xmax, z2, gates };
  const dy = Float64Array.from(dy32);
  const got = variant.grad(x32, dy32, channels, { xmax, signed }, gates, z2);
  const h = 1e-6;
  const what = `${variant.name} signed=${signed} gates=${gates} z2=${withZ2}`;
  const dxmax = numericGrad(
    base,
    signed,
    dy,
    (p, d) => ({ ...p, xmax: p.xmax + d }),
    h,
  );
  assertClose(got.dxmax, dxmax, rtol, 1e-7, `${what} dxmax`);
  const dgates = got.dgates;
  for (let l = 0; l < gateCount; l++) {
    const numeric = numericGrad(base, signed, dy, (p, d) => {
      const g = [...p.gates];
      g[l] += d;
      return { ...p, gates: g };
    }, 1e-4); // the loss is linear in each gate: a larger step only cuts round-off
    assertClose(dgates[l], numeric, rtol, 1e-9, `${what} dz${4 << l}`);
  }
  if (z2) {
    for (let c = 0; c < channels; c++) {
      const numeric = numericGrad(base, signed, dy, (p, d) => {
        const g = [...p.z2!];
        g[c] += d;
        return { ...p, z2: g };
      }, 1e-4);
      assertClose(got.dz2![c], numeric, rtol, 1e-7, `${what} dz2[${c}]`);
    }
  } else {
    assert.equal(got.dz2, null);
  }
  const dx = got.dx;
  for (let i = 0; i < x32.length; i++) {
    const numeric = numericGrad(base, signed, dy, (p, d) => {
      const x = p.x.slice();
      x[i] += d;
      return { ...p, x };
    }, h);
    assertClose(dx[i], numeric, 1e-5, 1e-6, `${what} dx[${i}] (x = ${x32[i]})`);
  }
}

const GATE_PATTERNS = [
  [1, 0, 0, 0],
  [1, 1, 0, 0],
  [0.75, 0.375, 0.3125, 0.625], // exact in float32, as the library stores gates
  [1, 1, 1, 1],
  [0, 0.5, 0.5, 0.5],
  [0.5, 0, 1, 0],
];

Deno.test("the quantizer gradients in float64 (quantizeBackwardFloat64) match finite differences for x, xmax and every gate", () => {
  let seed = 100;
  for (const signed of [true, false]) {
    for (const gates of GATE_PATTERNS) {
      for (const withZ2 of [true, false]) {
        checkGradients(
          float64Reference,
          signed,
          gates,
          withZ2,
          seed++,
          1e-6,
          4,
        );
      }
    }
  }
});

Deno.test("quantizeGrad() in float32 matches finite differences up to the 8-bit level", () => {
  let seed = 200;
  for (const signed of [true, false]) {
    for (
      const gates of [[1, 0, 0, 0], [1, 1, 0, 0], [0.75, 0.375, 0, 0], [
        0.3125,
        0.875,
        0,
        0,
      ]]
    ) {
      checkGradients(float32Reference, signed, gates, true, seed++, 2e-3, 3);
    }
  }
});

Deno.test("quantizeGrad() passes dx = z2 * dy inside the range and 0 outside and at the bounds", () => {
  const hi = Math.fround(CLIP_FACTOR * 1);
  const x = Tensor.from([-2, -hi, -0.5, 0, 0.5, hi, 2], [1, 7]);
  const dy = Tensor.from([1, 1, 1, 1, 1, 1, 1], [1, 7]);
  const gates = { z2: [0.5], z4: 1, z8: 1, z16: 0, z32: 0 };
  const signed = quantizeGrad(x, { xmax: 1, signed: true }, gates, dy).dx
    .toFloat32Array();
  assert.deepEqual([...signed], [0, 0, 0.5, 0.5, 0.5, 0, 0]);
  const unsigned = quantizeGrad(x, { xmax: 1, signed: false }, gates, dy).dx
    .toFloat32Array();
  assert.deepEqual([...unsigned], [0, 0, 0, 0, 0.5, 0, 0]);
});

Deno.test("quantizeGrad() gives xmax the clip gradient at clipped elements", () => {
  // One element far above the range, 2-bit: xq = s2 * round(hi / s2) = s2 * 1 (unsigned: 3).
  // d xq / d xmax = c (clip) + (round(hi/s2) - hi/s2) * ds2/dxmax.
  const xmax = 1;
  const g = float64Reference.grad(
    new Float32Array([5]),
    new Float32Array([1]),
    1,
    { xmax, signed: false },
    [0, 0, 0, 0],
    null,
  );
  const hi = CLIP_FACTOR * xmax;
  const s2 = xmax / 3;
  const expected = CLIP_FACTOR + (roundHalfEven(hi / s2) - hi / s2) / 3;
  assertClose(g.dxmax, expected, 1e-9, 0, "dxmax");
});

Deno.test("quantizeGrad() gives no gradient to gates above a gate that is exactly 0", () => {
  const x = Tensor.from(randomValues(5, 40), [4, 10]);
  const dy = Tensor.from(randomValues(6, 40), [4, 10]);
  const g = quantizeGrad(x, { xmax: 1, signed: true }, {
    z4: 1,
    z8: 0,
    z16: 0.5,
    z32: 1,
  }, dy);
  assert.equal(g.dz16, 0);
  assert.equal(g.dz32, 0);
  assert.notEqual(g.dz8, 0);
});
