/**
 * The command-line flags `bench/main.ts` and `bench/compare.ts` share.
 *
 * @module
 */

import { parseFlags } from "../cli/usage.ts";

/** The parsed flags. */
export interface BenchArgs {
  /** `--limit`: training images per epoch (test images: at most 10,000). */
  readonly limit: number;
  /** `--threads`: WASM thread counts. */
  readonly threads: readonly number[];
  /** `--only`: the sections to run. */
  readonly only: readonly string[];
  /** `--rounds`: minimum timed rounds. */
  readonly rounds: number;
  /** `--min-seconds`: minimum timed seconds per figure. */
  readonly minSeconds: number;
  /** `--warmup-seconds`: minimum warm-up. */
  readonly warmupSeconds: number;
  /** `--json`: a file to write the figures to. */
  readonly json?: string;
  /** Further string flags, by name. */
  readonly extra: Readonly<Record<string, string | undefined>>;
}

/** Defaults and extra flags of one script. */
export interface FlagSpec {
  /** Default `--threads`. */
  readonly threads: string;
  /** The values `--only` accepts; the default is all of them. */
  readonly sections: readonly string[];
  /** Names of further string flags (no default). */
  readonly extra?: readonly string[];
}

function count(name: string, text: string, integer: boolean): number {
  const v = Number(text);
  if (
    text.trim() === "" || !Number.isFinite(v) || v < 0 ||
    (integer && !Number.isInteger(v))
  ) {
    throw new RangeError(
      `--${name} takes a non-negative ${
        integer ? "integer" : "number"
      }, got "${text}"`,
    );
  }
  return v;
}

/**
 * Parses the flags.
 *
 * @param args The command line (`Deno.args`).
 * @param spec The script's defaults and extra flags.
 * @returns The values.
 * @throws {RangeError} On a malformed value or an unknown section.
 * @throws {UsageError} On an unknown flag (with the nearest known one).
 */
export function parseBenchArgs(
  args: readonly string[],
  spec: FlagSpec,
): BenchArgs {
  const extra = Object.fromEntries(
    (spec.extra ?? []).map((name) => [name, { type: "string" as const }]),
  );
  // `deno task bench -- --flag` passes the `--` through.
  const values = parseFlags(args[0] === "--" ? args.slice(1) : [...args], {
    limit: { type: "string", default: "60000" },
    threads: { type: "string", default: spec.threads },
    only: { type: "string", default: spec.sections.join(",") },
    rounds: { type: "string", default: "3" },
    "min-seconds": { type: "string", default: "0.3" },
    "warmup-seconds": { type: "string", default: "30" },
    json: { type: "string" },
    ...extra,
  });
  const only = values.only.split(",");
  for (const s of only) {
    if (!spec.sections.includes(s)) {
      throw new RangeError(
        `--only takes ${
          spec.sections.join(", ")
        } (comma-separated), got "${s}"`,
      );
    }
  }
  const threads = values.threads.split(",").map((t) =>
    count("threads", t, true)
  );
  const limit = count("limit", values.limit, true);
  if (limit < 1 || threads.some((t) => t < 1)) {
    throw new RangeError("--limit and --threads take positive integers");
  }
  const v = values as Record<string, string | undefined>;
  return {
    limit,
    threads,
    only,
    rounds: count("rounds", values.rounds, true),
    minSeconds: count("min-seconds", values["min-seconds"], false),
    warmupSeconds: count("warmup-seconds", values["warmup-seconds"], false),
    json: values.json,
    extra: Object.fromEntries((spec.extra ?? []).map((n) => [n, v[n]])),
  };
}

/**
 * {@link parseBenchArgs} for a script's entry point: `--help` prints the
 * flags and exits 0; a bad flag or value prints the error and exits 2.
 *
 * @param args The command line (`Deno.args`).
 * @param spec The script's defaults and extra flags.
 * @returns The values.
 */
export function benchArgsOrExit(
  args: readonly string[],
  spec: FlagSpec,
): BenchArgs {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(
      `Flags: --limit N (training images, default 60000), --threads LIST (default ${spec.threads}), ` +
        `--only ${
          spec.sections.join(",")
        }, --rounds N (default 3), --min-seconds X (default 0.3), ` +
        `--warmup-seconds X (default 30), --json FILE${
          (spec.extra ?? []).map((e) => `, --${e} VALUE`).join("")
        }`,
    );
    Deno.exit(0);
  }
  try {
    return parseBenchArgs(args, spec);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(2);
  }
}
