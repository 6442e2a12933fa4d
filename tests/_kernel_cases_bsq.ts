/**
 * Kernel cases of the BSQ bit-plane family (part of the table in
 * `_kernel_cases.ts`): plane sums, the unit quantizer, the group Lasso, the
 * batch-max activation quantizer and the clip, with the hand-computed
 * values of spec `bsq.md` section 10 where they apply.
 */

import { awkwardValues } from "./_fixtures.ts";
import {
  EXACT,
  floats,
  given,
  type KernelCase,
  kernelCase,
  REDUCTION,
} from "./_kernel_case.ts";

/** Planes in [0, 2] with exact 0/1 entries mixed in. */
function planes(seed: number, n: number, size: number) {
  const input = floats(seed, [n, size], 0, 2);
  const values = input.values as Float32Array;
  for (let i = 0; i < values.length; i += 3) values[i] = i % 2;
  return input;
}

function planeSumCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const [n, size] of [[1, 7], [3, 1000], [8, 257]]) {
    cases.push(
      kernelCase({
        name: `bitPlaneSum, ${n} planes of ${size}`,
        kernel: "bitPlaneSum",
        inputs: () => ({
          pos: planes(n, n, size),
          neg: planes(n + 9, n, size),
        }),
        call: (k, t) => ({ y: k.bitPlaneSum(t.pos, t.neg) }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `bitPlaneSumBackward, ${n} planes of ${size}`,
        kernel: "bitPlaneSumBackward",
        inputs: () => ({ dy: floats(n + 3, [size]) }),
        call: (k, t) => k.bitPlaneSumBackward(t.dy, n),
        tolerance: { dpos: EXACT, dneg: EXACT },
      }),
    );
  }
  // Spec 10.4: N = 2, P = [0.9, 0.4], Nn = [0.1, 0]: wt = 2/3.
  cases.push(kernelCase({
    name: "bitPlaneSum by hand: 2 planes give 2/3",
    kernel: "bitPlaneSum",
    inputs: () => ({
      pos: given([0.9, 0.4], [2, 1]),
      neg: given([0.1, 0], [2, 1]),
    }),
    call: (k, t) => ({ y: k.bitPlaneSum(t.pos, t.neg) }),
    tolerance: { y: EXACT },
    expected: { y: [2 / 3] },
  }));
  return cases;
}

function unitQuantizeCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const [levels, count] of [[1, 5], [3, 1001], [255, 4099]]) {
    const x = () => {
      const values = floats(levels, [count], -1.5, 1.5).values as Float32Array;
      values.set(awkwardValues(levels, Math.min(count, 9)).slice(0, 9));
      return given(values);
    };
    cases.push(
      kernelCase({
        name: `unitQuantize, ${levels} levels, ${count} values past both clips`,
        kernel: "unitQuantize",
        inputs: () => ({ x: x(), scale: given([0.37]) }),
        call: (k, t) => ({ y: k.unitQuantize(t.x, t.scale, levels) }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `unitQuantizeBackward, ${levels} levels, ${count} values`,
        kernel: "unitQuantizeBackward",
        inputs: () => ({
          x: x(),
          scale: given([0.37]),
          dy: floats(count, [count]),
        }),
        call: (k, t) => k.unitQuantizeBackward(t.x, t.scale, levels, t.dy),
        tolerance: { dx: EXACT, dscale: REDUCTION },
      }),
    );
  }
  // Spec 10.4: s = 3, wt = 2/3 and 4/3 (clamped): w = 2 and 3; dw/ds = 2/3 + 1.
  cases.push(kernelCase({
    name: "unitQuantize by hand: 2/3 and the clamped 4/3 at s = 3, N = 2",
    kernel: "unitQuantize",
    inputs: () => ({
      x: given([2 / 3, 4 / 3]),
      scale: given([3]),
      dy: given([1, 1]),
    }),
    call: (k, t) => ({
      y: k.unitQuantize(t.x, t.scale, 3),
      ...k.unitQuantizeBackward(t.x, t.scale, 3, t.dy),
    }),
    tolerance: { y: EXACT, dx: EXACT, dscale: REDUCTION },
    expected: { y: [2, 3], dx: [3, 3], dscale: [2 / 3 + 1] },
  }));
  return cases;
}

function groupLassoCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const [n, size] of [[1, 3], [4, 1000], [8, 129]]) {
    const inputs = () => ({
      pos: planes(2 * n, n, size),
      neg: planes(2 * n + 1, n, size),
      dr: given([0.7]),
    });
    cases.push(
      kernelCase({
        name: `bitGroupLasso, ${n} planes of ${size}`,
        kernel: "bitGroupLasso",
        inputs,
        call: (k, t) => ({ r: k.bitGroupLasso(t.pos, t.neg, 0.25) }),
        tolerance: { r: REDUCTION },
      }),
      kernelCase({
        name: `bitGroupLassoBackward, ${n} planes of ${size}`,
        kernel: "bitGroupLassoBackward",
        inputs,
        call: (k, t) => k.bitGroupLassoBackward(t.pos, t.neg, 0.25, t.dr),
        tolerance: { dpos: REDUCTION, dneg: REDUCTION },
      }),
    );
  }
  // Spec 10.3: W = [3, 2.5, 0.5, -1.5, 0, -3] at N = 2, weight n N / TP = 2.
  const pos = [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
  const neg = [0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1];
  cases.push(kernelCase({
    name: "bitGroupLasso by hand: R = 2 (2 + sqrt 2), gradients 1 and sqrt 2",
    kernel: "bitGroupLasso",
    inputs: () => ({
      pos: given(pos, [2, 6]),
      neg: given(neg, [2, 6]),
      dr: given([1]),
    }),
    call: (k, t) => ({
      r: k.bitGroupLasso(t.pos, t.neg, 2),
      ...k.bitGroupLassoBackward(t.pos, t.neg, 2, t.dr),
    }),
    tolerance: { r: REDUCTION, dpos: REDUCTION, dneg: REDUCTION },
    expected: {
      r: [2 * (Math.sqrt(4 + 1e-8) + Math.sqrt(2 + 1e-8))],
      dpos: pos.map((v, i) => 2 * v / Math.sqrt((i < 6 ? 4 : 2) + 1e-8)),
    },
  }));
  return cases;
}

function activationCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const [levels, count] of [[1, 4], [3, 1000], [255, 4099]]) {
    cases.push(kernelCase({
      name: `maxAbsQuantize, ${levels} levels, ${count} values`,
      kernel: "maxAbsQuantize",
      inputs: () => ({ x: floats(levels + 5, [count], -2, 6) }),
      call: (k, t) => k.maxAbsQuantize(t.x, levels),
      tolerance: { y: EXACT, maxAbs: EXACT },
    }));
  }
  cases.push(
    // Spec 10.8: a = 2, S = 6; 1 * 3 / 6 = 0.5 rounds to 0.
    kernelCase({
      name: "maxAbsQuantize by hand: [0, 1, 2.5, 6] at 2 bits",
      kernel: "maxAbsQuantize",
      inputs: () => ({ x: given([0, 1, 2.5, 6]) }),
      call: (k, t) => k.maxAbsQuantize(t.x, 3),
      tolerance: { y: EXACT, maxAbs: EXACT },
      expected: { y: [0, 0, 2, 6], maxAbs: [6] },
    }),
    kernelCase({
      name: "maxAbsQuantize by hand: all zeros stay zero",
      kernel: "maxAbsQuantize",
      inputs: () => ({ x: given([0, 0, 0]) }),
      call: (k, t) => k.maxAbsQuantize(t.x, 15),
      tolerance: { y: EXACT, maxAbs: EXACT },
      expected: { y: [0, 0, 0], maxAbs: [0] },
    }),
  );
  for (const count of [0, 5, 4099]) {
    cases.push(kernelCase({
      name: `clip to [0, 2], ${count} values with NaN, -0 and integers`,
      kernel: "clip",
      inputs: () => ({ x: given(awkwardValues(count + 7, count), [count]) }),
      call: (k, t) => ({ y: k.clip(t.x, 0, 2) }),
      tolerance: { y: EXACT },
    }));
  }
  cases.push(kernelCase({
    name: "clip by hand: [-3, 0.5, 7] to [-1, 1]",
    kernel: "clip",
    inputs: () => ({ x: given([-3, 0.5, 7]) }),
    call: (k, t) => ({ y: k.clip(t.x, -1, 1) }),
    tolerance: { y: EXACT },
    expected: { y: [-1, 0.5, 1] },
  }));
  return cases;
}

/** Every bit-plane case. */
export function bitPlaneCases(): KernelCase[] {
  return [
    ...planeSumCases(),
    ...unitQuantizeCases(),
    ...groupLassoCases(),
    ...activationCases(),
  ];
}
