/**
 * The table of kernel cases: every member of `Kernels`, on deterministic
 * pseudo-random inputs, with a tolerance per output. The parity test runs
 * each case on every device and on the reference device and compares them;
 * a few small cases also carry hand-computed values the reference device
 * must reproduce.
 *
 * Tolerances follow the contracts in `core/kernels.ts`: exact (bit for bit,
 * NaN and the sign of zero included) unless a contract lets a device sum in
 * another order (GEMM, convolution, reductions split over threads) or use
 * its own `exp`/`log` (softmax).
 */

import { randomKey } from "../core/rng.ts";
import { awkwardValues } from "./_fixtures.ts";
import {
  EXACT,
  floats,
  GEMM,
  given,
  type KernelCase,
  kernelCase,
  mostlyZeros,
  REDUCTION,
} from "./_kernel_case.ts";
import {
  batchNormCases,
  convCases,
  lossCases,
  poolCases,
} from "./_kernel_cases_layers.ts";
import { bitPlaneCases } from "./_kernel_cases_bsq.ts";
import { emptyCases } from "./_kernel_cases_empty.ts";
import {
  gateCases,
  optimizerCases,
  quantizerCases,
} from "./_kernel_cases_bayesian.ts";
import { fracBitsCases } from "./_kernel_cases_fracbits.ts";

const ELEMENTWISE_COUNTS = [0, 1, 5, 4099];

/** The elementwise kernels on awkward values (NaN, -0, 6, integers). */
function elementwiseCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const count of ELEMENTWISE_COUNTS) {
    const a = () => given(awkwardValues(count + 1, count), [count]);
    const b = () => floats(count + 2, [count]);
    cases.push(
      kernelCase({
        name: `add, ${count} elements`,
        kernel: "add",
        inputs: () => ({ a: a(), b: b() }),
        call: (k, t) => ({ y: k.add(t.a, t.b) }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `mul, ${count} elements`,
        kernel: "mul",
        inputs: () => ({ a: a(), b: b() }),
        call: (k, t) => ({ y: k.mul(t.a, t.b) }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `scale by 1/3, ${count} elements`,
        kernel: "scale",
        inputs: () => ({ a: a() }),
        call: (k, t) => ({ y: k.scale(t.a, 1 / 3) }),
        tolerance: { y: EXACT },
      }),
    );
    for (const kind of ["relu", "relu6"] as const) {
      cases.push(
        kernelCase({
          name: `${kind}, ${count} elements with NaN, -0, 0, 6 and integers`,
          kernel: "activation",
          inputs: () => ({ x: a() }),
          call: (k, t) => ({ y: k.activation(kind, t.x) }),
          tolerance: { y: EXACT },
        }),
        kernelCase({
          name: `${kind} backward, ${count} elements`,
          kernel: "activationBackward",
          inputs: () => ({ x: a(), dy: b() }),
          call: (k, t) => ({ dx: k.activationBackward(kind, t.x, t.dy) }),
          tolerance: { dx: EXACT },
        }),
      );
    }
  }
  return cases;
}

/** Hand-computed elementwise cases, sums and a broadcast. */
function smallElementwiseCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  cases.push(
    kernelCase({
      name: "add, mul and scale of two elements by hand",
      kernel: "add",
      inputs: () => ({ a: given([1, -2.5]), b: given([3, 0.5]) }),
      call: (k, t) => ({
        sum: k.add(t.a, t.b),
        product: k.mul(t.a, t.b),
        scaled: k.scale(t.a, 0.5),
      }),
      tolerance: { sum: EXACT, product: EXACT, scaled: EXACT },
      expected: { sum: [4, -2], product: [3, -1.25], scaled: [0.5, -1.25] },
    }),
    kernelCase({
      name: "relu and relu6 by hand",
      kernel: "activation",
      inputs: () => ({ x: given([-1, 0, 2.5, 6, 7, NaN]) }),
      call: (k, t) => ({
        relu: k.activation("relu", t.x),
        relu6: k.activation("relu6", t.x),
        drelu6: k.activationBackward("relu6", t.x, t.x),
      }),
      tolerance: { relu: EXACT, relu6: EXACT, drelu6: EXACT },
      expected: {
        relu: [0, 0, 2.5, 6, 7, 0],
        relu6: [0, 0, 2.5, 6, 6, 0],
        drelu6: [0, 0, 2.5, 0, 0, 0],
      },
    }),
  );
  for (const count of [1, 3001]) {
    cases.push(kernelCase({
      name: `sum of ${count} elements`,
      kernel: "sum",
      inputs: () => ({ a: floats(30 + count, [count], -2, 3) }),
      call: (k, t) => ({ y: k.sum(t.a) }),
      tolerance: { y: REDUCTION },
    }));
  }
  cases.push(
    kernelCase({
      name: "sum by hand",
      kernel: "sum",
      inputs: () => ({ a: given([1, 2, 3.5, -0.25]) }),
      call: (k, t) => ({ y: k.sum(t.a) }),
      tolerance: { y: REDUCTION },
      expected: { y: [6.25] },
    }),
    kernelCase({
      name: "broadcast of a scalar to [3, 1001]",
      kernel: "broadcast",
      inputs: () => ({ s: given([-0.7]) }),
      call: (k, t) => ({ y: k.broadcast(t.s, [3, 1001]) }),
      tolerance: { y: EXACT },
    }),
  );
  return cases;
}

