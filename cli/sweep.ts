/**
 * The `sweep` command: a grid of `train` runs as independent, resumable
 * processes, one `--out` directory per point, and the merge of their
 * reports into a Pareto table and plot.
 *
 * ```sh
 * deno task sweep -- --out runs/sweep --grid mu=0.01,0.03,0.1 -- --epochs 3
 * deno task sweep -- --out runs/sweep --grid mu=0.01,0.1 --print -- --epochs 3
 * deno task sweep -- merge runs/sweep
 * ```
 *
 * Each point is `deno run ... cli/main.ts train <flags after --> --<key>
 * <value> ... --out <out>/<key>=<value>,...`: a point whose run finished
 * (its `model.onnx` written) is done, one with a checkpoint is resumed, any
 * other starts. `--print` lists
 * the commands instead of running them, so a job runner (GNU parallel, a
 * cluster scheduler) can fan the points out to many machines; `merge`
 * collects whatever reports the directories hold.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatParetoTable, paretoSvg, pointOf } from "../io/pareto.ts";
import { parseReport } from "../io/report_json.ts";
import { parseNumber } from "./values.ts";

/** Usage text of `sweep`. */
export const SWEEP_USAGE = `Usage:
  deno task sweep -- --out DIR --grid KEY=V1,V2,... [--grid ...] [options] -- [train flags]
  deno task sweep -- merge DIR

Runs one \`train\` per point of the grid (the product of every --grid), each
in its own directory DIR/KEY=V,..., as a separate process: a finished point (its model.onnx
written) is skipped, one with a checkpoint resumed. Then merges the reports.

Options:
  --out DIR         the sweep's directory (required)
  --grid KEY=V,...  a train flag and its values (repeatable: the product)
  --jobs N          points run at once (default 1)
  --print           print each point's command instead of running it
  -h, --help        this text

merge DIR: reads the finished points' DIR/*/report.json, prints the Pareto table, and writes
DIR/pareto.md and DIR/pareto.svg (accuracy against relative GBOPs).`;

/** One point of a sweep: its directory name and its train flags. */
export interface SweepPoint {
  /** `key=value,...`, also its directory's name. */
  readonly id: string;
  /** The flags the grid adds, e.g. `["--mu", "0.01"]`. */
  readonly flags: readonly string[];
}

/** A grid key: a train flag's name, lower case words joined by dashes. */
const KEY = /^[a-z][a-z0-9-]*$/;
/** A grid value: what a flag value or a directory name may hold. */
const VALUE = /^[A-Za-z0-9_.+-]+$/;

/**
 * The points of a grid: the product of every `KEY=V1,V2,...`, in order.
 *
 * @param grids The `--grid` values.
 * @returns The points.
 * @throws {RangeError} On a malformed grid, a repeated key or value.
 */
export function gridPoints(grids: readonly string[]): SweepPoint[] {
  if (grids.length === 0) throw new RangeError("--grid is required");
  let points: { id: string[]; flags: string[] }[] = [{ id: [], flags: [] }];
  const keys = new Set<string>();
  for (const grid of grids) {
    const eq = grid.indexOf("=");
    const key = grid.slice(0, eq);
    const values = grid.slice(eq + 1).split(",");
    if (eq < 1 || !KEY.test(key) || values.some((v) => !VALUE.test(v))) {
      throw new RangeError(
        `--grid ${
          JSON.stringify(grid.slice(0, 80))
        }: expected KEY=V1,V2,... (a flag name, values of letters, digits, . _ + -)`,
      );
    }
    if (keys.has(key) || new Set(values).size !== values.length) {
      throw new RangeError(`--grid ${key}: a key or value is repeated`);
    }
    keys.add(key);
    points = points.flatMap((p) =>
      values.map((v) => ({
        id: [...p.id, `${key}=${v}`],
        flags: [...p.flags, `--${key}`, v],
      }))
    );
  }
  return points.map((p) => ({ id: p.id.join(","), flags: p.flags }));
}

/** Where a point stands on disk. */
export type PointState = "done" | "resume" | "start";

