/**
 * Kernel cases of the residual quantizer, the hard-concrete gates and their
 * prior, and the optimizer updates (part of the table in `_kernel_cases.ts`).
 */

import type { GatePriorOptions } from "../core/kernels.ts";
import { poolGeometry } from "../core/ops/pool.ts";
import { quantizerConstants } from "../core/reference/quantizer.ts";
import { randomKey, uniform } from "../core/rng.ts";
import { randomValues } from "./_fixtures.ts";
import {
  EXACT,
  floats,
  given,
  type HostInput,
  type Inputs,
  type KernelCase,
  kernelCase,
  REDUCTION,
  type Tolerance,
} from "./_kernel_case.ts";

type Gates = [number, number, number, number];

const QUANTIZER_VARIANTS: [boolean, boolean, Gates][] = [
  // signed, with z2, [z4, z8, z16, z32]
  [true, true, [1, 1, 1, 1]],
  [true, false, [1, 1, 0, 0]],
  [false, true, [1, 0, 0, 0]],
  [false, false, [1, 1, 1, 1]],
  [true, true, [0, 0, 0, 0]], // every bit-doubling gate off: 2 bits
  [false, false, [0, 0, 0, 0]],
  [true, false, [0.75, 0.5, 1, 0.25]], // training samples between 0 and 1
  [false, true, [0.75, 0.5, 1, 0.25]],
];

const CHANNELS = 37;
const PER_CHANNEL = 113;

/**
 * `x` over both clip bounds, with exact ties of the 2-bit grid (`s2` is 1:
 * `xmax` 1.5 signed, 3 unsigned), zeros of both signs and the bounds.
 */
function quantizerX(seed: number, signed: boolean, shape: number[]) {
  const xmax = signed ? 1.5 : 3;
  const count = shape.reduce((p, d) => p * d, 1);
  const x = randomValues(
    seed,
    count,
    signed ? -1.25 * xmax : -0.25 * xmax,
    1.25 * xmax,
  );
  const specials = [0.5, -0.5, 1.5, 2.5, 0, -0, xmax, -xmax, 0.1, 1e-30];
  for (let i = 0; i < count; i += 11) x[i] = specials[(i / 11) % 10];
  return { x: given(x, shape), xmax: given([xmax]) };
}

/** Per-channel pruning gates: off, on, half and in between. */
function z2Values(channels: number): HostInput {
  const levels = [0, 1, 0.5, 0.3];
  return given(Array.from({ length: channels }, (_, c) => levels[c % 4]));
}

/**
 * Tolerances of the quantizer's reductions. The reference sums in float64;
 * a device may round short partial sums to float32 (WASM: 32 products per
 * lane; WGSL has no float64), so the error scales with the magnitudes of
 * the terms, not with the (cancelling) sum: 1e-6 of `sum |dy|` times a
 * bound of each term's factor (`xmax` for `dz2`, the scale of the gate's
 * level for `dgates`, 2 for `dxmax`).
 */
function quantizerSumTolerances(
  signed: boolean,
  gates: Gates,
  inputs: Inputs,
): Record<string, Tolerance> {
  const xmax = inputs.xmax.values[0];
  const dy = inputs.dy.values;
  const per = dy.length / CHANNELS;
  const absSums = Array.from({ length: CHANNELS }, (_, c) => {
    let total = 0;
    for (let i = c * per; i < (c + 1) * per; i++) total += Math.abs(dy[i]);
    return total;
  });
  const all = absSums.reduce((a, b) => a + b);
  const scales = quantizerConstants(xmax, signed, gates).scales;
  const at = (atol: number | number[]) => ({ rtol: 1e-6, atol });
  return {
    dx: EXACT,
    dxmax: at(1e-6 * 2 * all),
    dgates: at(scales.slice(1).map((s) => 1e-6 * s * all)),
    dz2: at(absSums.map((a) => 1e-6 * xmax * a)),
  };
}

