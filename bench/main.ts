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
 * Options: `--sizes 1M,16M`, `--threads 1,2`, `--no-gpu`, `--gpu-sizes 1M,16M`,
 * `--min-seconds 1`, `--no-gemm`, `--gemm-min-seconds 0.3`, `--no-train`,
 * `--train-samples 3840`, `--json FILE`
 * (also write the rows as JSON).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  gemmReference,
  type GemmShape,
  initGraph,
  lenet5,
  makeDataset,
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
    "no-train": { type: "boolean", default: false },
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

const trainRows: { threads: string; samplesPerSecond: number }[] = [];
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
      const run = () =>
        trainFloat(model, initGraph(model, randomKey(0)), { train, test }, {
          epochs: 1,
          batchSize: 128,
          key: randomKey(1),
          gemm: wasm.gemm,
        }).history[0].samplesPerSecond;
      run(); // warm-up
      const samplesPerSecond = Math.max(run(), run());
      trainRows.push({ threads: String(wasm.threads), samplesPerSecond });
      console.error(
        `train x${threads}: ${samplesPerSecond.toFixed(0)} samples/s`,
      );
    } finally {
      wasm.dispose();
    }
  }
  console.log(
    `\nLeNet-5 float training step (forward + backward + Adam), batch 128, ${count} samples per timed epoch, best of 2\n`,
  );
  console.log("| threads | samples/s |");
  console.log("|---|---|");
  for (const r of trainRows) {
    console.log(`| ${r.threads} | ${r.samplesPerSecond.toFixed(0)} |`);
  }
}

if (args.values.json) {
  await Deno.writeTextFile(
    args.values.json,
    JSON.stringify({ rows, copyRows, gpuNote, gemmRows, trainRows }, null, 2),
  );
}
