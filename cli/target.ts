/**
 * `train --post-training ... --target-gbops X`: a hard budget for
 * post-training. Before the run, `searchKnob` bisects mu over short runs of
 * the same post-training (the same start, data, epochs and key, without
 * checkpoints) until the frozen model lands within 1 % below the target,
 * never above it; the run then trains with the mu found (a deterministic
 * repeat of the chosen trial, now with checkpoints and reports), and the
 * checkpoint records that mu, so `--resume` continues it like any run.
 *
 * @module
 */

import { searchKnob } from "../core/budget.ts";
import type { RandomKey } from "../core/rng.ts";
import {
  gatedReport,
  type GatedState,
  trainBayesianBits,
} from "../core/methods/bayesian_bits/mod.ts";
import type { Mnist } from "../io/mnist.ts";
import { gatedModelOf, type RunConfig } from "./config.ts";
import { mainPhaseOf } from "./run_record.ts";
import { UsageError } from "./usage.ts";
import { parseNumber } from "./values.ts";

/**
 * Splits `--target-gbops X` off a `train` command line.
 *
 * @param args The arguments after `train`.
 * @returns The target (relative GBOPs, percent) or `null`, and the rest.
 * @throws {UsageError} On a missing or bad value.
 */
export function targetOf(
  args: readonly string[],
): { target: number | null; rest: string[] } {
  const rest = [...args];
  const i = rest.findIndex((a) =>
    a === "--target-gbops" || a.startsWith("--target-gbops=")
  );
  if (i < 0) return { target: null, rest };
  const inline = rest[i].includes("=");
  const text = inline ? rest[i].slice(rest[i].indexOf("=") + 1) : rest[i + 1];
  rest.splice(i, inline ? 1 : 2);
  try {
    return {
      target: parseNumber("--target-gbops", text, "positive"),
      rest,
    };
  } catch (error) {
    throw new UsageError((error as Error).message, { cause: error });
  }
}

/**
 * Checks that a target can be searched for in this run.
 *
 * @param config The recipe.
 * @param given The recipe keys the command line gave.
 * @param resume Whether the run resumes.
 * @throws {UsageError} Without post-training, with `--mu` or `--resume`.
 */
export function checkTargetRun(
  config: RunConfig,
  given: ReadonlySet<string>,
  resume: boolean,
): void {
  if (resume) {
    throw new UsageError(
      "--target-gbops starts a run: a resumed run continues with the mu its checkpoint holds",
    );
  }
  if (config.postTraining === "off") {
    throw new UsageError(
      "--target-gbops needs --post-training logits or logits+ranges (it bisects mu over short post-training runs)",
    );
  }
  if (given.has("mu")) {
    throw new UsageError("--target-gbops finds mu: leave --mu out");
  }
}

/**
 * Bisects mu over short post-training runs to a target.
 *
 * @param o The target, the recipe, the data, the start state and the run's
 *   key, and how to read a state on the host.
 * @returns The mu found, its relative GBOPs, whether it is within 1 % below
 *   the target, and the number of runs.
 * @throws {RangeError} When no run reaches the target.
 */
export async function searchTargetMu(o: {
  readonly target: number;
  readonly config: RunConfig;
  readonly data: Mnist;
  readonly start: GatedState;
  readonly key: RandomKey;
  readonly host: (state: GatedState) => Promise<GatedState>;
}): Promise<
  { mu: number; relativeGbops: number; within: boolean; runs: number }
> {
  const { config } = o;
  const found = await searchKnob({
    targetGbops: o.target,
    run: async (mu) => {
      const gated = gatedModelOf({ ...config, mu });
      const done = await trainBayesianBits(gated, o.start, o.data, {
        epochs: config.epochs,
        batchSize: config.batchSize,
        key: o.key,
        phase: mainPhaseOf(config),
        learnRanges: config.postTraining !== "logits",
        weightSchedule: config.weightSchedule,
        progressEvery: Number.MAX_SAFE_INTEGER,
      });
      const report = gatedReport(gated, await o.host(done.state), {
        testAccuracy: done.history.at(-1)?.testAccuracy ?? 0,
      });
      return { relativeGbops: report.relativeGbops, result: report };
    },
    onTrial: (t, i) =>
      console.error(
        `[target ${o.target} %] run ${i + 1}: mu ${t.knob.toPrecision(4)} -> ${
          t.relativeGbops.toFixed(3)
        } % GBOPs, test ${(100 * t.result.testAccuracy).toFixed(2)} %`,
      ),
  });
  const { knob, relativeGbops } = found.best;
  console.error(
    `[target ${o.target} %] mu ${knob.toPrecision(4)}: ${
      relativeGbops.toFixed(3)
    } % ${
      found.withinTolerance
        ? "(within 1 % below the target)"
        : "(below the target but not within 1 % of it: the cost jumps past the window between two runs)"
    }, after ${found.trials.length} runs`,
  );
  return {
    mu: knob,
    relativeGbops,
    within: found.withinTolerance,
    runs: found.trials.length,
  };
}
