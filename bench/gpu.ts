/**
 * The WebGPU rows of `deno task bench`, each beside the WASM device's
 * figure from the same run, whenever an adapter exists (its name is
 * printed): the quantizer's elements/s, GEMM GFLOP/s at the LeNet-5 batch-128
 * shapes (convolutions as the implicit GEMMs they are) and one large
 * square GEMM, LeNet-5 float and Bayesian Bits training and evaluation
 * samples/s on MNIST, and VGG-7 Bayesian Bits training samples/s on
 * CIFAR-10-shaped synthetic data (3x32x32).
 *
 * A software adapter (llvmpipe) is thousands of times slower than a GPU:
 * there the section uses a few steps, a 256-square GEMM and VGG-7 batches
 * of 8 (each row says its sizes), so that it finishes in minutes. Times are
 * wall clock around work that ends in a read (a GPU works asynchronously),
 * after one untimed call that compiles the kernels.
 *
 * @module
 */

import { type Device, device } from "../core/device.ts";
import { convGeometry } from "../core/ops/conv2d.ts";
import { makeDataset } from "../core/data.ts";
import { initGraph } from "../core/graph.ts";
import { lenet5, vgg7 } from "../core/models.ts";
import { randomKey, uniform } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import { evaluate, trainFloat } from "../core/training.ts";
import {
  bayesianBits,
  evaluateGated,
  initGated,
  trainBayesianBits,
} from "../core/methods/bayesian_bits/mod.ts";
import type { BenchData } from "./workloads.ts";
import { formatRate, logLine, markdownTable } from "./timing.ts";

/** One row: a figure per device (`wasm`, `webgpu`). */
export interface GpuRow {
  /** What was measured, with its sizes. */
  readonly name: string;
  /** The unit of the figures. */
  readonly unit: string;
  /** Figure per device name. */
  readonly values: Readonly<Record<string, number>>;
}

/** Calls `body` (which records work and returns its last output) until `minSeconds`. */
async function rate(
  body: () => Tensor,
  minSeconds: number,
): Promise<number> {
  await body().read(); // compiles
  let calls = 0;
  const start = performance.now();
  let seconds = 0;
  while (calls < 2 || seconds < minSeconds) {
    await body().read();
    calls++;
    seconds = (performance.now() - start) / 1000;
  }
  return calls / seconds;
}

const random = (seed: number, n: number) =>
  uniform(randomKey(seed), n).map((u) => 2 * u - 1);

/** The kernel rows on one device: calls per second of each body. */
function kernelBodies(dev: Device, fallback: boolean) {
  const k = dev.kernels;
  const up = (seed: number, shape: number[]) =>
    dev.upload(random(seed, shape.reduce((a, b) => a * b, 1)), shape);
  const bodies: {
    name: string;
    unit: string;
    per: number;
    run: () => Tensor;
  }[] = [];
  const n = 1 << 20;
  const x = up(1, [n]);
  const xmax = dev.upload([0.9], [1]);
  const gates = dev.upload([1, 1, 0, 0], [4]);
  bodies.push({
    name: `residualQuantize, ${n} elements, 8 bits`,
    unit: "elements/s",
    per: n,
    run: () => k.residualQuantize(x, xmax, gates, null, true),
  });
  for (
    const [label, xs, ws] of [
      ["conv1 (implicit GEMM)", [128, 1, 28, 28], [6, 1, 5, 5]],
      ["conv2 (implicit GEMM)", [128, 6, 12, 12], [16, 6, 5, 5]],
    ] as const
  ) {
    const g = convGeometry(xs, ws, {});
    const [xt, wt] = [up(2, [...xs]), up(3, [...ws])];
    bodies.push({
      name: `${label} ${g.n * g.oh * g.ow} x ${g.o} x ${g.c * g.kh * g.kw}`,
      unit: "GFLOP/s",
      per: 2 * g.n * g.oh * g.ow * g.o * g.c * g.kh * g.kw / 1e9,
      run: () => k.conv2d(xt, wt, null, g),
    });
  }
  const big = fallback ? 256 : 4096;
  for (
    const [label, m, nn, kk] of [
      ["fc1", 128, 120, 256],
      ["fc2", 128, 84, 120],
      ["fc3", 128, 10, 84],
      ["square", big, big, big],
    ] as const
  ) {
    const [a, b] = [up(4, [m, kk]), up(5, [nn, kk])];
    const shape = { m, n: nn, k: kk, transA: false, transB: true };
    bodies.push({
      name: `GEMM ${label} ${m} x ${nn} x ${kk}`,
      unit: "GFLOP/s",
      per: 2 * m * nn * kk / 1e9,
      run: () => k.gemm(a, b, shape),
    });
  }
  return bodies;
}

/** Samples/s of one epoch of `train` (after an untimed warm-up epoch). */
async function epochRate(run: () => Promise<unknown>, samples: number) {
  await run();
  const start = performance.now();
  await run();
  return samples / ((performance.now() - start) / 1000);
}