/** Cases of the residual quantizer (forward, backward, fused max-pool). */
export function quantizerCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  QUANTIZER_VARIANTS.forEach(([signed, withZ2, gates], i) => {
    const label = `${signed ? "signed" : "unsigned"}, gates [${gates}], ${
      withZ2 ? "with" : "without"
    } z2`;
    const inputs = () => ({
      ...quantizerX(300 + i, signed, [CHANNELS, PER_CHANNEL]),
      gates: given(gates),
      z2: z2Values(CHANNELS),
      dy: floats(310 + i, [CHANNELS, PER_CHANNEL]),
    });
    cases.push(
      kernelCase({
        name: `residualQuantize ${label}`,
        kernel: "residualQuantize",
        inputs,
        call: (k, t) => ({
          xq: k.residualQuantize(
            t.x,
            t.xmax,
            t.gates,
            withZ2 ? t.z2 : null,
            signed,
          ),
        }),
        tolerance: { xq: EXACT },
      }),
      kernelCase({
        name: `residualQuantizeBackward ${label}`,
        kernel: "residualQuantizeBackward",
        inputs,
        call: (k, t) =>
          k.residualQuantizeBackward(
            t.x,
            t.xmax,
            t.gates,
            withZ2 ? t.z2 : null,
            signed,
            t.dy,
          ),
        tolerance: quantizerSumTolerances(signed, gates, inputs()),
      }),
    );
  });
  const POOLS: [boolean, Gates, number[], number, number, number][] = [
    [true, [1, 1, 0, 0], [2, 3, 9, 11], 2, 2, 0],
    [false, [1, 0, 0, 0], [4, 6, 24, 24], 2, 2, 0],
    [true, [1, 1, 1, 1], [3, 2, 7, 7], 3, 2, 1],
    [false, [0, 0, 0, 0], [1, 2, 5, 6], 3, 1, 0],
  ];
  POOLS.forEach(([signed, gates, shape, kernel, stride, padding], i) => {
    const g = poolGeometry(shape, kernel, stride, padding);
    cases.push(kernelCase({
      name: `residualQuantizePool ${
        signed ? "signed" : "unsigned"
      }, gates [${gates}], [${shape}] window ${kernel} stride ${stride} padding ${padding}`,
      kernel: "residualQuantizePool",
      inputs: () => ({
        ...quantizerX(320 + i, signed, shape),
        gates: given(gates),
      }),
      call: (k, t) => ({
        y: k.residualQuantizePool(t.x, t.xmax, t.gates, signed, g),
      }),
      tolerance: { y: EXACT },
    }));
  });
  cases.push(...handQuantizerCases());
  return cases;
}

/**
 * Signed, `xmax` 3 (`s2` 2, `s4` 0.4), gates off, channels `[1, 5]` and
 * `[-5, 0.5]` with `z2` = 1 and 0.5, `dy` = 1..4. Levels: `x2` = 0 (1/2 is a
 * tie, to even), 2 and -2 (clipped at `hi` and `-hi`), 0; `e4` = 0.8 (2.5
 * is a tie), 0.8, -0.8, 0.4. `dxmax` per element is `clip' + (2/3)(round(v)
 * - v)` with `v = xc / s2`: -1/3, 1 - 1/3, -1 + 1/3, -1/6.
 */