/** Whether a path exists. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * A point's state: `done` once its run finished (it wrote `model.onnx`, the
 * last file a run writes; `report.json` is rewritten every epoch),
 * `resume` with a checkpoint, else `start`.
 *
 * @param dir The point's directory.
 * @returns Its state.
 */
export async function pointState(dir: string): Promise<PointState> {
  if (await exists(`${dir}/model.onnx`)) return "done";
  if (await exists(`${dir}/checkpoint.safetensors`)) return "resume";
  return "start";
}

/** The `deno` arguments that run a point's `train`. */
function trainArgs(
  point: SweepPoint,
  dir: string,
  state: PointState,
  train: readonly string[],
): string[] {
  const main = new URL("./main.ts", import.meta.url).pathname;
  return [
    "run",
    "--allow-read",
    "--allow-write",
    main,
    "train",
    ...train,
    ...point.flags,
    "--out",
    dir,
    ...(state === "resume" ? ["--resume"] : []),
  ];
}

/** A command line for a shell, each argument quoted when it needs it. */
function shellLine(args: readonly string[]): string {
  return args.map((a) =>
    /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`
  )
    .join(" ");
}

/** Runs one point as a process, its output appended to `<dir>/sweep.log`. */
async function runPoint(
  point: SweepPoint,
  dir: string,
  train: readonly string[],
): Promise<{ code: number; state: PointState; seconds: number }> {
  const state = await pointState(dir);
  if (state === "done") return { code: 0, state, seconds: 0 };
  await Deno.mkdir(dir, { recursive: true });
  const log = await Deno.open(`${dir}/sweep.log`, {
    append: true,
    create: true,
  });
  const start = performance.now();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: trainArgs(point, dir, state, train),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const copy = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) {
        for (let n = 0; n < chunk.length;) {
          n += await log.write(chunk.subarray(n));
        }
      }
    };
    await Promise.all([copy(child.stdout), copy(child.stderr)]);
    const { code } = await child.status;
    return { code, state, seconds: (performance.now() - start) / 1000 };
  } finally {
    log.close();
  }
}

/**
 * Prints each point's command line (resuming where a checkpoint is), for
 * a job runner.
 *
 * @param a The sweep.
 */
export async function printPoints(a: SweepArgs): Promise<void> {
  for (const point of a.points) {
    const dir = `${a.out}/${point.id}`;
    const state = await pointState(dir);
    console.log(
      shellLine([Deno.execPath(), ...trainArgs(point, dir, state, a.train)]),
    );
  }
}

/** Parsed `sweep` options; also what `compare` runs. */
export interface SweepArgs {
  /** The sweep's directory. */
  readonly out: string;
  /** The points. */
  readonly points: readonly SweepPoint[];
  /** Points run at once. */
  readonly jobs: number;
  /** Print the commands instead of running them. */
  readonly print: boolean;
  /** The train flags every point shares. */
  readonly train: readonly string[];
}

function parseSweepArgs(args: string[]): SweepArgs | null {
  const split = args.indexOf("--");
  const own = split < 0 ? args : args.slice(0, split);
  const train = split < 0 ? [] : args.slice(split + 1);
  const { values, positionals } = parseArgs({
    args: own,
    options: {
      out: { type: "string" },
      grid: { type: "string", multiple: true },
      jobs: { type: "string" },
      print: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: false,
    strict: true,
  });
  if (values.help) return null;
  if (positionals.length > 0) {
    throw new RangeError("sweep takes no positional arguments");
  }
  if (!values.out) throw new RangeError("--out DIR is required");
  if (train.includes("--out") || train.includes("--resume")) {
    throw new RangeError(
      "the train flags after -- must not set --out or --resume: the sweep does",
    );
  }
  return {
    out: values.out.replace(/\/+$/, ""),
    points: gridPoints(values.grid ?? []),
    jobs: values.jobs === undefined
      ? 1
      : parseNumber("--jobs", values.jobs, "positive-integer", { max: 64 }),
    print: values.print ?? false,
    train,
  };
}

/**
 * Runs the points, `jobs` at a time, printing one line per point.
 *
 * @param a The sweep.
 * @returns How many points failed.
 */
export async function runPoints(a: SweepArgs): Promise<number> {
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < a.points.length) {
      const i = next++;
      const point = a.points[i];
      const dir = `${a.out}/${point.id}`;
      const r = await runPoint(point, dir, a.train);
      const what = r.state === "done"
        ? "already done"
        : `${r.state === "resume" ? "resumed" : "ran"} in ${
          r.seconds.toFixed(0)
        } s`;
      if (r.code !== 0) failed++;
      console.error(
        `point ${i + 1}/${a.points.length} ${point.id}: ${what}${
          r.code === 0 ? "" : `, FAILED (exit ${r.code}; see ${dir}/sweep.log)`
        }`,
      );
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(a.jobs, a.points.length) }, worker),
  );
  return failed;
}

/**
 * Merges a sweep's reports: the Pareto table on standard output, and
 * `pareto.md` and `pareto.svg` in the directory.
 *
 * @param dir The sweep's directory.
 * @param title The plot's title (default: "Sweep DIR").
 * @returns The number of reports merged.
 * @throws {RangeError} When no point has a report, or a report is invalid
 *   (the message names its file).
 */
export async function mergeSweep(
  dir: string,
  title = `Sweep ${dir}`,
): Promise<number> {
  const points = [];
  const entries = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) entries.push(e.name);
  }
  const unfinished: string[] = [];
  for (const name of entries.sort()) {
    const path = `${dir}/${name}/report.json`;
    if (!(await exists(path))) continue;
    if ((await pointState(`${dir}/${name}`)) !== "done") {
      unfinished.push(name);
      continue;
    }
    let report;
    try {
      report = parseReport(await Deno.readTextFile(path));
    } catch (error) {
      throw new RangeError(`${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    points.push(pointOf(report, name));
  }
  if (unfinished.length > 0) {
    console.error(
      `Not merged (their runs have not finished): ${unfinished.join(", ")}`,
    );
  }
  if (points.length === 0) {
    throw new RangeError(
      `No report to merge: no finished run in ${dir}/*/ (a finished run has model.onnx)`,
    );
  }
  console.log(formatParetoTable(points).trimEnd());
  await Deno.writeTextFile(
    `${dir}/pareto.md`,
    formatParetoTable(points, { markdown: true }),
  );
  await Deno.writeTextFile(
    `${dir}/pareto.svg`,
    paretoSvg(points, { title }),
  );
  console.error(
    `Wrote ${dir}/pareto.md and ${dir}/pareto.svg (${points.length} points)`,
  );
  return points.length;
}

/**
 * Runs `sweep` (or `sweep merge DIR`).
 *
 * @param args The arguments after `sweep`.
 * @returns The exit code: 0, 1 when a point failed, 2 on a usage error.
 */
export async function sweepCommand(args: string[]): Promise<number> {
  if (args[0] === "merge") {
    if (args.length !== 2) {
      console.error(`sweep merge takes one directory.\n\n${SWEEP_USAGE}`);
      return 2;
    }
    await mergeSweep(args[1].replace(/\/+$/, ""));
    return 0;
  }
  let parsed: SweepArgs | null;
  try {
    parsed = parseSweepArgs(args);
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${SWEEP_USAGE}`);
    return 2;
  }
  if (!parsed) {
    console.log(SWEEP_USAGE);
    return 0;
  }
  if (parsed.print) {
    for (const point of parsed.points) {
      const dir = `${parsed.out}/${point.id}`;
      const state = await pointState(dir);
      console.log(
        shellLine([
          Deno.execPath(),
          ...trainArgs(point, dir, state, parsed.train),
        ]),
      );
    }
    return 0;
  }
  await Deno.mkdir(parsed.out, { recursive: true });
  const failed = await runPoints(parsed);
  if (failed < parsed.points.length) await mergeSweep(parsed.out);
  return failed > 0 ? 1 : 0;
}
