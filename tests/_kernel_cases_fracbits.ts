/**
 * FracBits' rows of the kernel table: the blended DoReFa weights
 * (layer-wise, kernel-wise with 0-bit kernels, rescaled), the blended PACT
 * activations, the width cost and the target penalty, forward and
 * backward, with hand-computed values from spec `fracbits.md` section 10.
 */

import {
  EXACT,
  floats,
  given,
  type KernelCase,
  kernelCase,
} from "./_kernel_case.ts";

const RANGE = { minBits: 1, maxBits: 8 };

/** Weight variants: widths, range, rescale. */
const WEIGHT_VARIANTS = [
  { label: "layer-wise at 2.25 bits", bits: [2.25], min: 1, fanOut: null },
  { label: "layer-wise at 3 bits, rescaled", bits: [3], min: 1, fanOut: 150 },
  {
    label: "kernel-wise 0..8 with a pruned kernel, rescaled",
    bits: [0, 0.4, 1.5, 2, 7.25, 9],
    min: 0,
    fanOut: 54,
  },
] as const;

/** Cases of the DoReFa weight kernels. */
function weightCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  WEIGHT_VARIANTS.forEach((v, i) => {
    const options = { minBits: v.min, maxBits: 8, fanOut: v.fanOut };
    const inputs = () => ({
      w: floats(400 + i, [6, 3, 3, 1], -2, 2),
      bits: given(v.bits),
      dy: floats(410 + i, [6, 3, 3, 1]),
    });
    cases.push(
      kernelCase({
        name: `fracWeightQuantize ${v.label}`,
        kernel: "fracWeightQuantize",
        inputs,
        call: (k, t) => ({ y: k.fracWeightQuantize(t.w, t.bits, options) }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `fracWeightQuantizeBackward ${v.label}`,
        kernel: "fracWeightQuantizeBackward",
        inputs,
        call: (k, t) =>
          k.fracWeightQuantizeBackward(t.w, t.bits, options, t.dy),
        tolerance: { dw: EXACT, dbits: EXACT },
      }),
    );
  });
  const spec = () => ({
    w: given([0, 0.5, -1, 2]),
    bits: given([2.5]),
    dy: given([1, 1, 1, 1]),
  });
  const plain = { ...RANGE, fanOut: null };
  cases.push(
    kernelCase({
      name: "fracWeightQuantize of spec test 2 at 2 bits",
      kernel: "fracWeightQuantize",
      inputs: () => ({ ...spec(), bits: given([2]) }),
      call: (k, t) => ({ y: k.fracWeightQuantize(t.w, t.bits, plain) }),
      tolerance: { y: EXACT },
      expected: { y: [1 / 3, 1 / 3, -1, 1] },
    }),
    kernelCase({
      name: "fracWeightQuantizeBackward of spec test 3: dL/dlambda = 4/21",
      kernel: "fracWeightQuantizeBackward",
      inputs: spec,
      call: (k, t) => ({
        dbits: k.fracWeightQuantizeBackward(t.w, t.bits, plain, t.dy).dbits,
      }),
      tolerance: { dbits: EXACT },
      expected: { dbits: [4 / 21] },
    }),
  );
  return cases;
}

