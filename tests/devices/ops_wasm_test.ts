/**
 * `dense` and `conv2d` on the WASM device (GEMM path) against the reference
 * device (forward and every VJP), and the WASM device's GEMM with 1 and 2
 * threads against `gemmReference` for every transpose.
 */

import assert from "node:assert/strict";
import { createWasmDevice, type WasmDevice } from "../../asm/device.ts";
import { HEAP_ALIGN } from "../../asm/heap.ts";
import { valueAndGrad } from "../../core/autodiff.ts";
import type { Device } from "../../core/device.ts";
import type { GemmShape, Kernels } from "../../core/kernels.ts";
import { conv2d } from "../../core/ops/conv2d.ts";
import { dense } from "../../core/ops/dense.ts";
import { mul, sum } from "../../core/ops/elementwise.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { gemmReference } from "../../core/reference/matrix.ts";
import type { Tensor } from "../../core/tensor.ts";
import { assertBitwise, randomValues } from "../_fixtures.ts";

/** Asserts `|got - want| <= rtol * scale` elementwise (scale: sums of magnitudes). */
function assertScaled(
  got: Float32Array,
  want: Float32Array,
  scale: Float32Array,
  what: string,
  rtol = 1e-4,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= rtol * scale[i] + 1e-30)) {
      assert.fail(
        `${what}: element ${i} is ${got[i]}, expected ${want[i]} (scale ${
          scale[i]
        })`,
      );
    }
  }
}

type Op = (x: Tensor, w: Tensor, b?: Tensor) => Tensor;

/** Host values and a shape: an op input, uploaded to each device in turn. */
interface Input {
  values: Float32Array;
  shape: number[];
}

interface Pass {
  y: Float32Array;
  grads: Record<string, Float32Array>;
  /** The devices the output and every gradient were on. */
  devices: Device[];
}

/** Forward output and the VJP of cotangent `g` for every input of `op`, on `dev`. */
async function run(
  dev: Device,
  op: Op,
  inputs: Record<string, Input>,
  g: Input,
): Promise<Pass> {
  const params: Record<string, Tensor> = {};
  for (const [key, v] of Object.entries(inputs)) {
    params[key] = dev.upload(v.values, v.shape);
  }
  const cotangent = dev.upload(g.values, g.shape);
  let y: Tensor | undefined;
  const f = valueAndGrad((p: Record<string, Tensor>) => {
    y = op(p.x, p.w, p.b);
    return sum(mul(y, cotangent));
  });
  const { grads } = f(params);
  const out: Record<string, Float32Array> = {};
  const devices = [y!.device];
  for (const key of Object.keys(inputs)) {
    out[key] = await grads[key].read() as Float32Array;
    devices.push(grads[key].device);
  }
  return { y: await y!.read() as Float32Array, grads: out, devices };
}

const abs = (v: Input): Input => ({
  values: v.values.map(Math.abs),
  shape: v.shape,
});

/**
 * Runs `op` on the reference device, on `dev`, and on the reference device
 * with absolute values (the magnitude sums every result is compared
 * against).
 */
async function compare(
  dev: WasmDevice,
  op: Op,
  inputs: Record<string, Input>,
  outShape: number[],
  seed: number,
  what: string,
): Promise<void> {
  const g = input(seed, outShape);
  const want = await run(referenceDevice, op, inputs, g);
  const got = await run(dev, op, inputs, g);
  assert.ok(
    got.devices.every((d) => d === dev),
    `${what}: stays on ${dev.name}`,
  );
  const absInputs: Record<string, Input> = {};
  for (const [k, v] of Object.entries(inputs)) absInputs[k] = abs(v);
  const scale = await run(referenceDevice, op, absInputs, abs(g));
  assertScaled(got.y, want.y, scale.y, `${what} forward`);
  for (const key of Object.keys(inputs)) {
    assertScaled(
      got.grads[key],
      want.grads[key],
      scale.grads[key],
      `${what} d${key}`,
    );
  }
}

function input(seed: number, shape: number[]): Input {
  return {
    values: randomValues(seed, shape.reduce((a, b) => a * b, 1)),
    shape,
  };
}

interface ConvCase {
  name: string;
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  kh: number;
  kw: number;
  stride?: number;
  padding?: number;
  groups?: number;
  bias: boolean;
}

