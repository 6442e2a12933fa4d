/**
 * The differentiable ops on the WASM device against the same ops on the
 * reference device (forward and every gradient), the optimizers there, and
 * three training steps of a small conv net; and that an op runs the kernels
 * of its inputs' device, forward and backward. Each kernel on its own, on
 * every device, is in the parity table (`../_kernel_cases.ts`).
 */

import assert from "node:assert/strict";
import { referenceDevice } from "../../core/reference/device.ts";
import { type Device, device } from "../../core/device.ts";
import { valueAndGrad } from "../../core/autodiff.ts";
import { initGraph, type ModelGraph, runGraph } from "../../core/graph.ts";
import type { Kernels } from "../../core/kernels.ts";
import { batchNorm } from "../../core/ops/batchnorm.ts";
import { conv2d } from "../../core/ops/conv2d.ts";
import { dense } from "../../core/ops/dense.ts";
import { add, mul, relu, relu6, sum } from "../../core/ops/elementwise.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { globalAvgPool, maxPool2d } from "../../core/ops/pool.ts";
import { adam, type Optimizer, sgd } from "../../core/optim.ts";
import { randomKey } from "../../core/rng.ts";
import type { Tensor } from "../../core/tensor.ts";
import { assertBitwise, randomTensor, randomValues } from "../_fixtures.ts";
import { assertWithin, EXACT, GEMM, type Tolerance } from "../_kernel_case.ts";

/** Runs `body` on a two-thread WASM device that splits every call. */
async function withWasm(body: (dev: Device) => Promise<void>): Promise<void> {
  const dev = await device("wasm", { threads: 2, parallelThreshold: 1 });
  try {
    await body(dev);
  } finally {
    dev.dispose();
  }
}

/** Forward output and every parameter gradient of `sum(f(params) * r)`. */
async function outputAndGrads(
  f: (p: Record<string, Tensor>) => Tensor,
  params: Record<string, Tensor>,
  seed: number,
  dev: Device,
): Promise<Float32Array[]> {
  let y: Tensor | undefined;
  const { grads } = valueAndGrad((p: Record<string, Tensor>) => {
    y = f(p);
    return sum(mul(y, randomTensor(seed, y.shape, -1, 1, dev)));
  })(params);
  const tensors = [y!, ...Object.keys(params).map((key) => grads[key])];
  for (const t of tensors) assert.equal(t.device, dev);
  return await Promise.all(
    tensors.map(async (t) => await t.read()),
  ) as Float32Array[];
}

const OPS: readonly {
  name: string;
  shapes: Record<string, [number[], number, number]>;
  f: (p: Record<string, Tensor>) => Tensor;
  tolerance: Tolerance;
}[] = [
  {
    name: "relu",
    shapes: { x: [[3, 5], -1, 1] },
    f: (p) => relu(p.x),
    tolerance: EXACT,
  },
  {
    name: "relu6",
    shapes: { x: [[2, 9], -8, 8] },
    f: (p) => relu6(p.x),
    tolerance: EXACT,
  },
  {
    name: "maxPool2d",
    shapes: { x: [[2, 3, 9, 8], -1, 1] },
    f: (p) => maxPool2d(p.x, 2),
    tolerance: EXACT,
  },
  {
    name: "globalAvgPool",
    shapes: { x: [[1, 3, 5, 5], -1, 1] },
    f: (p) => globalAvgPool(p.x),
    tolerance: { rtol: 1e-6, atol: 1e-7 },
  },
  {
    name: "batchNorm (train)",
    shapes: { x: [[3, 4, 3, 3], -1, 1], g: [[4], 0.5, 2], b: [[4], -1, 1] },
    f: (p) => batchNorm(p.x, p.g, p.b, { mode: "train" }).output,
    tolerance: { rtol: 1e-5, atol: 1e-6 },
  },
  {
    name: "softmaxCrossEntropy",
    shapes: { z: [[5, 7], -4, 4] },
    f: (p) => softmaxCrossEntropy(p.z, [0, 6, 3, 3, 1]),
    tolerance: { rtol: 1e-6, atol: 1e-9 },
  },
  {
    name: "dense with bias",
    shapes: { x: [[3, 7], -1, 1], w: [[5, 7], -1, 1], b: [[5], -1, 1] },
    f: (p) => dense(p.x, p.w, p.b),
    tolerance: GEMM,
  },
  {
    name: "conv2d with bias, stride and padding",
    shapes: {
      x: [[2, 3, 8, 7], -1, 1],
      w: [[4, 3, 3, 3], -1, 1],
      b: [[4], -1, 1],
    },
    f: (p) => conv2d(p.x, p.w, p.b, { stride: 2, padding: 1 }),
    tolerance: GEMM,
  },
  {
    name: "depthwise conv2d",
    shapes: { x: [[2, 3, 6, 6], -1, 1], w: [[3, 1, 3, 3], -1, 1] },
    f: (p) => conv2d(p.x, p.w, undefined, { padding: 1, groups: 3 }),
    tolerance: GEMM,
  },
];