function handQuantizerCases(): KernelCase[] {
  const inputs = () => ({
    x: given([1, 5, -5, 0.5], [2, 2]),
    xmax: given([3]),
    gates: given([0, 0, 0, 0]),
    z2: given([1, 0.5]),
    dy: given([1, 2, 3, 4], [2, 2]),
  });
  return [
    kernelCase({
      name:
        "residualQuantize and its backward by hand (ties to even, clipping, z2)",
      kernel: "residualQuantizeBackward",
      inputs,
      call: (k, t) => ({
        xq: k.residualQuantize(t.x, t.xmax, t.gates, t.z2, true),
        ...k.residualQuantizeBackward(t.x, t.xmax, t.gates, t.z2, true, t.dy),
      }),
      tolerance: {
        xq: EXACT,
        dx: EXACT,
        dxmax: REDUCTION,
        dgates: REDUCTION,
        dz2: REDUCTION,
      },
      expected: {
        xq: [0, 2, -1, 0],
        dx: [1, 0, 0, 2],
        dz2: [1 * 0 + 2 * 2, 3 * -2 + 4 * 0],
        dgates: [(0.8 + 1.6) + 0.5 * (-2.4 + 1.6), 0, 0, 0],
        dxmax: [(-1 / 3 + 2 * (2 / 3)) + 0.5 * (3 * (-2 / 3) + 4 * (-1 / 6))],
      },
    }),
    kernelCase({
      name: "residualQuantizePool by hand",
      kernel: "residualQuantizePool",
      inputs,
      call: (k, t) => ({
        y: k.residualQuantizePool(
          t.x.reshape([1, 1, 2, 2]),
          t.xmax,
          t.gates,
          true,
          poolGeometry([1, 1, 2, 2], 2, 2, 0),
        ),
      }),
      tolerance: { y: EXACT },
      expected: { y: [2] },
    }),
    // Unsigned, xmax 1, 4 bits: the grid step is 1/15 (spec section 1).
    kernelCase({
      name: "residualQuantize at 4 bits unsigned by hand",
      kernel: "residualQuantize",
      inputs: () => ({
        x: given([0.45, 2, -0.3]),
        xmax: given([1]),
        gates: given([1, 0, 0, 0]),
      }),
      call: (k, t) => ({
        xq: k.residualQuantize(t.x, t.xmax, t.gates, null, false),
      }),
      tolerance: { xq: EXACT },
      expected: { xq: [7 / 15, 1, 0] },
    }),
  ];
}

/**
 * Gates in float32 (WebGPU): WGSL's \`log\` is within 3 units in the last
 * place of a log-odds term of at most 16 (or 2^-21 absolute near 1), divided
 * by beta = 2/3, through a slope of at most 1.2 / 4: about 2e-6 absolute on
 * a sample or on a gradient of at most unit scale.
 */
const GATES_FLOAT32 = { rtol: 1e-6, atol: 2e-6 };
/**
 * The prior in float32: positive terms, each a few units in the last place
 * (about 2.4e-7 relative), their sums and products: 1e-6 relative.
 */
const PRIOR_FLOAT32 = { rtol: 1e-6, atol: 1e-9 };
/**
 * Optimizer updates in float32 (WebGPU): a few units in the last place of
 * the result, or of the update where the result cancels (updates here are
 * below 0.015: 4 units of 2^-24 of it is below 4e-9).
 */
const OPTIMIZER_FLOAT32 = { rtol: 4 * 2 ** -24, atol: 4e-9 };

const GATE_VARIANTS: [Gates, number][] = [
  // chain logits [g4, g8, g16, g32], pruning channels (0: none)
  [[0.5, -0.3, 1.2, 2], 0],
  [[3, 0.2, -2, 4], 6], // -2 stops the chain at z16
  [[-2.5, 1, 1, 1], 3], // stopped at z4
  [[8, -1.5, 0, -8], 1031], // saturated samples, many channels
];

function gateInputs(i: number, logits: Gates, channels: number) {
  const noise = uniform(randomKey(400 + i), 4 + channels);
  if (i === 3) noise.set([0.999, 0.001, 0.5, 0.5]); // clamped at 1, then at 0
  return {
    logits: given(logits),
    prune: floats(410 + i, [Math.max(channels, 1)], -4, 4),
    noise: given(noise),
    dchain: floats(420 + i, [4]),
    dz2: floats(430 + i, [Math.max(channels, 1)]),
    dr: given([0.5]),
  };
}

