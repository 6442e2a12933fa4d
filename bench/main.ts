/**
 * `deno task bench`: quantizer forward + backward throughput of every backend
 * on 1M and 16M float32 elements, with the reference backend as the baseline
 * and a WASM copy kernel (read x, write y) as the memory-bandwidth yardstick,
 * all measured in the same run.
 *
 * Then a GEMM table: GFLOP/s of the three products of a training step
 * (forward `Y = X W^T`, grad-input `dX = dY W`, grad-weight `dW = dY^T X`)
 * for LeNet-5's layers at batch 128 (convolutions as their im2col GEMMs), on
 * `WasmBackend.gemm` with each thread count, timed with the copies in and
 * out included (what `dense` and `conv2d` pay), and `gemmReference` as the
 * baseline on the same product with its largest dimension cut down to at
 * most 16 MFLOP (one timed repetition after a warm-up).
 *
 * Then a per-op table: each training op's kernel (`OpKernels`) at LeNet-5
 * batch-128 shapes, the plain-TypeScript reference against
 * `WasmBackend.kernels` with each thread count (copies in and out
 * included), median times and ratios from the same run.
 *
 * Then the float LeNet-5 training step (forward, backward, Adam) per
 * thread count, with the WASM GEMM alone and with the GEMM plus the op
 * kernels. Last, Bayesian Bits training and evaluation samples/s next to
 * float training and evaluation measured in the same run.
 *
 * Options: `--sizes 1M,16M`, `--threads 1,2`, `--no-gpu`, `--gpu-sizes 1M,16M`,
 * `--min-seconds 1`, `--no-gemm`, `--gemm-min-seconds 0.3`, `--no-ops`,
 * `--ops-min-seconds 0.3`, `--no-train`, `--train-samples 3840`,
 * `--bb-warmup-seconds 30` (warm-up under load before the Bayesian Bits
 * table's timed rounds), `--no-bb`
 * (skips the last table: Bayesian Bits training and evaluation next to float,
 * see `bench/bayesian_bits.ts`),
 * `--json FILE` (also write the rows as JSON).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type BayesianBitsBenchRow,
  benchBayesianBits,
} from "./bayesian_bits.ts";
import { adamUpdateReference } from "../core/optim.ts";
import {
  col2im,
  type ConvGeometry,
  im2col,
  nchwToRows,
  rowsToNchw,
} from "../core/ops/im2col.ts";
import {
  globalAvgPoolBackwardReference,
  globalAvgPoolReference,
  maxPool2dBackwardReference,
  maxPool2dReference,
} from "../core/ops/pool.ts";
import {
  relu6BackwardReference,
  relu6Reference,
  reluBackwardReference,
  reluReference,
} from "../core/ops/elementwise.ts";
import {
  batchNormBackwardReference,
  batchNormNormalizeReference,
  batchNormStatisticsReference,
} from "../core/ops/batchnorm.ts";
import {
  softmaxCrossEntropyBackwardReference,
  softmaxCrossEntropyReference,
} from "../core/ops/loss.ts";
import { addBiasReference, biasGradReference } from "../core/ops/dense.ts";
import {
  gemmReference,
  type GemmShape,
  initGraph,
  lenet5,
  makeDataset,
  type OpKernels,
  quantizerConstants,
  type QuantizerPass,
  randomKey,
  referenceBackend,
  trainFloat,
} from "../mod.ts";
import { createWasmBackend } from "../asm/backend.ts";
import { uniform } from "../core/rng.ts";

interface Row {
  backend: string;
  threads: string;
  elements: number;
  elementsPerSecond: number;
  /** Bytes the pass moves per second: forward reads x, writes xq; backward reads x, dy, writes dx. */
  bytesPerSecond: number;
  ratioToReference?: number;
}

const BYTES_PER_ELEMENT_FWD_BWD = 4 * (2 + 3);
const BYTES_PER_ELEMENT_COPY = 4 * 2;