const convCases: ConvCase[] = [
  { name: "3x3", n: 2, c: 3, h: 7, w: 6, o: 5, kh: 3, kw: 3, bias: true },
  {
    name: "batch 1, stride 2, padding 1, 3x2 kernel",
    n: 1,
    c: 2,
    h: 9,
    w: 8,
    o: 4,
    kh: 3,
    kw: 2,
    stride: 2,
    padding: 1,
    bias: true,
  },
  {
    name: "stride 3 > kernel 2, padding 2 (untouched pixels)",
    n: 2,
    c: 3,
    h: 11,
    w: 10,
    o: 7,
    kh: 2,
    kw: 2,
    stride: 3,
    padding: 2,
    bias: false,
  },
  {
    name: "LeNet conv1 shape, padding 2",
    n: 3,
    c: 1,
    h: 28,
    w: 28,
    o: 6,
    kh: 5,
    kw: 5,
    padding: 2,
    bias: true,
  },
  {
    name: "LeNet conv2 shape",
    n: 2,
    c: 6,
    h: 14,
    w: 14,
    o: 16,
    kh: 5,
    kw: 5,
    bias: true,
  },
  { name: "1x1", n: 3, c: 5, h: 4, w: 3, o: 13, kh: 1, kw: 1, bias: true },
  {
    name: "stride 2, no padding, 3x3 kernel on 7x6",
    n: 2,
    c: 3,
    h: 7,
    w: 6,
    o: 5,
    kh: 3,
    kw: 3,
    stride: 2,
    bias: true,
  },
  {
    name: "kernel as large as the input",
    n: 2,
    c: 2,
    h: 5,
    w: 5,
    o: 3,
    kh: 5,
    kw: 5,
    bias: false,
  },
];

const groupCases: ConvCase[] = [
  {
    name: "groups 2",
    n: 2,
    c: 4,
    h: 6,
    w: 5,
    o: 6,
    kh: 3,
    kw: 3,
    padding: 1,
    groups: 2,
    bias: true,
  },
  {
    name: "depthwise",
    n: 1,
    c: 3,
    h: 5,
    w: 5,
    o: 3,
    kh: 3,
    kw: 3,
    stride: 2,
    groups: 3,
    bias: false,
  },
];

function convInputs(k: ConvCase, seed: number) {
  const inputs: Record<string, Input> = {
    x: input(seed, [k.n, k.c, k.h, k.w]),
    w: input(seed + 1, [k.o, k.c / (k.groups ?? 1), k.kh, k.kw]),
  };
  if (k.bias) inputs.b = input(seed + 2, [k.o]);
  const options = {
    stride: k.stride,
    padding: k.padding,
    groups: k.groups,
  };
  const op: Op = (x, w, b) => conv2d(x, w, b, options);
  const s = k.stride ?? 1;
  const p = k.padding ?? 0;
  const oh = Math.floor((k.h + 2 * p - k.kh) / s) + 1;
  const ow = Math.floor((k.w + 2 * p - k.kw) / s) + 1;
  return { inputs, op, outShape: [k.n, k.o, oh, ow] };
}

const denseCases = [
  { n: 1, i: 1, o: 1, bias: true },
  { n: 5, i: 7, o: 3, bias: false },
  { n: 33, i: 17, o: 29, bias: true },
  { n: 128, i: 100, o: 10, bias: true },
];

/** One thread, and two threads splitting even the small products. */
async function withDevices(
  body: (dev: WasmDevice, label: string) => Promise<void>,
): Promise<void> {
  {
    using dev = await createWasmDevice({ threads: 1 });
    await body(dev, "1 thread");
  }
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  await body(dev, "2 threads");
}

Deno.test("dense on the WASM device matches the reference, forward and VJPs", async () => {
  await withDevices(async (dev, label) => {
    let seed = 100;
    for (const d of denseCases) {
      const inputs: Record<string, Input> = {
        x: input(seed++, [d.n, d.i]),
        w: input(seed++, [d.o, d.i]),
      };
      if (d.bias) inputs.b = input(seed++, [d.o]);
      await compare(
        dev,
        dense,
        inputs,
        [d.n, d.o],
        seed++,
        `${label} dense ${JSON.stringify(d)}`,
      );
    }
  });
});

Deno.test("conv2d on the WASM device (im2col + GEMM) matches the direct loop, forward and VJPs", async () => {
  await withDevices(async (dev, label) => {
    let seed = 200;
    for (const k of convCases) {
      const { inputs, op, outShape } = convInputs(k, seed);
      seed += 10;
      await compare(
        dev,
        op,
        inputs,
        outShape,
        seed++,
        `${label} conv2d ${k.name}`,
      );
    }
  });
});

Deno.test("conv2d with groups > 1 on the WASM device is the reference's direct loop, bit for bit", async () => {
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  let seed = 300;
  for (const k of groupCases) {
    const { inputs, op, outShape } = convInputs(k, seed);
    seed += 10;
    const g = input(seed++, outShape);
    const want = await run(referenceDevice, op, inputs, g);
    const got = await run(dev, op, inputs, g);
    assertBitwise(got.y, want.y, `${k.name} forward`);
    for (const key of Object.keys(inputs)) {
      assertBitwise(got.grads[key], want.grads[key], `${k.name} d${key}`);
    }
  }
});

