/**
 * The `compare` command: Bayesian Bits and its peers on one model, one data
 * set, one float start and one epoch budget, each method's knob at a few
 * settings, every point a separate resumable run (see `cli/sweep.ts`), and
 * one Pareto table and plot of test accuracy against relative GBOPs.
 *
 * ```sh
 * deno task compare -- --epochs 30 --out runs/compare
 * deno task compare -- --epochs 3 --data /usr/share/datasets/fashion-mnist --out runs/compare-fashion
 * ```
 *
 * @module
 */

import { parseFlags, UsageError, usageStage } from "./usage.ts";
import { parseNumber } from "./values.ts";
import {
  mergeSweep,
  printPoints,
  runPoints,
  type SweepArgs,
  type SweepPoint,
} from "./sweep.ts";
import { CLI_METHODS } from "./methods.ts";

/** Usage text of `compare`. */
export const COMPARE_USAGE = `Usage: deno task compare -- [options]

Trains a float LeNet-5 (or takes --from), then every method from it with the
same data and epoch budget, each at a few settings of its knob:
  bayesian-bits  mu                  0.01, 0.03, 0.1 (last tenth of the epochs: fixed gates;
                                     budgets of 10 epochs or less: gate learning rate 0.01)
  fracbits       target GBOPs %      1.7312, 1.0371, 0.5172 (uniform 4, 3, 2 bits; widths assigned after 80 %)
  bsq            alpha               1e-3, 1e-2, 1e-1 (activations at 4 bits; the last 40 % of the
                                     epochs with the scheme fixed; re-quantized every 20 %)
Each point is a run in OUT/<method>,<knob>=<value> (resumable: run the command
again to continue); then OUT/pareto.md and OUT/pareto.svg.

Options:
  --epochs N        the budget of every method (default 30)
  --float-epochs N  epochs of the float start (default 30)
  --from FILE       a float start instead (deno task float -- --out DIR)
  --limit N         the first N training and test images only
  --data DIR        an MNIST-shaped IDX data set (e.g. /usr/share/datasets/fashion-mnist)
  --seed N          random seed of every run (default 0)
  --threads N       WASM threads per run
  --jobs N          runs at once (default 1)
  --methods LIST    the methods to run (default: all of them)
  --out DIR         default runs/compare
  --print           print the runs' commands instead of running them
  -h, --help        this text`;

/** The knobs and their settings, by method. */
export const COMPARE_GRID: Readonly<
  Record<string, { readonly knob: string; readonly values: readonly string[] }>
> = {
  "bayesian-bits": { knob: "mu", values: ["0.01", "0.03", "0.1"] },
  fracbits: { knob: "target-gbops", values: ["1.7312", "1.0371", "0.5172"] },
  bsq: { knob: "alpha", values: ["1e-3", "1e-2", "1e-1"] },
};

/**
 * The points of a comparison: every method's knob settings with the flags
 * that give each method the same epoch budget.
 *
 * @param methods The methods.
 * @param epochs The budget.
 * @returns The points, named `<method>,<knob>=<value>`.
 */
export function comparePoints(
  methods: readonly string[],
  epochs: number,
): SweepPoint[] {
  const fine = Math.max(1, Math.round(epochs / 10));
  const budget: Record<string, string[]> = {
    "bayesian-bits": [
      ...(epochs > 1
        ? ["--epochs", `${epochs - fine}`, "--fine-tune-epochs", `${fine}`]
        : ["--epochs", "1", "--fine-tune-epochs", "0"]),
      // The recipe's gate learning rate is for 100 epochs; short budgets
      // use the demo's (the other methods' widths move by their own rules).
      ...(epochs <= 10 ? ["--lr-logits", "0.01"] : []),
    ],
    fracbits: [
      "--epochs",
      `${epochs}`,
      "--assign-after",
      `${Math.max(1, Math.min(epochs, Math.round(0.8 * epochs)))}`,
    ],
    // The protocol's 60 + 40 epochs with a re-quantization every 20, scaled.
    bsq: [
      "--epochs",
      `${epochs}`,
      "--fine-tune-epochs",
      `${Math.min(epochs - 1, Math.round(0.4 * epochs))}`,
      "--requantize-every",
      `${Math.max(1, Math.round(0.2 * epochs))}`,
    ],
  };
  return methods.flatMap((method) => {
    const { knob, values } = COMPARE_GRID[method];
    return values.map((v) => ({
      id: `${method},${knob}=${v}`,
      flags: [
        ...(method === "bayesian-bits" ? [] : ["--method", method]),
        ...budget[method],
        `--${knob}`,
        v,
      ],
    }));
  });
}