/** Cases of the PACT activation kernels. */
function activationCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  const variants = [[2.5, 8], [4, 1.5], [7.75, -3]];
  variants.forEach(([bits, clip], i) => {
    const inputs = () => ({
      x: floats(420 + i, [2, 3, 7, 7], -2, 10),
      clip: given([clip]),
      bits: given([bits]),
      dy: floats(430 + i, [2, 3, 7, 7]),
    });
    cases.push(
      kernelCase({
        name: `pactQuantize at ${bits} bits, clip ${clip}`,
        kernel: "pactQuantize",
        inputs,
        call: (k, t) => ({ y: k.pactQuantize(t.x, t.clip, t.bits, RANGE) }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `pactQuantizeBackward at ${bits} bits, clip ${clip}`,
        kernel: "pactQuantizeBackward",
        inputs,
        call: (k, t) =>
          k.pactQuantizeBackward(t.x, t.clip, t.bits, RANGE, t.dy),
        tolerance: { dx: EXACT, dclip: EXACT, dbits: EXACT },
      }),
    );
  });
  const spec = () => ({
    x: given([-1, 0.5, 1, 3, 7, 9]),
    clip: given([8]),
    bits: given([2]),
    dy: given([1, 1, 1, 1, 1, 1]),
  });
  cases.push(
    kernelCase({
      name: "pactQuantize of spec test 4 at 2 bits",
      kernel: "pactQuantize",
      inputs: spec,
      call: (k, t) => ({ y: k.pactQuantize(t.x, t.clip, t.bits, RANGE) }),
      tolerance: { y: EXACT },
      expected: { y: [0, 0, 0, 8 / 3, 8, 8] },
    }),
    kernelCase({
      name: "pactQuantizeBackward of spec test 4: dL/dalpha at 2 bits",
      kernel: "pactQuantizeBackward",
      inputs: spec,
      call: (k, t) => {
        const r = k.pactQuantizeBackward(t.x, t.clip, t.bits, RANGE, t.dy);
        return { dx: r.dx, dclip: r.dclip };
      },
      tolerance: { dx: EXACT, dclip: EXACT },
      expected: { dx: [0, 1, 1, 1, 1, 0], dclip: [0.8958333] },
    }),
  );
  return cases;
}

/** Cases of the width cost and the target penalty. */
function costCases(): KernelCase[] {
  const r = { min: 1, max: 8 };
  const options = { weightRange: r, inputRange: r, coefficient: 0.5 };
  const inputs = () => ({
    weightBits: given([0.5, 2.3, 3, 7.9, 8.5]),
    inputBits: given([3.6]),
    dcost: given([2]),
  });
  const cases: KernelCase[] = [];
  for (const withInput of [true, false]) {
    const label = withInput ? "with an input width" : "with a constant input";
    cases.push(
      kernelCase({
        name: `widthCost ${label}`,
        kernel: "widthCost",
        inputs,
        call: (k, t) => ({
          cost: k.widthCost(
            t.weightBits,
            withInput ? t.inputBits : null,
            options,
          ),
        }),
        tolerance: { cost: EXACT },
        expected: {
          cost: [0.5 * (1 + 2.3 + 3 + 7.9 + 8) * (withInput ? 3.6 : 1)],
        },
      }),
      kernelCase({
        name: `widthCostBackward ${label}`,
        kernel: "widthCostBackward",
        inputs,
        call: (k, t) =>
          k.widthCostBackward(
            t.weightBits,
            withInput ? t.inputBits : null,
            options,
            t.dcost,
          ),
        tolerance: { dweightBits: EXACT, dinputBits: EXACT },
        expected: withInput
          ? { dweightBits: [0, 3.6, 3.6, 3.6, 0], dinputBits: [22.2] }
          : { dweightBits: [0, 1, 1, 1, 0] },
      }),
    );
  }
  for (const [cost, target] of [[3, 5], [7, 5], [5, 5]]) {
    const inputs = () => ({ cost: given([cost]), dp: given([0.5]) });
    cases.push(
      kernelCase({
        name: `targetPenalty at cost ${cost}, target ${target}`,
        kernel: "targetPenalty",
        inputs,
        call: (k, t) => ({ p: k.targetPenalty(t.cost, target, 3) }),
        tolerance: { p: EXACT },
        expected: { p: [3 * Math.abs(cost - target)] },
      }),
      kernelCase({
        name: `targetPenaltyBackward at cost ${cost}, target ${target}`,
        kernel: "targetPenaltyBackward",
        inputs,
        call: (k, t) => ({
          dcost: k.targetPenaltyBackward(t.cost, target, 3, t.dp),
        }),
        tolerance: { dcost: EXACT },
        expected: { dcost: [1.5 * Math.sign(cost - target)] },
      }),
    );
  }
  return cases;
}

/** Every FracBits kernel case. */
export function fracBitsCases(): KernelCase[] {
  return [...weightCases(), ...activationCases(), ...costCases()];
}
