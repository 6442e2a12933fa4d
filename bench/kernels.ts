/**
 * Kernel table: each kernel of a LeNet-5 Bayesian Bits training step (and
 * its evaluation), at batch-128 shapes, on the reference device (the
 * baseline) and on the WASM device at each thread count, in the same run.
 * Inputs are uploaded once to each device and stay resident: a timed call
 * is the kernel alone, its outputs freed by a device scope (nothing is
 * copied in or out).
 *
 * Per kernel the devices take turns (the order reversed on every other
 * kernel); each figure is the median of at least three calls (and at
 * least `minSeconds` of them) after one untimed call; a kernel whose first
 * call takes longer than `minSeconds` is timed once more, and one whose
 * first call takes over a second (the reference device's convolutions) is
 * timed by that call.
 *
 * @module
 */

import type { Tensor } from "../core/tensor.ts";
import type { Device } from "../core/device.ts";
import { kernelCases, type KernelInputs, uploadInputs } from "./cases.ts";
import {
  formatRatio,
  logLine,
  markdownTable,
  median,
  warmUp,
} from "./timing.ts";

/** A first call longer than this (seconds) is the figure itself. */
const LONG_CALL_SECONDS = 1;

/** One row of the kernel table. */
export interface KernelRow {
  /** The kernel and its shape. */
  readonly kernel: string;
  /** Milliseconds per call, by device name (the reference device first). */
  readonly ms: Readonly<Record<string, number>>;
}

/** Options of {@link benchKernels}. */
export interface KernelBenchOptions {
  /** Minimum seconds of calls per kernel per device. */
  readonly minSeconds: number;
  /** Minimum warm-up seconds (all WASM cases, cycled). */
  readonly warmupSeconds: number;
}

/**
 * Median seconds of one call of `body` on `dev` inside a scope (its
 * outputs freed).
 *
 * @param dev The device.
 * @param body The call.
 * @param minSeconds Minimum seconds of timed calls.
 * @returns Median seconds per call.
 */
export function timeKernel(
  dev: Device,
  body: () => unknown,
  minSeconds: number,
): number {
  const call = () => {
    const start = performance.now();
    dev.scope(() => {
      body();
    });
    return (performance.now() - start) / 1000;
  };
  const first = call();
  // A call this long is timed once: compiling is a negligible share of it.
  if (first > Math.max(minSeconds, LONG_CALL_SECONDS)) return first;
  if (first > minSeconds) return call();
  const times: number[] = [];
  let total = 0;
  while (times.length < 3 || total < minSeconds) {
    const t = call();
    times.push(t);
    total += t;
    if (times.length >= 1000) break;
  }
  return median(times);
}

/**
 * Times every kernel case on every device and prints the table (ratios
 * against the first device, the baseline).
 *
 * @param devices The devices; the first is the baseline (the reference device).
 * @param options Seconds per figure and warm-up.
 * @returns The rows.
 */
export async function benchKernels(
  devices: readonly Device[],
  options: KernelBenchOptions,
): Promise<KernelRow[]> {
  const cases = kernelCases();
  const inputs = devices.map((dev) => uploadInputs(dev));
  const fast = devices.slice(1);
  await warmUp(
    fast.map((dev, i) => ({
      name: dev.name,
      run: () => {
        for (const c of cases) {
          timeKernel(dev, () => c.run(dev.kernels, inputs[i + 1]), 0);
        }
        return Promise.resolve({ samples: 0, seconds: 1, wallSeconds: 1 });
      },
    })),
    options.warmupSeconds,
  );
  const rows: KernelRow[] = [];
  cases.forEach((c, n) => {
    const ms: Record<string, number> = {};
    const order = devices.map((_, i) => i);
    if (n % 2 === 1) order.reverse();
    for (const i of order) {
      const dev = devices[i];
      ms[dev.name] = 1000 *
        timeKernel(
          dev,
          () => c.run(dev.kernels, inputs[i]),
          options.minSeconds,
        );
    }
    logLine(
      `kernel ${c.name}: ${
        devices.map((d) => `${d.name} ${ms[d.name].toFixed(2)} ms`).join(", ")
      }`,
    );
    rows.push({ kernel: c.name, ms });
  });
  for (const [i, dev] of devices.entries()) freeInputs(dev, inputs[i]);
  printKernelTable(rows, devices.map((d) => d.name));
  return rows;
}

function freeInputs(dev: Device, inputs: KernelInputs): void {
  const all: Tensor[] = [];
  for (const v of Object.values(inputs)) {
    if (Array.isArray(v)) all.push(...v);
    else all.push(v as Tensor);
  }
  dev.free(...all);
}

/**
 * Prints the kernel table: milliseconds per call on each device, then each
 * device's speed-up over the first.
 *
 * @param rows The rows.
 * @param names The device names, the baseline first.
 */
export function printKernelTable(
  rows: readonly KernelRow[],
  names: readonly string[],
): void {
  const [base, ...others] = names;
  console.log(
    `\nKernels at LeNet-5 batch-128 shapes, resident tensors (no copies): median ms per call; speed-up = ${base} ms / device ms, same run\n`,
  );
  console.log(
    markdownTable(
      [
        "kernel",
        ...names.map((n) => `${n} ms`),
        ...others.map((n) => `${n} speed-up`),
      ],
      rows.map((r) => [
        r.kernel,
        ...names.map((n) => r.ms[n].toFixed(r.ms[n] < 10 ? 3 : 1)),
        ...others.map((n) => formatRatio(r.ms[base] / r.ms[n])),
      ]),
    ),
  );
}