/** Cases of the hard-concrete gates and the gate prior. */
export function gateCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  GATE_VARIANTS.forEach(([logits, channels], i) => {
    const prune = channels > 0;
    const label = `logits [${logits}], ${
      prune ? channels : "no"
    } pruning gates`;
    const inputs = () => gateInputs(i, logits, channels);
    const options: GatePriorOptions = i % 2 === 0
      ? { macRatio: 0.37, mode: "bop" }
      : { macRatio: 1, mode: "const" };
    cases.push(
      kernelCase({
        name: `hardConcreteSample, ${label}`,
        kernel: "hardConcreteSample",
        inputs,
        call: (k, t) =>
          k.hardConcreteSample(t.logits, prune ? t.prune : null, t.noise),
        tolerance: { chain: EXACT, z2: EXACT },
        float32: { chain: GATES_FLOAT32, z2: GATES_FLOAT32 },
      }),
      kernelCase({
        name: `hardConcreteChainBackward, ${label}`,
        kernel: "hardConcreteChainBackward",
        inputs,
        call: (k, t) => ({
          dlogits: k.hardConcreteChainBackward(t.logits, t.noise, t.dchain),
        }),
        tolerance: { dlogits: EXACT },
        float32: { dlogits: GATES_FLOAT32 },
      }),
      kernelCase({
        name: `hardConcreteGates, ${label}`,
        kernel: "hardConcreteGates",
        inputs,
        call: (k, t) => k.hardConcreteGates(t.logits, prune ? t.prune : null),
        tolerance: { chain: EXACT, z2: EXACT },
      }),
      kernelCase({
        name: `gatePrior ${options.mode}, ${label}`,
        kernel: "gatePrior",
        inputs,
        call: (k, t) => ({
          r: k.gatePrior(t.logits, prune ? t.prune : null, options),
        }),
        tolerance: { r: EXACT },
        float32: { r: PRIOR_FLOAT32 },
      }),
      kernelCase({
        name: `gatePriorBackward ${options.mode}, ${label}`,
        kernel: "gatePriorBackward",
        inputs,
        call: (k, t) =>
          k.gatePriorBackward(t.logits, prune ? t.prune : null, options, t.dr),
        tolerance: { dlogits: EXACT, dprune: EXACT },
        float32: { dlogits: PRIOR_FLOAT32, dprune: PRIOR_FLOAT32 },
      }),
    );
    if (prune) {
      cases.push(kernelCase({
        name: `hardConcretePruneBackward, ${channels} channels`,
        kernel: "hardConcretePruneBackward",
        inputs,
        call: (k, t) => ({
          dprune: k.hardConcretePruneBackward(t.prune, t.noise, t.dz2),
        }),
        tolerance: { dprune: EXACT },
        float32: { dprune: GATES_FLOAT32 },
      }));
    }
  });
  cases.push(...handGateCases());
  return cases;
}

/**
 * Hard-concrete by hand (beta 2/3, gamma -0.1, zeta 1.1): with `u` = 0.5
 * the sample is `1.2 sigmoid(1.5 g) - 0.1` and `dz/dg = 1.8 s (1 - s)`.
 */
