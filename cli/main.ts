/**
 * The `bbits` command line.
 *
 * ```sh
 * deno task train -- --epochs 100 --mu 0.01 --out runs/mu0.01
 * deno task float -- --epochs 3 --batch-size 128 --lr 1e-3 --seed 0
 * ```
 *
 * Commands:
 * - `train`: Bayesian Bits on LeNet-5 / MNIST (see `cli/train.ts`; its recipe
 *   and flags: `cli/config.ts`).
 * - `export`: a run's checkpoint as a mixed-precision model (see `cli/export.ts`).
 * - `float`: float training of LeNet-5 on the embedded MNIST, with progress
 *   (epoch, step, loss, samples/s, ETA) and the test accuracy per epoch (see
 *   `cli/float.ts`).
 * - `sweep`: a grid of `train` runs as separate, resumable processes and the
 *   Pareto table and plot of their reports (see `cli/sweep.ts`).
 * - `compare`: the methods from one float start at one epoch budget, on one
 *   Pareto plot (see `cli/compare.ts`).
 *
 * `train` and `float` take `--model NAME` (a model of the zoo; LeNet-5 by
 * default).
 *
 * @module
 */

import { exportCommand } from "./export.ts";
import { FLOAT_USAGE, floatCommand } from "./float.ts";
import { sweepCommand } from "./sweep.ts";
import { compareCommand } from "./compare.ts";
import { CLI_METHODS, methodOf } from "./methods.ts";
import { methodTrainCommand } from "./method_run.ts";
import { trainCommand } from "./train.ts";
import { UsageError } from "./usage.ts";
import { VERSION } from "../core/version.ts";

const USAGE = `Usage: deno run -A cli/main.ts <command> [options]
       deno run -A cli/main.ts --version

Commands:
  train    Bayesian Bits on LeNet-5 / MNIST (deno task train -- --help);
           --method bsq|fracbits|float for the peers (deno task train -- --method fracbits --help)
  export   a run's checkpoint as a mixed-precision model (deno task export -- --help)
  float    float training of LeNet-5 on MNIST (this text)
  sweep    a grid of train runs, one process each, merged into a Pareto plot (deno task sweep -- --help)
  compare  every method from one float start at one budget, on one Pareto plot (deno task compare -- --help)

${FLOAT_USAGE}`;

/**
 * Runs the CLI with the given arguments.
 *
 * @param args Command-line arguments (without the program name).
 * @returns The process exit code.
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  // Flags before a `--` that hands the rest on (sweep), after the one
  // `deno task x -- ...` may leave.
  const flags = rest[0] === "--" ? rest.slice(1) : rest;
  const own = flags.includes("--")
    ? flags.slice(0, flags.indexOf("--"))
    : flags;
  if (command === "--version" || own.includes("--version")) {
    console.log(`@bbits/core ${VERSION} (deno ${Deno.version.deno})`);
    return 0;
  }
  if (command === undefined || command === "-h" || command === "--help") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === "train") {
    const { method, rest: others } = methodOf(rest);
    if (method === "float") return await floatCommand(others, USAGE);
    if (method !== "bayesian-bits") {
      return await methodTrainCommand(CLI_METHODS[method], others);
    }
    return await trainCommand(others);
  }
  if (command === "export") return await exportCommand(rest);
  if (command === "float") return await floatCommand(rest, USAGE);
  if (command === "sweep") return await sweepCommand(rest);
  if (command === "compare") return await compareCommand(rest);
  console.error(`Unknown command "${command}".\n\n${USAGE}`);
  return 2;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    // Usage errors (a flag, a value) exit with 2; failures with 1.
    Deno.exit(error instanceof UsageError ? 2 : 1);
  }
}
