/**
 * `dense` and `conv2d` on the WASM GEMM path (`withGemm`) against their
 * reference paths (forward and every VJP), and `WasmBackend.gemm` with 1 and
 * 2 threads against `gemmReference` for every transpose.
 */

import assert from "node:assert/strict";
import {
  conv2d,
  createWasmBackend,
  currentGemm,
  dense,
  type GemmFn,
  gemmReference,
  type GemmShape,
  mul,
  sum,
  Tensor,
  valueAndGrad,
  wasmGemm,
  withGemm,
} from "../mod.ts";
import { assertBitwise, randomValues } from "./helpers.ts";

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

interface Pass {
  y: Float32Array;
  grads: Record<string, Float32Array>;
}

/** Forward output and the VJP of cotangent `g` for every input of `op`. */
function run(
  op: Op,
  inputs: Record<string, Tensor>,
  g: Tensor,
): Pass {
  let y: Tensor | undefined;
  const f = valueAndGrad((p: Record<string, Tensor>) => {
    y = op(p.x, p.w, p.b);
    return sum(mul(y, g));
  });
  const { grads } = f(inputs);
  const out: Record<string, Float32Array> = {};
  for (const key of Object.keys(inputs)) {
    out[key] = grads[key].toFloat32Array();
  }
  return { y: y!.toFloat32Array(), grads: out };
}

const abs = (t: Tensor) =>
  Tensor.from(t.toFloat32Array().map(Math.abs), t.shape);

/**
 * Runs `op` on the reference path, on `gemm`'s path, and on the reference
 * path with absolute values (the magnitude sums every result is compared
 * against).
 */
function compare(
  gemm: GemmFn,
  op: Op,
  inputs: Record<string, Tensor>,
  outShape: readonly number[],
  seed: number,
  what: string,
): void {
  const g = Tensor.from(
    randomValues(seed, outShape.reduce((a, b) => a * b, 1)),
    outShape,
  );
  const want = run(op, inputs, g);
  const got = withGemm(gemm, () => run(op, inputs, g));
  const absInputs: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(inputs)) absInputs[k] = abs(v);
  const scale = run(op, absInputs, abs(g));
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