function parseSize(text: string): number {
  const m = /^(\d+)([KM]?)$/i.exec(text.trim());
  if (!m) {
    throw new RangeError(`Cannot parse size "${text}": use e.g. 1M, 16M, 4096`);
  }
  const unit = m[2].toUpperCase() === "M"
    ? 1 << 20
    : m[2].toUpperCase() === "K"
    ? 1 << 10
    : 1;
  return Number(m[1]) * unit;
}

function label(n: number): string {
  return n % (1 << 20) === 0 ? `${n >> 20}M` : `${n}`;
}

/** Median seconds per call of `run`, after one warm-up, over at least `minSeconds`. */
async function timeIt(
  run: () => unknown | Promise<unknown>,
  minSeconds: number,
): Promise<number> {
  await run();
  const samples: number[] = [];
  const start = performance.now();
  while (
    samples.length < 3 || (performance.now() - start) / 1000 < minSeconds
  ) {
    const t0 = performance.now();
    await run();
    samples.push((performance.now() - t0) / 1000);
    if (samples.length >= 200) break;
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1];
}

function makePass(): QuantizerPass {
  // A typical weight quantizer: 8 bits, 64 output channels, pruning gates present.
  const channels = 64;
  const gates = [1, 1, 0, 0] as const;
  return {
    channels,
    z2: new Float32Array(channels).fill(1),
    gates,
    constants: quantizerConstants(1, true, gates),
  };
}

function makeData(n: number): { x: Float32Array; dy: Float32Array } {
  const x = uniform([0, 1], n).map((u) => 2.4 * u - 1.2); // some values clip
  const dy = uniform([0, 2], n).map((u) => u - 0.5);
  return { x, dy };
}

const args = parseArgs({
  options: {
    sizes: { type: "string", default: "1M,16M" },
    threads: { type: "string", default: "1,2" },
    "gpu-sizes": { type: "string", default: "1M,16M" },
    "no-gpu": { type: "boolean", default: false },
    "min-seconds": { type: "string", default: "1" },
    "no-gemm": { type: "boolean", default: false },
    "gemm-min-seconds": { type: "string", default: "0.3" },
    "no-ops": { type: "boolean", default: false },
    "ops-min-seconds": { type: "string", default: "0.3" },
    "no-train": { type: "boolean", default: false },
    "no-bb": { type: "boolean", default: false },
    "bb-warmup-seconds": { type: "string", default: "30" },
    "train-samples": { type: "string", default: "3840" },
    json: { type: "string" },
  },
});
const sizes = args.values.sizes!.split(",").map(parseSize);
const threadCounts = args.values.threads!.split(",").map(Number);
const minSeconds = Number(args.values["min-seconds"]);
const rows: Row[] = [];
const copyRows: Row[] = [];

for (const n of sizes) {
  const pass = makePass();
  const { x, dy } = makeData(n);
  const refSeconds = await timeIt(() => {
    referenceBackend.quantizeForward(x, pass);
    referenceBackend.quantizeBackward(x, dy, pass);
  }, minSeconds);
  const reference: Row = {
    backend: "reference (TS)",
    threads: "1",
    elements: n,
    elementsPerSecond: n / refSeconds,
    bytesPerSecond: (n * BYTES_PER_ELEMENT_FWD_BWD) / refSeconds,
    ratioToReference: 1,
  };
  rows.push(reference);
  console.error(
    `reference ${label(n)}: ${(n / refSeconds / 1e6).toFixed(1)} M elements/s`,
  );

  for (const threads of threadCounts) {
    const wasm = await createWasmBackend({ threads });
    try {
      const bx = wasm.alloc(n);
      const bdy = wasm.alloc(n);
      const bout = wasm.alloc(n);
      bx.view().set(x);
      bdy.view().set(dy);
      const seconds = await timeIt(() => {
        wasm.forwardResident(bx, bout, pass);
        wasm.backwardResident(bx, bdy, bout, pass);
      }, minSeconds);
      rows.push({
        backend: `wasm (${wasm.simd})`,
        threads: String(wasm.threads),
        elements: n,
        elementsPerSecond: n / seconds,
        bytesPerSecond: (n * BYTES_PER_ELEMENT_FWD_BWD) / seconds,
        ratioToReference: refSeconds / seconds,
      });
      const copySeconds = await timeIt(
        () => wasm.copyResident(bx, bout),
        minSeconds,
      );
      copyRows.push({
        backend: "wasm copy (read x, write y)",
        threads: String(wasm.threads),
        elements: n,
        elementsPerSecond: n / copySeconds,
        bytesPerSecond: (n * BYTES_PER_ELEMENT_COPY) / copySeconds,
      });
      console.error(
        `wasm x${threads} ${label(n)}: ${
          (n / seconds / 1e6).toFixed(1)
        } M elements/s`,
      );
    } finally {
      wasm.dispose();
    }
  }
}

