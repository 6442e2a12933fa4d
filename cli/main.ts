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
 *
 * `train` and `float` take `--model NAME` (a model of the zoo; LeNet-5 by
 * default).
 *
 * @module
 */

import { exportCommand } from "./export.ts";
import { FLOAT_USAGE, floatCommand } from "./float.ts";
import { sweepCommand } from "./sweep.ts";
import { trainCommand } from "./train.ts";

const USAGE = `Usage: deno run -A cli/main.ts <command> [options]

Commands:
  train    Bayesian Bits on LeNet-5 / MNIST (deno task train -- --help)
  export   a run's checkpoint as a mixed-precision model (deno task export -- --help)
  float    float training of LeNet-5 on MNIST (this text)
  sweep    a grid of train runs, one process each, merged into a Pareto plot (deno task sweep -- --help)

${FLOAT_USAGE}`;

/**
 * Runs the CLI with the given arguments.
 *
 * @param args Command-line arguments (without the program name).
 * @returns The process exit code.
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === "train") return await trainCommand(rest);
  if (command === "export") return await exportCommand(rest);
  if (command === "float") return await floatCommand(rest, USAGE);
  if (command === "sweep") return await sweepCommand(rest);
  console.error(`Unknown command "${command}".\n\n${USAGE}`);
  return 2;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