Deno.test("every op gives the same output and gradients on the wasm device as on the reference device", () =>
  withWasm(async (dev) => {
    for (const [index, { name, shapes, f, tolerance }] of OPS.entries()) {
      const params = (on: Device) =>
        Object.fromEntries(
          Object.entries(shapes).map(([key, [shape, lo, hi]], k) => [
            key,
            randomTensor(10 * index + k, shape, lo, hi, on),
          ]),
        );
      const want = await outputAndGrads(
        f,
        params(referenceDevice),
        99,
        referenceDevice,
      );
      const got = await outputAndGrads(f, params(dev), 99, dev);
      assert.equal(got.length, want.length);
      got.forEach((values, i) =>
        assertWithin(
          values,
          want[i],
          tolerance,
          `${name}, ${i === 0 ? "output" : `gradient ${i}`}`,
        )
      );
    }
  }));

Deno.test("an op runs the kernels of its inputs' device, forward and backward", async () => {
  const kernels = referenceDevice.kernels as {
    -readonly [K in keyof Kernels]: Kernels[K];
  };
  const { activation, activationBackward } = kernels;
  const calls: string[] = [];
  kernels.activation = (kind, x) => {
    calls.push(`activation ${kind}`);
    return activation(kind, x);
  };
  kernels.activationBackward = (kind, x, dy) => {
    calls.push(`activationBackward ${kind}`);
    return activationBackward(kind, x, dy);
  };
  try {
    const x = referenceDevice.upload([-1, 2], [2]);
    const { grads } = valueAndGrad((p: { x: Tensor }) => sum(relu(p.x)))({ x });
    assert.deepEqual(calls, ["activation relu", "activationBackward relu"]);
    assert.deepEqual([...await grads.x.read()], [0, 1]);
  } finally {
    Object.assign(kernels, { activation, activationBackward });
  }
  await withWasm(async (dev) => {
    const x = dev.upload([-1, 2], [2]);
    const f = valueAndGrad((p: { x: Tensor }) => sum(relu6(p.x)));
    const { value, grads } = f({ x });
    assert.equal(value.device, dev);
    assert.equal(grads.x.device, dev);
    assert.deepEqual([...await grads.x.read()], [0, 1]);
  });
  assert.deepEqual(calls, ["activation relu", "activationBackward relu"]);
});

Deno.test("kernels reject a tensor of another device and sizes that do not fit", () =>
  withWasm(async (dev) => {
    const onReference = referenceDevice.upload([1, 2], [2]);
    const onWasm = dev.upload([3, 4], [2]);
    assert.throws(
      () => add(onReference, onWasm),
      /A tensor on .* was given to the reference device: move it with tensor.to\(device\)/,
    );
    const moved = await onWasm.to(referenceDevice);
    assert.deepEqual([...await add(moved, onReference).read()], [4, 6]);
    const a = referenceDevice.upload([1, 2, 3, 4, 5, 6], [2, 3]);
    assert.throws(
      () =>
        referenceDevice.kernels.gemm(a, a, {
          m: 2,
          n: 2,
          k: 2,
          transA: false,
          transB: false,
        }),
      /A has 6 elements \(expected 4\)/,
    );
  }));