const GEMMS: [number, number, number, boolean, boolean][] = [
  // m, n, k, transA, transB: none a multiple of 4 or 12
  [1, 1, 1, false, false],
  [13, 29, 37, false, false],
  [1, 10, 85, false, true], // a batch of one through a dense layer
  [7, 50, 23, true, false],
  [33, 17, 45, false, true],
  [5, 3, 70, true, true],
  [61, 19, 1, false, false],
  [9, 11, 4133, true, false], // few output tiles, a long K: split-K
  [130, 70, 20, false, true], // several 64 x 64 tiles with ragged edges
];

function matrixCases(): KernelCase[] {
  const cases: KernelCase[] = GEMMS.map(([m, n, k, transA, transB], i) =>
    kernelCase({
      name: `gemm ${m} x ${n} x ${k}${transA ? ", A transposed" : ""}${
        transB ? ", B transposed" : ""
      }`,
      kernel: "gemm",
      inputs: () => ({
        a: floats(40 + i, transA ? [k, m] : [m, k]),
        b: floats(50 + i, transB ? [n, k] : [k, n]),
      }),
      call: (kk, t) => ({ c: kk.gemm(t.a, t.b, { m, n, k, transA, transB }) }),
      tolerance: { c: GEMM },
    })
  );
  // A = [[1, 2, 3], [4, 5, 6]], B = [[1, 0], [0, 1], [1, 1]]: A B = [[4, 5], [10, 11]].
  cases.push(kernelCase({
    name: "gemm by hand, every transpose",
    kernel: "gemm",
    inputs: () => ({
      a: given([1, 2, 3, 4, 5, 6], [2, 3]),
      aT: given([1, 4, 2, 5, 3, 6], [3, 2]),
      b: given([1, 0, 0, 1, 1, 1], [3, 2]),
      bT: given([1, 0, 1, 0, 1, 1], [2, 3]),
    }),
    call: (k, t) => ({
      ab: k.gemm(t.a, t.b, { m: 2, n: 2, k: 3, transA: false, transB: false }),
      aTb: k.gemm(t.aT, t.b, { m: 2, n: 2, k: 3, transA: true, transB: false }),
      abT: k.gemm(t.a, t.bT, { m: 2, n: 2, k: 3, transB: true, transA: false }),
      aTbT: k.gemm(t.aT, t.bT, {
        m: 2,
        n: 2,
        k: 3,
        transA: true,
        transB: true,
      }),
    }),
    tolerance: { ab: GEMM, aTb: GEMM, abT: GEMM, aTbT: GEMM },
    expected: {
      ab: [4, 5, 10, 11],
      aTb: [4, 5, 10, 11],
      abT: [4, 5, 10, 11],
      aTbT: [4, 5, 10, 11],
    },
  }));
  for (
    const [rows, cols] of [[1, 1], [1, 10], [5, 3], [128, 10], [37, 33], [
      300,
      32,
    ]]
  ) {
    cases.push(
      kernelCase({
        name: `addBias ${rows} x ${cols}`,
        kernel: "addBias",
        inputs: () => ({
          a: floats(rows + cols, [rows, cols], -100, 100),
          bias: floats(cols, [cols]),
        }),
        call: (k, t) => ({ y: k.addBias(t.a, t.bias) }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `biasGrad ${rows} x ${cols}`,
        kernel: "biasGrad",
        inputs: () => ({ a: floats(rows * cols, [rows, cols], -100, 100) }),
        call: (k, t) => ({ db: k.biasGrad(t.a, cols) }),
        tolerance: { db: EXACT },
      }),
    );
  }
  return cases;
}

/** GEMMs whose `A` is mostly zeros (the WASM device skips them). */
function sparseGemmCases(): KernelCase[] {
  return ([[70, 40, 300, false], [40, 70, 300, true], [9, 33, 5, false]] as [
    number,
    number,
    number,
    boolean,
  ][]).map(([m, n, k, transA], i) =>
    kernelCase({
      name: `gemm ${m} x ${n} x ${k}${
        transA ? ", A transposed" : ""
      }, A mostly zeros`,
      kernel: "gemm",
      inputs: () => ({
        a: mostlyZeros(110 + i, transA ? [k, m] : [m, k]),
        b: floats(120 + i, [k, n]),
      }),
      call: (kk, t) => ({
        c: kk.gemm(t.a, t.b, { m, n, k, transA, transB: false }),
      }),
      tolerance: { c: GEMM },
    })
  );
}

function uniformCases(): KernelCase[] {
  return [[1, 0], [4099, 0], [1001, 12345], [3, 2 ** 32 + 1]].map((
    [count, offset],
  ) =>
    kernelCase({
      name: `uniform, ${count} from offset ${offset}`,
      kernel: "uniform",
      inputs: () => ({}),
      call: (k) => ({ u: k.uniform(randomKey(count), count, offset) }),
      tolerance: { u: EXACT },
    })
  ).concat(
    // Threefry-2x32-20 of key (0, 0) and counter (0, 0) is (0x6b200159,
    // 0x99ba4efe) (Random123's known answer); a uniform keeps a word's top
    // 23 bits and adds half a step.
    kernelCase({
      name: "uniform by hand: the first two words of key (0, 0)",
      kernel: "uniform",
      inputs: () => ({}),
      call: (k) => ({ u: k.uniform([0, 0], 2, 0) }),
      tolerance: { u: EXACT },
      expected: {
        u: [0x6b200159, 0x99ba4efe].map((w) => ((w >>> 9) + 0.5) * 2 ** -23),
      },
    }),
  );
}

/**
 * The uniform grid: random values on signed and unsigned code ranges (the
 * scales are not powers of two, so divisions round), and a hand case with
 * ties, clipping, -0 and NaN.
 */
function uniformGridCases(): KernelCase[] {
  const ranges = [[-127, 127, 0.0123], [0, 15, 0.37], [-7, 7, 1 / 7]];
  const cases = [0, 5, 4099].flatMap((count) =>
    ranges.map(([lo, hi, scale]) =>
      kernelCase({
        name: `uniformQuantize, ${count} elements, codes [${lo}, ${hi}]`,
        kernel: "uniformQuantize",
        inputs: () => ({
          x: floats(count + 7, [count], -2, 2),
          scale: given([scale]),
        }),
        call: (k, t) => ({ y: k.uniformQuantize(t.x, t.scale, lo, hi) }),
        tolerance: { y: EXACT },
      })
    )
  );
  return cases.concat(kernelCase({
    name: "uniformQuantize by hand: ties to even, clipping, -0, NaN",
    kernel: "uniformQuantize",
    inputs: () => ({
      x: given([-2, -0.75, -0.25, 0, 0.25, 0.74, 1.25, 7, NaN]),
      scale: given([0.5]),
    }),
    call: (k, t) => ({ y: k.uniformQuantize(t.x, t.scale, -3, 3) }),
    tolerance: { y: EXACT },
    expected: { y: [-1.5, -1, -0, 0, 0, 0.5, 1, 1.5, NaN] },
  }));
}

/** Every kernel case, family by family. */
export const KERNEL_CASES: readonly KernelCase[] = Object.freeze([
  ...elementwiseCases(),
  ...smallElementwiseCases(),
  ...matrixCases(),
  ...sparseGemmCases(),
  ...convCases(),
  ...poolCases(),
  ...batchNormCases(),
  ...lossCases(),
  ...quantizerCases(),
  ...bitPlaneCases(),
  ...uniformGridCases(),
  ...gateCases(),
  ...fracBitsCases(),
  ...uniformCases(),
  ...optimizerCases(),
  ...emptyCases(),
]);