function handGateCases(): KernelCase[] {
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
  const s8 = sigmoid(1.5 * 0.4);
  const s2 = sigmoid(1.5 * (Math.log(9) - 1)); // g2 = -1, u = 0.9
  return [
    kernelCase({
      name: "hard-concrete samples and their gradients by hand",
      kernel: "hardConcreteSample",
      inputs: () => ({
        logits: given([0, 0.4, 6, -3]), // z16 clamped at 1; -3 stops z32
        prune: given([-1]),
        noise: given([0.5, 0.5, 0.9, 0.5, 0.9]),
        dchain: given([1, 2, 3, 4]),
        dz2: given([2]),
      }),
      call: (k, t) => ({
        ...k.hardConcreteSample(t.logits, t.prune, t.noise),
        dlogits: k.hardConcreteChainBackward(t.logits, t.noise, t.dchain),
        dprune: k.hardConcretePruneBackward(t.prune, t.noise, t.dz2),
      }),
      tolerance: { chain: EXACT, z2: EXACT, dlogits: EXACT, dprune: EXACT },
      float32: {
        chain: GATES_FLOAT32,
        z2: GATES_FLOAT32,
        dlogits: GATES_FLOAT32,
        dprune: GATES_FLOAT32,
      },
      expected: {
        chain: [0.5, 1.2 * s8 - 0.1, 1, 0],
        z2: [1.2 * s2 - 0.1],
        dlogits: [1 * 1.8 * 0.25, 2 * 1.8 * s8 * (1 - s8), 0, 0],
        dprune: [2 * 1.8 * s2 * (1 - s2)],
      },
    }),
    kernelCase({
      name: "evaluation gates by hand (an off gate stops the chain)",
      kernel: "hardConcreteGates",
      inputs: () => ({
        on: given([6, 6, -6, -6]),
        stopped: given([6, -1, 6, 6]), // 1 - q(-1) > 0.34: off
        prune: given([6, -6]),
      }),
      call: (k, t) => ({
        ...k.hardConcreteGates(t.on, t.prune),
        stopped: k.hardConcreteGates(t.stopped, null).chain,
      }),
      tolerance: { chain: EXACT, z2: EXACT, stopped: EXACT },
      expected: { chain: [1, 1, 0, 0], z2: [1, 0], stopped: [1, 0, 0, 0] },
    }),
    handPriorCase(),
  ];
}

/**
 * The gate prior by hand. All far off: R = 1. An 8-bit quantizer far on at MAC ratio 0.1 pays
 * 0.1 (2 + 4 + 8). With q4 = 1/2 and the rest far off, R = 1 + 4 r q4
 * and dR/dg4 = 4 r q4 (1 - q4) = r.
 */
function handPriorCase(): KernelCase {
  const q0 = (2 / 3) * Math.log(0.1 / 1.1); // q(g) = 1/2 here
  return kernelCase({
    name: "gate prior and its gradient by hand",
    kernel: "gatePrior",
    inputs: () => ({
      off: given([-50, -50, -50, -50]),
      on8: given([50, 50, -50, -50]),
      prune: given([50]),
      half: given([q0, -50, -50, -50]),
      dr: given([2]),
    }),
    call: (k, t) => ({
      off: k.gatePrior(t.off, null, { macRatio: 1, mode: "bop" }),
      on8: k.gatePrior(t.on8, t.prune, { macRatio: 0.1, mode: "bop" }),
      half: k.gatePrior(t.half, null, { macRatio: 0.5, mode: "bop" }),
      dhalf: k.gatePriorBackward(t.half, null, {
        macRatio: 0.5,
        mode: "bop",
      }, t.dr).dlogits,
    }),
    tolerance: { off: EXACT, on8: EXACT, half: EXACT, dhalf: EXACT },
    float32: {
      off: PRIOR_FLOAT32,
      on8: PRIOR_FLOAT32,
      half: PRIOR_FLOAT32,
      dhalf: PRIOR_FLOAT32,
    },
    expected: { off: [1], on8: [1.4], half: [2], dhalf: [1, 0, 0, 0] },
  });
}

/** Cases of the Adam and SGD updates. */
export function optimizerCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  [1, 17, 4099].forEach((count, i) => {
    const weightDecay = i % 2 === 0 ? 5e-4 : 0;
    cases.push(kernelCase({
      name: `adamUpdate, ${count} elements, weight decay ${weightDecay}`,
      kernel: "adamUpdate",
      inputs: () => ({
        theta: floats(500 + i, [count]),
        grad: floats(510 + i, [count], -0.1, 0.1),
        m: floats(520 + i, [count], -0.01, 0.01),
        v: floats(530 + i, [count], 0, 1e-4),
      }),
      call: (k, t) =>
        k.adamUpdate(t.theta, t.grad, t.m, t.v, {
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay,
          stepSize: 1e-3 / (1 - 0.9 ** 3),
          sqrtCorrection2: Math.sqrt(1 - 0.999 ** 3),
        }),
      tolerance: { theta: EXACT, m: EXACT, v: EXACT },
      float32: {
        theta: OPTIMIZER_FLOAT32,
        m: OPTIMIZER_FLOAT32,
        v: OPTIMIZER_FLOAT32,
      },
    }));
  });
  return [...cases, ...sgdCases(), ...handOptimizerCases()];
}