Deno.test("a tape recorded on the WASM device runs its VJPs there, only for parameters", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  const x = dev.upload(randomValues(1, 6), [2, 3]);
  const w = dev.upload(randomValues(2, 12), [4, 3]);
  const kernels = dev.kernels as { gemm: Kernels["gemm"] };
  const gemm = kernels.gemm;
  let calls = 0;
  kernels.gemm = (a, b, shape) => {
    calls++;
    return gemm(a, b, shape);
  };
  const f = valueAndGrad((p: { w: Tensor }) => sum(dense(x, p.w)));
  const { value, grads } = f({ w });
  kernels.gemm = gemm;
  // Forward and grad-weight; x is not a parameter, so its gradient is skipped.
  assert.equal(calls, 2);
  assert.equal(value.device, dev);
  assert.equal(grads.w.device, dev);
  // d sum(x W^T) / dW[o, i] = sum_n x[n, i], for every output o.
  const xs = await x.read();
  const dw = await grads.w.read();
  for (let o = 0; o < 4; o++) {
    for (let i = 0; i < 3; i++) {
      assert.equal(dw[o * 3 + i], Math.fround(xs[i] + xs[3 + i]));
    }
  }
});

/** Checks the device's GEMM against `gemmReference` (tolerance 1e-5 of the magnitude sums). */
async function checkGemm(
  dev: WasmDevice,
  shape: GemmShape,
  seed: number,
): Promise<void> {
  const { m, n, k } = shape;
  const a = randomValues(seed, m * k);
  const b = randomValues(seed + 1, k * n);
  const want = gemmReference(shape, a, b);
  const scale = gemmReference(shape, a.map(Math.abs), b.map(Math.abs));
  const got = dev.kernels.gemm(
    dev.upload(a, [m * k]),
    dev.upload(b, [k * n]),
    shape,
  );
  assertScaled(
    await got.read() as Float32Array,
    want,
    scale,
    `gemm ${JSON.stringify(shape)}`,
    1e-5,
  );
}

const transposes = [
  { transA: false, transB: false },
  { transA: false, transB: true },
  { transA: true, transB: false },
  { transA: true, transB: true },
];

const gemmSizes: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [4, 12, 8],
  [37, 5, 19], // rows split (m >= n)
  [5, 37, 19], // columns split
  [13, 29, 300], // k > one k-block
  [64, 30, 25],
  [30, 64, 25],
  [3, 1100, 9], // more than one column block
];

for (const threads of [1, 2]) {
  for (const parallelThreshold of [1, undefined]) {
    Deno.test(`gemm (${threads} threads, parallelThreshold ${parallelThreshold}) matches gemmReference for every transpose`, async () => {
      using dev = await createWasmDevice({ threads, parallelThreshold });
      let seed = 1000;
      for (const t of transposes) {
        for (const [m, n, k] of gemmSizes) {
          await checkGemm(
            dev,
            { m, n, k, ...t, transA: false, transB: false },
            seed += 2,
          );
        }
      }
      if (parallelThreshold === undefined) {
        // Above ~2 MFLOP per thread: the default threshold splits too.
        for (const t of transposes) {
          await checkGemm(dev, {
            m: 200,
            n: 48,
            k: 150,
            ...t,
            transA: false,
            transB: false,
          }, seed += 2);
          await checkGemm(dev, {
            m: 40,
            n: 300,
            k: 150,
            ...t,
            transA: false,
            transB: false,
          }, seed += 2);
        }
      }
    });
  }
}

Deno.test("gemm: empty shapes, errors, scratch freed, memory reused, disposed device", async () => {
  const dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  const k = dev.kernels;
  const none = dev.zeros([0]);
  assert.deepEqual(
    await k.gemm(none, none, { m: 2, n: 3, k: 0, transA: false, transB: false })
      .read(),
    new Float32Array(6),
  );
  assert.equal(
    k.gemm(none, dev.zeros([6]), {
      m: 0,
      n: 3,
      k: 2,
      transA: false,
      transB: false,
    }).size,
    0,
  );
  assert.throws(
    () =>
      k.gemm(dev.zeros([3]), dev.zeros([4]), {
        m: 2,
        n: 2,
        k: 2,
        transA: false,
        transB: false,
      }),
    RangeError,
  );
  assert.throws(
    () =>
      k.gemm(dev.zeros([3]), dev.zeros([4]), {
        m: 1.5,
        n: 2,
        k: 2,
        transA: false,
        transB: false,
      }),
    RangeError,
  );
  const resident = dev.upload([1, 2, 3, 4, 5], [5]);
  const shape = { m: 300, n: 70, k: 90, transB: true, transA: false };
  const a = dev.upload(randomValues(1, 300 * 90), [300 * 90]);
  const b = dev.upload(randomValues(2, 70 * 90), [70 * 90]);
  const inUse = dev.bytesInUse;
  const first = k.gemm(a, b, shape);
  assert.equal(
    dev.bytesInUse,
    inUse + Math.ceil(300 * 70 * 4 / HEAP_ALIGN) * HEAP_ALIGN,
    "only the product stays: the packing scratch is freed",
  );
  const expected = await first.read();
  const bytes = dev.memory.buffer.byteLength;
  for (let i = 0; i < 3; i++) {
    const c = k.gemm(a, b, shape);
    assertBitwise(await c.read(), expected, "repeatable");
    dev.free(c);
  }
  assert.equal(
    dev.memory.buffer.byteLength,
    bytes,
    "no growth on repeated calls",
  );
  assert.deepEqual([...await resident.read()], [1, 2, 3, 4, 5]);
  dev.dispose();
  assert.throws(() => k.gemm(a, b, shape), /disposed/);
});