/** The training and evaluation rows of LeNet-5 and VGG-7 on one device. */
async function modelRates(
  dev: Device,
  data: BenchData,
  fallback: boolean,
): Promise<Record<string, number>> {
  const count = fallback ? 256 : 8192;
  const size = 784;
  const train = makeDataset(
    data.train.images.slice(0, count * size),
    data.train.labels.slice(0, count),
    [1, 28, 28],
  );
  // Each epoch ends with an evaluation of the test set: 128 images.
  const test = makeDataset(
    data.test.images.slice(0, 128 * size),
    data.test.labels.slice(0, 128),
    [1, 28, 28],
  );
  const options = { epochs: 1, batchSize: 128, key: randomKey(1) };
  const model = lenet5();
  const params = initGraph(model, randomKey(0), dev);
  const out: Record<string, number> = {};
  out.floatTrain = await epochRate(
    () => trainFloat(model, params, { train, test }, options),
    count,
  );
  out.floatEval = await epochRate(
    () => evaluate(model, params.params, train, { batchSize: 128 }),
    count,
  );
  const gated = bayesianBits(model, {});
  const first = dev.upload(train.images.slice(0, 128 * size), [128, 1, 28, 28]);
  const init = await initGated(gated, params, first);
  out.bbTrain = await epochRate(
    () => trainBayesianBits(gated, init, { train, test }, options),
    count,
  );
  out.bbEval = await epochRate(
    () => evaluateGated(gated, init, train, { batchSize: 128 }),
    count,
  );
  out.vggTrain = await vggRate(dev, fallback);
  return out;
}

/** VGG-7 Bayesian Bits training samples/s on synthetic 3x32x32 data. */
async function vggRate(dev: Device, fallback: boolean): Promise<number> {
  const batch = fallback ? 8 : 128;
  const steps = fallback ? 1 : 8;
  const count = batch * steps;
  const images = uniform(randomKey(7), count * 3072);
  const labels = Int32Array.from(
    uniform(randomKey(8), count),
    (u) => Math.floor(10 * u),
  );
  const data = makeDataset(images, labels, [3, 32, 32]);
  const test = makeDataset(images.slice(0, 3072), labels.slice(0, 1), [
    3,
    32,
    32,
  ]);
  const model = vgg7();
  const gated = bayesianBits(model, {});
  const params = initGraph(model, randomKey(0), dev);
  const first = dev.upload(images.slice(0, batch * 3072), [batch, 3, 32, 32]);
  const init = await initGated(gated, params, first);
  const options = { epochs: 1, batchSize: batch, key: randomKey(1) };
  return await epochRate(
    () => trainBayesianBits(gated, init, { train: data, test }, options),
    count,
  );
}

/**
 * Runs the WebGPU section when an adapter exists (else prints why not):
 * every row on the WASM device (`threads`) and on the WebGPU device.
 *
 * @param data The MNIST data of the bench.
 * @param threads WASM threads.
 * @param minSeconds Seconds per kernel figure.
 * @returns The rows (empty without an adapter).
 */
export async function benchGpu(
  data: BenchData,
  threads: number,
  minSeconds: number,
): Promise<GpuRow[]> {
  let gpu: Device;
  try {
    gpu = await device("webgpu");
  } catch (error) {
    logLine(`webgpu: no adapter, no WebGPU rows (${error})`);
    return [];
  }
  using wasm = await device("wasm", { threads });
  using _gpu = gpu;
  const fallback = gpu.name.includes("llvmpipe") ||
    (gpu as { adapterInfo?: { isFallbackAdapter?: boolean } }).adapterInfo
        ?.isFallbackAdapter === true;
  logLine(`webgpu: ${gpu.name}${fallback ? " (software: small sizes)" : ""}`);
  const rows: GpuRow[] = [];
  const bodies = [wasm, gpu].map((dev) => kernelBodies(dev, fallback));
  for (let i = 0; i < bodies[0].length; i++) {
    const values: Record<string, number> = {};
    for (const [d, dev] of [wasm, gpu].entries()) {
      const b = bodies[d][i];
      values[dev.kind] = b.per * await rate(b.run, minSeconds);
    }
    rows.push({ name: bodies[0][i].name, unit: bodies[0][i].unit, values });
    logLine(`${rows.at(-1)!.name}: ${JSON.stringify(values)}`);
  }
  const rates = [await modelRates(wasm, data, fallback)];
  rates.push(await modelRates(gpu, data, fallback));
  const count = fallback ? 256 : 8192;
  const titles: Record<string, string> = {
    floatTrain: `LeNet-5 float training, ${count} MNIST images, batch 128`,
    floatEval: `LeNet-5 float evaluation, ${count} images`,
    bbTrain: `LeNet-5 Bayesian Bits training, ${count} images, batch 128`,
    bbEval: `LeNet-5 Bayesian Bits evaluation, ${count} images`,
    vggTrain: `VGG-7 Bayesian Bits training, 3x32x32 synthetic, batch ${
      fallback ? 8 : 128
    }`,
  };
  for (const key of Object.keys(titles)) {
    rows.push({
      name: titles[key],
      unit: "samples/s",
      values: { wasm: rates[0][key], webgpu: rates[1][key] },
    });
  }
  printGpuTable(rows, gpu.name, threads);
  return rows;
}

/** A figure: thousands separators from 100 up, three significant digits below. */
function figure(v: number): string {
  return v >= 100 ? formatRate(v) : v.toPrecision(3);
}

/** Prints the rows as a table with the WebGPU / WASM ratio. */
function printGpuTable(rows: GpuRow[], name: string, threads: number): void {
  console.log(`\nWebGPU (${name}) beside WASM (${threads} threads)\n`);
  console.log(markdownTable(
    ["workload", "unit", "wasm", "webgpu", "webgpu / wasm"],
    rows.map((r) => [
      r.name,
      r.unit,
      figure(r.values.wasm),
      figure(r.values.webgpu),
      `${(r.values.webgpu / r.values.wasm).toFixed(3)}x`,
    ]),
  ));
}