/** Parsed `compare` options. */
interface CompareArgs {
  readonly epochs: number;
  readonly floatEpochs: number;
  readonly from: string | null;
  readonly common: string[];
  readonly jobs: number;
  readonly methods: string[];
  readonly out: string;
  readonly print: boolean;
}

function parseCompareArgs(args: string[]): CompareArgs | null {
  const v = parseFlags(args[0] === "--" ? args.slice(1) : args, {
    epochs: { type: "string" },
    "float-epochs": { type: "string" },
    from: { type: "string" },
    limit: { type: "string" },
    data: { type: "string" },
    seed: { type: "string" },
    threads: { type: "string" },
    jobs: { type: "string" },
    methods: { type: "string" },
    out: { type: "string" },
    print: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) return null;
  const int = (name: string, text: string | undefined, fallback: number) =>
    text === undefined
      ? fallback
      : parseNumber(`--${name}`, text, "positive-integer");
  const available = Object.keys(COMPARE_GRID).filter((m) =>
    m === "bayesian-bits" || m in CLI_METHODS
  );
  const methods = v.methods?.split(",") ?? available;
  for (const m of methods) {
    if (!available.includes(m)) {
      throw new UsageError(
        `--methods takes ${available.join(", ")}; got ${JSON.stringify(m)}`,
      );
    }
  }
  const common = [
    ...(v.limit ? ["--limit", `${int("limit", v.limit, 0)}`] : []),
    ...(v.data ? ["--data", v.data] : []),
    "--seed",
    `${
      v.seed === undefined
        ? 0
        : parseNumber("--seed", v.seed, "non-negative-integer")
    }`,
    ...(v.threads ? ["--threads", `${int("threads", v.threads, 1)}`] : []),
  ];
  return {
    epochs: int("epochs", v.epochs, 30),
    floatEpochs: int("float-epochs", v["float-epochs"], 30),
    from: v.from ?? null,
    common,
    jobs: int("jobs", v.jobs, 1),
    methods,
    out: (v.out ?? "runs/compare").replace(/\/+$/, ""),
    print: v.print ?? false,
  };
}

/** The float start: `--from`, or a float run in OUT/float (trained unless there). */
async function floatStart(a: CompareArgs): Promise<string> {
  if (a.from !== null) return a.from;
  const path = `${a.out}/float/float.safetensors`;
  if (await Deno.stat(path).then(() => true, () => false)) return path;
  const args = [
    "float",
    "--epochs",
    `${a.floatEpochs}`,
    ...a.common.filter((x, i, all) =>
      x !== "--data" && all[i - 1] !== "--data"
    ),
    "--out",
    `${a.out}/float`,
  ];
  console.error(`The float start: deno task ${args.join(" ")}`);
  const main = new URL("./main.ts", import.meta.url).pathname;
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", main, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) throw new Error(`The float start failed (exit ${code})`);
  return path;
}

/**
 * Runs `compare`.
 *
 * @param args The arguments after `compare`.
 * @returns The exit code (1 when a run failed).
 */
export async function compareCommand(args: string[]): Promise<number> {
  const a = await usageStage(() => parseCompareArgs(args));
  if (a === null) {
    console.log(COMPARE_USAGE);
    return 0;
  }
  const sweep = (from: string): SweepArgs => ({
    out: a.out,
    points: comparePoints(a.methods, a.epochs),
    jobs: a.jobs,
    print: a.print,
    train: [...a.common, "--from", from, "--progress-every", "100"],
  });
  if (a.print) {
    await printPoints(sweep(a.from ?? `${a.out}/float/float.safetensors`));
    return 0;
  }
  await Deno.mkdir(a.out, { recursive: true });
  const from = await floatStart(a);
  const failed = await runPoints(sweep(from));
  const title = `${
    a.methods.join(" / ")
  }: ${a.epochs} epochs from one float start`;
  await mergeSweep(a.out, title);
  return failed > 0 ? 1 : 0;
}