let gpuNote = "";
if (!args.values["no-gpu"]) {
  try {
    const { createGpuBackend } = await import("../gpu/mod.ts");
    const gpu = await createGpuBackend();
    const info = gpu.adapterInfo;
    gpuNote = `WebGPU adapter: ${JSON.stringify(info)}`;
    try {
      for (const n of args.values["gpu-sizes"]!.split(",").map(parseSize)) {
        const pass = makePass();
        const { x, dy } = makeData(n);
        const bx = gpu.upload(x);
        const bdy = gpu.upload(dy);
        const bout = gpu.allocate(n);
        const seconds = await timeIt(async () => {
          gpu.forwardResident(bx, bout, pass);
          await gpu.backwardResident(bx, bdy, bout, pass);
        }, minSeconds);
        const ref = rows.find((r) =>
          r.elements === n && r.backend.startsWith("reference")
        );
        rows.push({
          backend: "webgpu",
          threads: "-",
          elements: n,
          elementsPerSecond: n / seconds,
          bytesPerSecond: (n * BYTES_PER_ELEMENT_FWD_BWD) / seconds,
          ratioToReference: ref
            ? n / seconds / ref.elementsPerSecond
            : undefined,
        });
        console.error(
          `webgpu ${label(n)}: ${(n / seconds / 1e6).toFixed(1)} M elements/s`,
        );
        bx.destroy();
        bdy.destroy();
        bout.destroy();
      }
    } finally {
      gpu.destroy();
    }
  } catch (error) {
    gpuNote = `WebGPU not measured: ${(error as Error).message}`;
  }
}