/** SGD without and with (Nesterov) momentum and weight decay. */
function sgdCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  const SGD: [number, boolean, number][] = [
    [0, false, 0],
    [0, false, 0.01],
    [0.9, false, 0],
    [0.9, true, 5e-4],
  ];
  SGD.forEach(([momentum, nesterov, weightDecay], i) => {
    cases.push(kernelCase({
      name: `sgdUpdate, momentum ${momentum}${
        nesterov ? " (Nesterov)" : ""
      }, weight decay ${weightDecay}`,
      kernel: "sgdUpdate",
      inputs: () => ({
        theta: floats(540 + i, [4099]),
        grad: floats(550 + i, [4099], -0.1, 0.1),
        b: floats(560 + i, [4099], -0.1, 0.1),
      }),
      call: (k, t) =>
        k.sgdUpdate(t.theta, t.grad, momentum > 0 ? t.b : null, {
          lr: 0.05,
          momentum,
          nesterov,
          weightDecay,
        }),
      tolerance: { theta: EXACT, momentum: EXACT },
      float32: { theta: OPTIMIZER_FLOAT32, momentum: OPTIMIZER_FLOAT32 },
    }));
  });
  return cases;
}

/** The first Adam step and two SGD steps by hand. */
function handOptimizerCases(): KernelCase[] {
  return [
    // The first bias-corrected Adam step moves by lr against the gradient's sign.
    kernelCase({
      name: "adamUpdate by hand: the first step",
      kernel: "adamUpdate",
      inputs: () => ({
        theta: given([1, -1]),
        grad: given([3, -0.5]),
        zeros: given([0, 0]),
      }),
      call: (k, t) =>
        k.adamUpdate(t.theta, t.grad, t.zeros, t.zeros, {
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0,
          stepSize: 0.1 / (1 - 0.9),
          sqrtCorrection2: Math.sqrt(1 - 0.999),
        }),
      tolerance: { theta: EXACT, m: EXACT, v: EXACT },
      float32: {
        theta: OPTIMIZER_FLOAT32,
        m: OPTIMIZER_FLOAT32,
        v: OPTIMIZER_FLOAT32,
      },
      expected: { theta: [0.9, -0.9], m: [0.3, -0.05], v: [0.009, 0.00025] },
    }),
    // Nesterov: b = 0.9 * 0 + 2; theta = 1 - 0.5 (2 + 0.9 * 2). Plain with
    // weight decay: 2 - 0.1 (1 + 0.5 * 2).
    kernelCase({
      name: "sgdUpdate by hand, Nesterov and plain with weight decay",
      kernel: "sgdUpdate",
      inputs: () => ({ one: given([1]), two: given([2]), zero: given([0]) }),
      call: (k, t) => {
        const nesterov = k.sgdUpdate(t.one, t.two, t.zero, {
          lr: 0.5,
          momentum: 0.9,
          nesterov: true,
          weightDecay: 0,
        });
        const plain = k.sgdUpdate(t.two, t.one, null, {
          lr: 0.1,
          momentum: 0,
          nesterov: false,
          weightDecay: 0.5,
        });
        return {
          theta: nesterov.theta,
          momentum: nesterov.momentum,
          plain: plain.theta,
          none: plain.momentum,
        };
      },
      tolerance: { theta: EXACT, momentum: EXACT, plain: EXACT },
      float32: {
        theta: OPTIMIZER_FLOAT32,
        momentum: OPTIMIZER_FLOAT32,
        plain: OPTIMIZER_FLOAT32,
      },
      expected: { theta: [-0.9], momentum: [2], plain: [1.8] },
    }),
  ];
}
