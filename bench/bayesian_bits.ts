/**
 * Real MNIST epochs: Bayesian Bits and float LeNet-5 training and
 * evaluation on the WASM device at each thread count, timed alternately in
 * one run (see `bench/workloads.ts` for what each figure covers and
 * `bench/timing.ts` for the warm-up and rounds).
 *
 * Run by `deno task bench` (`bench/main.ts`: `--only train,eval` runs this
 * section alone).
 *
 * @module
 */

import {
  formatRatio,
  formatResult,
  type Job,
  type JobResult,
  markdownTable,
  pairedRatio,
  timeRounds,
} from "./timing.ts";
import {
  type BenchData,
  benchData,
  jobsOf,
  TRAIN_BATCH,
  wasmWorkloads,
  WORKLOAD_KINDS,
  WORKLOAD_TITLES,
  type WorkloadKind,
  type Workloads,
} from "./workloads.ts";
import { loadMnist } from "../io/mnist.ts";

/** Options of {@link benchEpochs}. */
export interface EpochBenchOptions {
  /** WASM thread counts. */
  readonly threads: readonly number[];
  /** The workloads to time. */
  readonly kinds: readonly WorkloadKind[];
  /** Minimum timed rounds. */
  readonly rounds: number;
  /** Minimum timed seconds per figure. */
  readonly minSeconds: number;
  /** Minimum warm-up seconds. */
  readonly warmupSeconds: number;
}

/** One figure of the epoch table. */
export interface EpochRow {
  /** The workload. */
  readonly kind: WorkloadKind;
  /** WASM threads. */
  readonly threads: number;
  /** The device's description. */
  readonly device: string;
  /** The timed rounds (samples/s). */
  readonly result: JobResult;
  /** Peak device memory over the run, in bytes (null if untracked). */
  readonly peakBytes: number | null;
}

/**
 * Times the workloads on the WASM device at each thread count, every
 * figure in the same rounds, and prints the tables.
 *
 * @param data The MNIST data.
 * @param options Threads, workloads, rounds.
 * @returns The figures.
 */
export async function benchEpochs(
  data: BenchData,
  options: EpochBenchOptions,
): Promise<EpochRow[]> {
  const sets: { threads: number; w: Workloads }[] = [];
  try {
    for (const threads of options.threads) {
      sets.push({ threads, w: await wasmWorkloads(threads, data) });
    }
    // Job order: each workload at every thread count, then the next one.
    const jobs: Job[] = [];
    const index: { kind: WorkloadKind; set: number }[] = [];
    for (const kind of options.kinds) {
      sets.forEach((s, i) => {
        jobs.push(...jobsOf(s.w, [kind], `x${s.threads}`));
        index.push({ kind, set: i });
      });
    }
    const results = await timeRounds(jobs, options);
    const rows = results.map((result, j) => {
      const { kind, set } = index[j];
      const { threads, w } = sets[set];
      return { kind, threads, device: w.label, result, peakBytes: null };
    });
    return rows.map((r) => ({
      ...r,
      peakBytes: sets.find((s) => s.threads === r.threads)!.w.peakBytes(),
    }));
  } finally {
    for (const s of sets) s.w.dispose();
  }
}

/**
 * Prints the epoch tables: samples/s per workload and thread count with the
 * thread speed-up and the Bayesian Bits / float ratios, then the wall time
 * of whole trainer calls and the peak device memory.
 *
 * @param rows The figures of {@link benchEpochs}.
 * @param data The data they were measured on.
 * @param options The options they were measured with.
 */
export function printEpochTables(
  rows: readonly EpochRow[],
  data: BenchData,
  options: EpochBenchOptions,
): void {
  const threads = [...new Set(rows.map((r) => r.threads))];
  const at = (kind: WorkloadKind, t: number) =>
    rows.find((r) => r.kind === kind && r.threads === t);
  const base = threads[0];
  const header = [
    "workload",
    ...threads.map((t) => `wasm x${t} samples/s`),
    ...threads.slice(1).map((t) => `x${t} / x${base}`),
  ];
  const body: string[][] = [];
  for (const kind of WORKLOAD_KINDS) {
    if (!at(kind, base)) continue;
    body.push([
      WORKLOAD_TITLES[kind],
      ...threads.map((t) => formatResult(at(kind, t)!.result)),
      ...threads.slice(1).map((t) =>
        formatRatio(pairedRatio(at(kind, t)!.result, at(kind, base)!.result))
      ),
    ]);
  }
  for (
    const [bb, fl, what] of [
      ["bb-train", "float-train", "training"],
      ["bb-eval", "float-eval", "evaluation"],
    ] as const
  ) {
    if (!at(bb, base) || !at(fl, base)) continue;
    body.push([
      `Bayesian Bits / float, ${what}`,
      ...threads.map((t) =>
        formatRatio(pairedRatio(at(bb, t)!.result, at(fl, t)!.result))
      ),
      ...threads.slice(1).map(() => ""),
    ]);
  }
  console.log(
    `\nLeNet-5 on MNIST, real epochs: ${data.train.count} training images per epoch (batch ${TRAIN_BATCH}), ${data.test.count} test images per evaluation (batch 1000). Samples/s: median (slowest-fastest) of ${
      rows[0]?.result.rates.length ?? 0
    } alternating rounds after a warm-up of at least ${options.warmupSeconds} s; ratios: median of the rounds' ratios\n`,
  );
  console.log(markdownTable(header, body));
  printWallTable(rows, threads);
}

function printWallTable(rows: readonly EpochRow[], threads: number[]): void {
  const trainRows = rows.filter((r) => r.kind.endsWith("-train"));
  if (trainRows.length === 0) return;
  const body = threads.map((t) => {
    const row = (kind: WorkloadKind) =>
      trainRows.find((r) => r.kind === kind && r.threads === t);
    const wall = (kind: WorkloadKind) => {
      const r = row(kind);
      return r ? `${r.result.wallSeconds.toFixed(1)} s` : "-";
    };
    const peak = rows.find((r) => r.threads === t)?.peakBytes;
    return [
      `wasm x${t}`,
      wall("float-train"),
      wall("bb-train"),
      peak == null ? "-" : `${(peak / 2 ** 20).toFixed(0)} MiB`,
    ];
  });
  console.log(
    "\nWhole trainer call per epoch (steps, then test evaluation and report), median wall time; peak device memory over the run\n",
  );
  console.log(
    markdownTable(
      ["device", "float epoch", "Bayesian Bits epoch", "peak memory"],
      body,
    ),
  );
}

/**
 * Parses `--only`: `train`, `eval`, or both (comma-separated).
 *
 * @param only The flag's values.
 * @returns The workload kinds.
 * @throws {RangeError} On another value.
 */
export function kindsOf(only: readonly string[]): WorkloadKind[] {
  const kinds = new Set<WorkloadKind>();
  for (const part of only) {
    if (part === "train") kinds.add("float-train").add("bb-train");
    else if (part === "eval") kinds.add("float-eval").add("bb-eval");
    else throw new RangeError(`--only takes train or eval here, got ${part}`);
  }
  return WORKLOAD_KINDS.filter((k) => kinds.has(k));
}

/**
 * Loads MNIST for the benchmarks.
 *
 * @param limit Images per split (the training split of a timed epoch; the
 *   test split holds at most 10,000).
 * @returns The data.
 */
export async function loadBenchData(limit: number): Promise<BenchData> {
  return benchData(await loadMnist({ limit }));
}