function tensor(seed: number, shape: number[]): Tensor {
  return Tensor.from(
    randomValues(seed, shape.reduce((a, b) => a * b, 1)),
    shape,
  );
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
  const inputs: Record<string, Tensor> = {
    x: tensor(seed, [k.n, k.c, k.h, k.w]),
    w: tensor(seed + 1, [k.o, k.c / (k.groups ?? 1), k.kh, k.kw]),
  };
  if (k.bias) inputs.b = tensor(seed + 2, [k.o]);
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

async function withBackends(
  body: (gemm: GemmFn, label: string) => void,
): Promise<void> {
  body(wasmGemm, "wasmGemm");
  // parallelThreshold 1 splits even the small products over both threads.
  const wasm = await createWasmBackend({ threads: 2, parallelThreshold: 1 });
  try {
    body(wasm.gemm, "2 threads");
  } finally {
    wasm.dispose();
  }
}

Deno.test("dense on the WASM GEMM matches the reference, forward and VJPs", async () => {
  await withBackends((gemm, label) => {
    let seed = 100;
    for (const d of denseCases) {
      const inputs: Record<string, Tensor> = {
        x: tensor(seed++, [d.n, d.i]),
        w: tensor(seed++, [d.o, d.i]),
      };
      if (d.bias) inputs.b = tensor(seed++, [d.o]);
      compare(
        gemm,
        dense,
        inputs,
        [d.n, d.o],
        seed++,
        `${label} dense ${JSON.stringify(d)}`,
      );
    }
  });
});

Deno.test("conv2d on the WASM GEMM (im2col) matches the direct loop, forward and VJPs", async () => {
  await withBackends((gemm, label) => {
    let seed = 200;
    for (const k of convCases) {
      const { inputs, op, outShape } = convInputs(k, seed);
      seed += 10;
      compare(gemm, op, inputs, outShape, seed++, `${label} conv2d ${k.name}`);
    }
  });
});

Deno.test("conv2d with groups > 1 keeps the direct loop inside withGemm", () => {
  let seed = 300;
  for (const k of groupCases) {
    const { inputs, op, outShape } = convInputs(k, seed);
    seed += 10;
    const g = tensor(seed++, outShape);
    const want = run(op, inputs, g);
    let calls = 0;
    const counting: GemmFn = (shape, a, b) => {
      calls++;
      return wasmGemm(shape, a, b);
    };
    const got = withGemm(counting, () => run(op, inputs, g));
    assert.equal(calls, 0, k.name);
    assertBitwise(got.y, want.y, `${k.name} forward`);
    for (const key of Object.keys(inputs)) {
      assertBitwise(got.grads[key], want.grads[key], `${k.name} d${key}`);
    }
  }
});

Deno.test("withGemm scopes nest, restore on throw, and VJPs keep the forward's GEMM", () => {
  assert.equal(currentGemm(), null);
  const seen: string[] = [];
  const tagged = (tag: string): GemmFn => (shape, a, b) => {
    seen.push(tag);
    return gemmReference(shape, a, b);
  };
  const outer = tagged("outer");
  withGemm(outer, () => {
    assert.equal(currentGemm(), outer);
    withGemm(null, () => assert.equal(currentGemm(), null));
    assert.throws(() =>
      withGemm(tagged("inner"), () => {
        throw new Error("boom");
      }), /boom/);
    assert.equal(currentGemm(), outer);
  });
  assert.equal(currentGemm(), null);
  // A tape recorded inside the scope runs its VJPs (after the forward) on the same GEMM.
  const x = tensor(1, [2, 3]);
  const w = tensor(2, [4, 3]);
  const f = valueAndGrad((p: { w: Tensor }) =>
    withGemm(tagged("tape"), () => sum(dense(x, p.w)))
  );
  f({ w });
  // forward and grad-weight; x is not a parameter, so its gradient is skipped
  assert.deepEqual(seen, ["tape", "tape"]);
});

/** Checks a backend's `gemm` against `gemmReference` (tolerance 1e-5 of the magnitude sums). */
function checkGemm(gemm: GemmFn, shape: GemmShape, seed: number): void {
  const { m, n, k } = shape;
  const a = randomValues(seed, m * k);
  const b = randomValues(seed + 1, k * n);
  const want = gemmReference(shape, a, b);
  const scale = gemmReference(shape, a.map(Math.abs), b.map(Math.abs));
  assertScaled(
    gemm(shape, a, b),
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
    Deno.test(`WasmBackend.gemm (${threads} threads, parallelThreshold ${parallelThreshold}) matches gemmReference for every transpose`, async () => {
      using wasm = await createWasmBackend({ threads, parallelThreshold });
      let seed = 1000;
      for (const t of transposes) {
        for (const [m, n, k] of gemmSizes) {
          checkGemm(wasm.gemm, { m, n, k, ...t }, seed += 2);
        }
      }
      if (parallelThreshold === undefined) {
        // Above ~2 MFLOP per thread: the default threshold splits too.
        for (const t of transposes) {
          checkGemm(wasm.gemm, { m: 200, n: 48, k: 150, ...t }, seed += 2);
          checkGemm(wasm.gemm, { m: 40, n: 300, k: 150, ...t }, seed += 2);
        }
      }
    });
  }
}

Deno.test("WasmBackend.gemm: empty shapes, errors, resident buffers and memory reuse", async () => {
  using wasm = await createWasmBackend({ threads: 2, parallelThreshold: 1 });
  assert.deepEqual(
    wasm.gemm({ m: 2, n: 3, k: 0 }, new Float32Array(0), new Float32Array(0)),
    new Float32Array(6),
  );
  assert.equal(
    wasm.gemm({ m: 0, n: 3, k: 2 }, new Float32Array(0), new Float32Array(6))
      .length,
    0,
  );
  assert.throws(
    () =>
      wasm.gemm({ m: 2, n: 2, k: 2 }, new Float32Array(3), new Float32Array(4)),
    RangeError,
  );
  assert.throws(
    () =>
      wasm.gemm(
        { m: 1.5, n: 2, k: 2 },
        new Float32Array(3),
        new Float32Array(4),
      ),
    RangeError,
  );
  const resident = wasm.alloc(5);
  resident.view().set([1, 2, 3, 4, 5]);
  const shape = { m: 300, n: 70, k: 90, transB: true };
  const a = randomValues(1, 300 * 90);
  const b = randomValues(2, 70 * 90);
  const first = wasm.gemm(shape, a, b);
  const next = wasm.alloc(1);
  assert.equal(next.byteOffset, resident.byteOffset + 64, "temporaries freed");
  const memory = (wasm as unknown as { memory: WebAssembly.Memory }).memory;
  const bytes = memory.buffer.byteLength;
  for (let i = 0; i < 3; i++) {
    assertBitwise(wasm.gemm(shape, a, b), first, "repeatable");
  }
  assert.equal(memory.buffer.byteLength, bytes, "no growth on repeated calls");
  assert.deepEqual(Array.from(resident.view()), [1, 2, 3, 4, 5]);
  wasm.dispose();
  assert.throws(() => wasm.gemm(shape, a, b), /disposed/);
});
