/**
 * Timing shared by the benchmarks: a warm-up, then rounds in which every
 * compared workload runs once, in alternating order, so that a change in
 * the machine's speed falls on all of them alike. The figure reported is
 * the median over the rounds after the warm-up (the sustained speed), with
 * the slowest and fastest round beside it.
 *
 * Why a warm-up: on small shared VMs a process runs fastest in its first
 * seconds of load and settles 30-40 % lower after that; V8 also keeps
 * optimizing hot loops during the first seconds. Timing a short run from a
 * cold start measures neither what long training runs see.
 *
 * @module
 */

/** One timed run of a workload. */
export interface Sample {
  /** Samples (images) processed. */
  readonly samples: number;
  /** Seconds the figure is computed from. */
  readonly seconds: number;
  /** Wall seconds of the whole call (at least `seconds`). */
  readonly wallSeconds: number;
}

/** A workload to compare: a timed run, and a short run for the warm-up. */
export interface Job {
  /** A label for logs and tables. */
  readonly name: string;
  /** One timed run. */
  readonly run: () => Promise<Sample>;
  /** A short run of the same work for the warm-up (default `run`). */
  readonly warm?: () => Promise<unknown>;
}

/** How long to warm up and how many rounds to time. */
export interface RoundOptions {
  /** Minimum warm-up, in seconds (every job warms at least once). */
  readonly warmupSeconds: number;
  /** Minimum timed rounds (each job runs once per round). */
  readonly rounds: number;
  /** Minimum timed seconds per job (more rounds run until each has it). */
  readonly minSeconds: number;
  /** Progress lines (default: to stderr). */
  readonly log?: (line: string) => void;
}

/** A job's timed rounds. */
export interface JobResult {
  /** The job's name. */
  readonly name: string;
  /** Samples per second of each round, in round order. */
  readonly rates: readonly number[];
  /** Median samples per second: the sustained figure. */
  readonly median: number;
  /** Slowest round, samples/s. */
  readonly min: number;
  /** Fastest round, samples/s. */
  readonly max: number;
  /** Median wall seconds of one call. */
  readonly wallSeconds: number;
}

/** Rounds stop here even if `minSeconds` is not reached. */
const MAX_ROUNDS = 50;

/** Writes a progress line to stderr (tables go to stdout). */
export function logLine(line: string): void {
  console.error(line);
}

/**
 * The median of a non-empty list (the mean of the middle two for an even
 * count).
 *
 * @param values Numbers.
 * @returns The median.
 */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]
    : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs the jobs' warm-ups in turn until `warmupSeconds` have passed (at
 * least one pass).
 *
 * @param jobs The jobs.
 * @param seconds Minimum seconds.
 * @param log Progress lines.
 */
export async function warmUp(
  jobs: readonly Job[],
  seconds: number,
  log: (line: string) => void = logLine,
): Promise<void> {
  const start = performance.now();
  let passes = 0;
  do {
    for (const job of jobs) await (job.warm ?? job.run)();
    passes++;
  } while (performance.now() - start < 1000 * seconds);
  log(
    `warm-up: ${passes} pass${passes === 1 ? "" : "es"} in ${
      ((performance.now() - start) / 1000).toFixed(0)
    } s`,
  );
}

/**
 * Warms up, then times rounds: each round runs every job once, in the
 * given order on even rounds and reversed on odd ones.
 *
 * @param jobs The workloads to compare.
 * @param options Warm-up and rounds.
 * @returns One result per job, in the jobs' order.
 */
export async function timeRounds(
  jobs: readonly Job[],
  options: RoundOptions,
): Promise<JobResult[]> {
  const log = options.log ?? logLine;
  await warmUp(jobs, options.warmupSeconds, log);
  const samples: Sample[][] = jobs.map(() => []);
  const timed = () =>
    Math.min(
      ...samples.map((list) => list.reduce((s, x) => s + x.seconds, 0)),
    );
  for (
    let round = 0;
    round < MAX_ROUNDS &&
    (round < options.rounds || timed() < options.minSeconds);
    round++
  ) {
    const order = jobs.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) {
      const sample = await jobs[i].run();
      samples[i].push(sample);
      log(
        `round ${round + 1} ${jobs[i].name}: ${
          formatRate(sample.samples / sample.seconds)
        } samples/s`,
      );
    }
  }
  return jobs.map((job, i) => summarize(job.name, samples[i]));
}

function summarize(name: string, samples: readonly Sample[]): JobResult {
  const rates = samples.map((s) => s.samples / s.seconds);
  return {
    name,
    rates,
    median: median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    wallSeconds: median(samples.map((s) => s.wallSeconds)),
  };
}

/**
 * The median over rounds of `numerator`'s rate over `denominator`'s in the
 * same round: two jobs timed in one round ran close together, so a change
 * of the machine's speed between rounds cancels out of each round's ratio.
 *
 * @param numerator A job's result.
 * @param denominator Another job's result from the same rounds.
 * @returns The ratio.
 */
export function pairedRatio(
  numerator: JobResult,
  denominator: JobResult,
): number {
  return median(
    numerator.rates.map((r, i) => r / denominator.rates[i]),
  );
}

/**
 * Times `body` by the wall clock.
 *
 * @param samples Samples the call processes.
 * @param body The call.
 * @returns The sample (`seconds` = `wallSeconds`).
 */
export async function wallSample(
  samples: number,
  body: () => unknown,
): Promise<Sample> {
  const start = performance.now();
  await body();
  const seconds = (performance.now() - start) / 1000;
  return { samples, seconds, wallSeconds: seconds };
}

/**
 * A rate with thousands separators, no decimals (`1,234`).
 *
 * @param rate A number.
 * @returns The text.
 */
export function formatRate(rate: number): string {
  return Math.round(rate).toLocaleString("en-US");
}

/**
 * A result as `median (min-max)`.
 *
 * @param r A job's result.
 * @returns The text.
 */
export function formatResult(r: JobResult): string {
  return `${formatRate(r.median)} (${formatRate(r.min)}-${formatRate(r.max)})`;
}

/**
 * A ratio with two decimals and an `x`.
 *
 * @param ratio A number.
 * @returns The text.
 */
export function formatRatio(ratio: number): string {
  return `${ratio.toFixed(2)}x`;
}

/**
 * A Markdown table.
 *
 * @param header Column titles.
 * @param rows Cells, row by row.
 * @returns The table's lines joined by newlines.
 */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---|").join("")}`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}