Deno.test("adam and sgd on the wasm device give the reference device's bits", () =>
  withWasm(async (dev) => {
    const optimizers: [string, Optimizer][] = [
      ["adam", adam({ lr: 1e-2, weightDecay: 1e-3 })],
      [
        "sgd",
        sgd({ lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-3 }),
      ],
    ];
    for (const [name, optimizer] of optimizers) {
      const run = async (on: Device) => {
        const tensor = (seed: number, size: number) =>
          randomTensor(seed, [size], -1, 1, on);
        let params: Record<string, Tensor> = {
          w: tensor(1, 37),
          b: tensor(2, 5),
        };
        const grads = { w: tensor(3, 37), b: tensor(4, 5) };
        let state = optimizer.init(params);
        const trajectory: Float32Array[] = [];
        for (let step = 0; step < 3; step++) {
          ({ params, state } = optimizer.update(params, grads, state));
          for (
            const t of [params.w, params.b, ...Object.values(state.slots.w)]
          ) {
            assert.equal(t.device, on);
            trajectory.push(await t.read() as Float32Array);
          }
        }
        return trajectory;
      };
      const want = await run(referenceDevice);
      const got = await run(dev);
      got.forEach((values, i) =>
        assertBitwise(values, want[i], `${name} ${i}`)
      );
    }
  }));

const SMALL_NET: ModelGraph = {
  name: "small conv net",
  inputShape: [1, 8, 8],
  nodes: [
    {
      op: "conv",
      name: "c1",
      input: "input",
      outChannels: 3,
      kernel: 3,
      batchNorm: true,
      activation: "relu",
    },
    { op: "maxpool", name: "p1", input: "c1", kernel: 2 },
    { op: "flatten", name: "f", input: "p1" },
    {
      op: "dense",
      name: "fc",
      input: "f",
      outFeatures: 4,
      activation: "relu6",
    },
  ],
};

/**
 * Three SGD steps of {@link SMALL_NET} on `dev`: the losses, every
 * parameter, the running variance. (SGD, not Adam: the conv bias before
 * batch norm has a gradient of rounding noise, which Adam would scale up to
 * full steps.)
 */
async function trainSmallNet(dev: Device): Promise<Float32Array[]> {
  let { params, stats } = initGraph(SMALL_NET, randomKey(0), dev);
  const images = dev.upload(randomValues(5, 6 * 64), [6, 1, 8, 8]);
  const labels = dev.upload(new Int32Array([0, 1, 2, 3, 1, 2]), [6], "int32");
  const optimizer = sgd({ lr: 0.1, momentum: 0.9 });
  let state = optimizer.init(params);
  const step = valueAndGrad(
    (p: typeof params) => {
      const r = runGraph(SMALL_NET, p, images, { mode: "train", stats });
      return [softmaxCrossEntropy(r.output, labels), r.stats] as const;
    },
    { aux: true },
  );
  const out: Float32Array[] = [];
  for (let i = 0; i < 3; i++) {
    const { value, grads, aux } = step(params);
    out.push(await value.read() as Float32Array);
    stats = aux;
    ({ params, state } = optimizer.update(params, grads, state));
  }
  for (const name of Object.keys(params).sort()) {
    out.push(await params[name].read() as Float32Array);
  }
  out.push(await stats.c1.variance.read() as Float32Array);
  return out;
}

Deno.test("three training steps of a small conv net on the wasm device track the reference device", () =>
  withWasm(async (dev) => {
    const want = await trainSmallNet(referenceDevice);
    const got = await trainSmallNet(dev);
    assert.equal(got.length, want.length);
    got.forEach((values, i) =>
      assertWithin(values, want[i], { rtol: 1e-4, atol: 1e-5 }, `value ${i}`)
    );
  }));