const fmt = (v: number, digits = 1) => v.toFixed(digits);
console.log(
  "\nQuantizer forward + backward (8-bit gates, 64 channels with z2), float32, resident buffers\n",
);
console.log(
  "| backend | threads | elements | elements/s | GB/s moved | vs reference |",
);
console.log("|---|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.backend} | ${r.threads} | ${label(r.elements)} | ${
      (r.elementsPerSecond / 1e6).toFixed(1)
    } M | ${fmt(r.bytesPerSecond / 1e9, 2)} | ${
      r.ratioToReference === undefined ? "-" : fmt(r.ratioToReference) + "x"
    } |`,
  );
}
for (const r of copyRows) {
  console.log(
    `| ${r.backend} | ${r.threads} | ${label(r.elements)} | ${
      (r.elementsPerSecond / 1e6).toFixed(1)
    } M | ${fmt(r.bytesPerSecond / 1e9, 2)} | - |`,
  );
}
console.log(
  `\nBytes moved: forward+backward ${BYTES_PER_ELEMENT_FWD_BWD} B/element, copy ${BYTES_PER_ELEMENT_COPY} B/element.`,
);
if (gpuNote) console.log(gpuNote);

interface GemmRow {
  layer: string;
  product: string;
  shape: GemmShape;
  /** GFLOP/s of gemmReference (on the cut-down product). */
  reference: number;
  /** GFLOP/s of WasmBackend.gemm per thread count, copies included. */
  wasm: Record<string, number>;
}

const gemmRows: GemmRow[] = [];
if (!args.values["no-gemm"]) {
  const gemmMinSeconds = Number(args.values["gemm-min-seconds"]);
  // [layer, M, N, K]: a layer computing Y[M x N] = X[M x K] W[N x K]^T.
  const layers: [string, number, number, number][] = [
    ["conv1 (im2col)", 73728, 32, 25],
    ["conv2 (im2col)", 8192, 64, 800],
    ["fc1", 128, 512, 1024],
    ["fc2", 128, 10, 512],
  ];
  const products: [string, GemmShape][] = [];
  for (const [layer, m, n, k] of layers) {
    products.push(
      [`${layer} forward X W^T`, { m, n, k, transB: true }],
      [`${layer} grad-input dY W`, { m, n: k, k: n }],
      [`${layer} grad-weight dY^T X`, { m: n, n: k, k: m, transA: true }],
    );
  }
  const flopsOf = (s: GemmShape) => 2 * s.m * s.n * s.k;
  const operands = (s: GemmShape) => ({
    a: uniform([1, 1], s.m * s.k).map((u) => u - 0.5),
    b: uniform([1, 2], s.k * s.n).map((u) => u - 0.5),
  });
  for (const [name, shape] of products) {
    // The reference on the same product with its largest dimension cut to <= 16 MFLOP.
    const cut = { ...shape };
    const big = (["m", "n", "k"] as const).reduce((x, y) =>
      cut[x] >= cut[y] ? x : y
    );
    cut[big] = Math.max(
      1,
      Math.min(
        cut[big],
        Math.floor(16e6 / (flopsOf(shape) / shape[big])),
      ),
    );
    const small = operands(cut);
    gemmReference(cut, small.a, small.b);
    const t0 = performance.now();
    gemmReference(cut, small.a, small.b);
    const refSeconds = (performance.now() - t0) / 1000;
    gemmRows.push({
      layer: name.split(" ")[0],
      product: name,
      shape,
      reference: flopsOf(cut) / refSeconds / 1e9,
      wasm: {},
    });
  }
  for (const threads of threadCounts) {
    const wasm = await createWasmBackend({ threads });
    try {
      for (const row of gemmRows) {
        const { a, b } = operands(row.shape);
        const seconds = await timeIt(
          () => wasm.gemm(row.shape, a, b),
          gemmMinSeconds,
        );
        row.wasm[String(threads)] = flopsOf(row.shape) / seconds / 1e9;
        console.error(
          `gemm x${threads} ${row.product}: ${
            fmt(row.wasm[String(threads)])
          } GFLOP/s`,
        );
      }
    } finally {
      wasm.dispose();
    }
  }
  console.log(
    "\nGEMM, LeNet-5 training products at batch 128, float32, GFLOP/s (2 m n k flops per product)\n",
  );
  console.log(
    `| product | m x n x k | reference (TS) | ${
      threadCounts.map((t) => `wasm x${t}`).join(" | ")
    } |`,
  );
  console.log(`|---|---|---|${threadCounts.map(() => "---|").join("")}`);
  for (const r of gemmRows) {
    const s = r.shape;
    const flags = [s.transA ? "A^T" : "", s.transB ? "B^T" : ""].filter((
      f,
    ) => f).join(", ");
    console.log(
      `| ${r.product} | ${s.m} x ${s.n} x ${s.k}${
        flags ? ` (${flags})` : ""
      } | ${fmt(r.reference, 2)} | ${
        threadCounts.map((t) => fmt(r.wasm[String(t)] ?? NaN)).join(" | ")
      } |`,
    );
  }
  console.log(
    "\nWASM times include copying A and B into the backend's memory and C out (what dense and conv2d pay); " +
      "the reference runs the same product with its largest dimension cut to at most 16 MFLOP, one timed repetition after a warm-up.",
  );
}

interface OpRow {
  op: string;
  /** Median milliseconds of the reference. */
  reference: number;
  /** Median milliseconds of WasmBackend.kernels per thread count. */
  wasm: Record<string, number>;
}

const opRows: OpRow[] = [];
if (!args.values["no-ops"]) {
  const opsMinSeconds = Number(args.values["ops-min-seconds"]);
  const n = 128;
  const values = (seed: number, count: number) =>
    uniform([5, seed], count).map((u) => 2 * u - 1);
  const conv1: ConvGeometry = {
    n,
    c: 1,
    h: 28,
    w: 28,
    kh: 5,
    kw: 5,
    oh: 24,
    ow: 24,
    stride: 1,
    padding: 0,
  };
  const conv2: ConvGeometry = { ...conv1, c: 32, h: 12, w: 12, oh: 8, ow: 8 };
  const pool1 = {
    n,
    c: 32,
    h: 24,
    w: 24,
    oh: 12,
    ow: 12,
    kernel: 2,
    stride: 2,
    padding: 0,
  };
  const act1 = values(1, n * 32 * 576); // conv1 output [128, 32, 24, 24]
  const dAct1 = values(2, act1.length);
  const image = values(3, n * 784);
  const pooled1 = values(4, n * 32 * 144);
  const cols2 = values(5, n * 64 * 800);
  const act2 = values(6, n * 64 * 64);
  const { argmax } = maxPool2dReference(act1, pool1);
  const dPool1 = values(7, pooled1.length);
  const logits = values(8, n * 10).map((v) => 4 * v);
  const labels = Int32Array.from(uniform([5, 9], n), (u) => Math.floor(10 * u));
  const probs = softmaxCrossEntropyReference(logits, labels, 10).probs;
  const fc1 = values(10, n * 512);
  const bias32 = values(11, 32);
  const bias64 = values(12, 64);
  const bias512 = values(13, 512);
  const bnLayout = { n, c: 32, area: 576 };
  const bnStats = batchNormStatisticsReference(act1, bnLayout);
  const invStd = bnStats.variance.map((v) => 1 / Math.sqrt(v + 1e-5));
  const gamma = values(14, 32);
  const xhat = batchNormNormalizeReference(
    act1,
    bnLayout,
    bnStats.mean,
    invStd,
    gamma,
    bias32,
  ).xhat;
  // Every LeNet-5 parameter: 4 weights, 4 biases (582,026 elements).
  const lenetSizes = [800, 32, 51200, 64, 524288, 512, 5120, 10];
  const adamSteps = lenetSizes.map((size, i) => ({
    theta: values(20 + i, size),
    grad: values(30 + i, size).map((v) => 0.01 * v),
    m: values(40 + i, size).map((v) => 0.001 * v),
    v: values(50 + i, size).map((v) => 1e-6 * (v + 1)),
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    stepSize: 1e-3 / (1 - 0.9 ** 10),
    sqrtCorrection2: Math.sqrt(1 - 0.999 ** 10),
  }));
  // The fused conv kernels are the GEMM table's products plus the pieces
  // timed here; they have no plain-TypeScript row of their own.
  type PieceKernels = Omit<
    Required<OpKernels>,
    "conv2dGemmForward" | "conv2dGemmBackward"
  >;
  const reference: PieceKernels = {
    relu: reluReference,
    reluBackward: reluBackwardReference,
    relu6: relu6Reference,
    relu6Backward: relu6BackwardReference,
    maxPool2d: maxPool2dReference,
    maxPool2dBackward: maxPool2dBackwardReference,
    globalAvgPool: globalAvgPoolReference,
    globalAvgPoolBackward: globalAvgPoolBackwardReference,
    batchNormStatistics: batchNormStatisticsReference,
    batchNormNormalize: batchNormNormalizeReference,
    batchNormBackward: batchNormBackwardReference,
    softmaxCrossEntropy: softmaxCrossEntropyReference,
    softmaxCrossEntropyBackward: softmaxCrossEntropyBackwardReference,
    im2col,
    col2im,
    rowsToNchw,
    nchwToRows,
    addBias: addBiasReference,
    biasGrad: biasGradReference,
    adamUpdate: adamUpdateReference,
  };
  // [name, run on a kernel set]
  const cases: [string, (k: PieceKernels) => unknown][] = [
    ["relu forward, conv1 out [128,32,24,24]", (k) => k.relu(act1)],
    ["relu backward, conv1 out", (k) => k.reluBackward(act1, dAct1)],
    ["max-pool 2x2 forward, conv1 out", (k) => k.maxPool2d(act1, pool1)],
    [
      "max-pool 2x2 backward, conv1 out",
      (k) => k.maxPool2dBackward(dPool1, argmax, pool1),
    ],
    ["im2col conv1 [73728 x 25]", (k) => k.im2col(image, conv1)],
    ["im2col conv2 [8192 x 800]", (k) => k.im2col(pooled1, conv2)],
    ["col2im conv2", (k) => k.col2im(cols2, conv2)],
    [
      "rows to NCHW + bias, conv1 out",
      (k) => k.rowsToNchw(act1, n, 576, 32, bias32),
    ],
    [
      "rows to NCHW + bias, conv2 out",
      (k) => k.rowsToNchw(act2, n, 64, 64, bias64),
    ],
    ["NCHW to rows, conv1 out", (k) => k.nchwToRows(dAct1, n, 576, 32)],
    ["NCHW to rows, conv2 out", (k) => k.nchwToRows(act2, n, 64, 64)],
    ["bias gradient, conv1 [73728 x 32]", (k) => k.biasGrad(dAct1, 32)],
    ["bias add, fc1 [128 x 512]", (k) => k.addBias(fc1, 512, bias512)],
    [
      "softmax cross-entropy forward [128 x 10]",
      (k) => k.softmaxCrossEntropy(logits, labels, 10),
    ],
    [
      "softmax cross-entropy backward",
      (k) => k.softmaxCrossEntropyBackward(probs, labels, 10, 1),
    ],
    [
      "Adam, all LeNet-5 parameters (582K)",
      (k) => adamSteps.map((step) => k.adamUpdate(step)),
    ],
    [
      "batch-norm statistics, conv1 out (not in LeNet-5)",
      (k) => k.batchNormStatistics(act1, bnLayout),
    ],
    [
      "batch-norm normalize, conv1 out (not in LeNet-5)",
      (k) =>
        k.batchNormNormalize(
          act1,
          bnLayout,
          bnStats.mean,
          invStd,
          gamma,
          bias32,
        ),
    ],
    [
      "batch-norm backward, conv1 out (not in LeNet-5)",
      (k) => k.batchNormBackward(dAct1, xhat, bnLayout, gamma, invStd, true),
    ],
  ];
  for (const [op, run] of cases) {
    const seconds = await timeIt(() => run(reference), opsMinSeconds);
    opRows.push({ op, reference: seconds * 1000, wasm: {} });
  }
  for (const threads of threadCounts) {
    const wasm = await createWasmBackend({ threads });
    try {
      for (let i = 0; i < cases.length; i++) {
        const seconds = await timeIt(
          () => cases[i][1](wasm.kernels),
          opsMinSeconds,
        );
        opRows[i].wasm[String(threads)] = seconds * 1000;
        console.error(
          `op x${threads} ${cases[i][0]}: ${fmt(seconds * 1000, 2)} ms`,
        );
      }
    } finally {
      wasm.dispose();
    }
  }
  console.log(
    "\nTraining-op kernels at LeNet-5 batch-128 shapes, median ms per call (WASM: copies in and out included), ratio = reference / wasm\n",
  );
  console.log(
    `| op | reference (TS) ms | ${
      threadCounts.map((t) => `wasm x${t} ms`).join(" | ")
    } | ${threadCounts.map((t) => `x${t} vs ref`).join(" | ")} |`,
  );
  console.log(
    `|---|---|${threadCounts.map(() => "---|").join("")}${
      threadCounts.map(() => "---|").join("")
    }`,
  );
  for (const r of opRows) {
    const ms = threadCounts.map((t) => r.wasm[String(t)]);
    console.log(
      `| ${r.op} | ${fmt(r.reference, 2)} | ${
        ms.map((v) => fmt(v, 2)).join(" | ")
      } | ${ms.map((v) => fmt(r.reference / v) + "x").join(" | ")} |`,
    );
  }
}

const trainRows: {
  threads: string;
  kernels: string;
  samplesPerSecond: number;
}[] = [];
if (!args.values["no-train"]) {
  // Float LeNet-5 training steps (forward, backward, Adam) at batch 128 on
  // synthetic MNIST-shaped data: the timing does not depend on pixel values.
  const count = Number(args.values["train-samples"]);
  const images = uniform([0, 3], count * 784).map((u) => 4 * u - 1);
  const labels = Int32Array.from(
    uniform([0, 4], count),
    (u) => Math.floor(10 * u),
  );
  const train = makeDataset(images, labels, [1, 28, 28]);
  const test = makeDataset(images.slice(0, 784), labels.slice(0, 1), [
    1,
    28,
    28,
  ]);
  const model = lenet5();
  for (const threads of threadCounts) {
    const wasm = await createWasmBackend({ threads });
    try {
      const run = (withOps: boolean) =>
        trainFloat(model, initGraph(model, randomKey(0)), { train, test }, {
          epochs: 1,
          batchSize: 128,
          key: randomKey(1),
          gemm: wasm.gemm,
          kernels: withOps ? wasm.kernels : undefined,
        }).history[0].samplesPerSecond;
      // Warm both up, then alternate, so that a burst of load on the
      // machine does not fall on one configuration only.
      run(false);
      run(true);
      const best = [0, 0];
      for (let round = 0; round < 2; round++) {
        best[0] = Math.max(best[0], run(false));
        best[1] = Math.max(best[1], run(true));
      }
      for (const withOps of [false, true]) {
        const samplesPerSecond = best[withOps ? 1 : 0];
        const kernels = withOps ? "wasm GEMM + op kernels" : "wasm GEMM only";
        trainRows.push({
          threads: String(wasm.threads),
          kernels,
          samplesPerSecond,
        });
        console.error(
          `train x${threads} (${kernels}): ${
            samplesPerSecond.toFixed(0)
          } samples/s`,
        );
      }
    } finally {
      wasm.dispose();
    }
  }
  console.log(
    `\nLeNet-5 float training step (forward + backward + Adam), batch 128, ${count} samples per timed epoch, best of 2 (alternating)\n`,
  );
  console.log("| threads | kernels | samples/s | vs GEMM only |");
  console.log("|---|---|---|---|");
  for (const r of trainRows) {
    const base = trainRows.find((b) =>
      b.threads === r.threads && b.kernels === "wasm GEMM only"
    )!;
    console.log(
      `| ${r.threads} | ${r.kernels} | ${r.samplesPerSecond.toFixed(0)} | ${
        fmt(r.samplesPerSecond / base.samplesPerSecond, 2)
      }x |`,
    );
  }
}

const bbRows: BayesianBitsBenchRow[] = args.values["no-bb"]
  ? []
  : await benchBayesianBits(
    threadCounts,
    Number(args.values["train-samples"]),
    Number(args.values["bb-warmup-seconds"]),
  );

if (args.values.json) {
  await Deno.writeTextFile(
    args.values.json,
    JSON.stringify(
      { rows, copyRows, gpuNote, gemmRows, opRows, trainRows, bbRows },
      null,
      2,
    ),
  );
}
