/**
 * The options of `train --method NAME`: each method's own (flags and
 * config keys), the run options every method shares, the recipe they make
 * (checked the same way from flags, a config file or a checkpoint), and the
 * help text.
 *
 * @module
 */

import type { DeviceKind } from "../core/device.ts";
import type { Frozen, MethodState } from "../core/method.ts";
import type { Dataset } from "../core/data.ts";
import type { ModelGraph } from "../core/graph.ts";
import type { randomKey } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import type { TrainingSnapshot } from "../io/snapshot.ts";
import type { HistoryEntry } from "../core/report.ts";
import { modelName, MODELS } from "./config.ts";
import { parseFlags } from "./usage.ts";
import {
  checkRegularFile,
  MAX_THREADS,
  type NumberRule,
  parseNumber,
} from "./values.ts";
import { parseJson } from "../core/schema.ts";

/** One option of a method: its flag, config key, kind and default. */
export interface OptionSpec {
  /** The config key (camelCase), e.g. `"targetGbops"`. */
  readonly key: string;
  /** The flag without dashes, e.g. `"target-gbops"`. */
  readonly flag: string;
  /** A number under `rule`, or one of `choices`. */
  readonly rule?: NumberRule;
  /** The values a choice takes. */
  readonly choices?: readonly string[];
  /** The default (`null`: required). */
  readonly default: number | string | null;
  /** One line of help. */
  readonly help: string;
}

/** One epoch's progress, as a method reports it. */
export interface MethodProgress {
  /** 1-based epoch and step, and their counts. */
  readonly epoch: number;
  readonly epochs: number;
  readonly step: number;
  readonly steps: number;
  /** Mean loss so far in the epoch. */
  readonly loss: number;
  /** Samples per second so far in the epoch. */
  readonly samplesPerSecond: number;
  /** Seconds left in the run. */
  readonly etaSeconds: number;
  /** Relative GBOPs of the model as it would freeze now. */
  readonly relativeGbops: number;
  /** Further figures for the line, by name. */
  readonly extra: Readonly<Record<string, number>>;
}

/**
 * What a checkpoint holds: the running phase's snapshot and the history of
 * the phases before it (a method of several runs, e.g. BSQ's).
 */
export interface MethodCheckpoint<S extends MethodState> {
  /** The running phase's snapshot. */
  readonly snapshot: TrainingSnapshot<S>;
  /** The earlier phases' epochs. */
  readonly earlierHistory: readonly HistoryEntry[];
}

/** What the runner passes to a method's training. */
export interface MethodTrainOptions<S extends MethodState> {
  /** The run's recipe (the method's options by config key). */
  readonly recipe: Readonly<Record<string, unknown>>;
  readonly epochs: number;
  readonly batchSize: number;
  readonly key: ReturnType<typeof randomKey>;
  readonly resume?: MethodCheckpoint<S>;
  readonly progressEvery: number;
  readonly onProgress: (p: MethodProgress) => void;
  readonly onEpoch: (checkpoint: MethodCheckpoint<S>) => Promise<void>;
}

/** A method as the command line runs it. */
export interface CliMethod<M, S extends MethodState> {
  /** `--method` value. */
  readonly name: string;
  /** Its title in help and progress. */
  readonly title: string;
  /** Its options. */
  readonly options: readonly OptionSpec[];
  /** The method's model; throws a RangeError on options it refuses. */
  build(model: ModelGraph, options: Readonly<Record<string, unknown>>): M;
  /** The initial state from float parameters and a first batch. */
  init(m: M, float: MethodState, first: Tensor): Promise<S>;
  /** Trains the whole recipe (or what is left of it). */
  train(
    m: M,
    init: S,
    data: { readonly train: Dataset; readonly test: Dataset },
    options: MethodTrainOptions<S>,
  ): Promise<{ readonly state: S; readonly history: readonly HistoryEntry[] }>;
  /** A loaded snapshot as this method's (throws on another method's). */
  snapshot(stored: TrainingSnapshot): TrainingSnapshot<S>;
  /** The trained model frozen. */
  freeze(m: M, state: S): Frozen;
}

/** The options every method's run has (beside the method's own). */
export const COMMON: readonly OptionSpec[] = [
  {
    key: "epochs",
    flag: "epochs",
    rule: "positive-integer",
    default: 100,
    help: "epochs of the whole recipe",
  },
  {
    key: "batchSize",
    flag: "batch-size",
    rule: "positive-integer",
    default: 128,
    help: "mini-batch size",
  },
  {
    key: "seed",
    flag: "seed",
    rule: "non-negative-integer",
    default: 0,
    help: "random seed (initialisation, shuffling)",
  },
  {
    key: "limit",
    flag: "limit",
    rule: "positive-integer",
    default: null,
    help: "the first N training and test images only",
  },
];

/** A run's recipe: the common keys, the model, the float start and the method's. */
export type Recipe = Readonly<Record<string, unknown>> & {
  readonly method: string;
  readonly model: string;
  readonly from: string | null;
  readonly data: string | null;
  readonly epochs: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly limit: number | null;
};

/** A value of an option from text or JSON, checked. */
function optionValue(o: OptionSpec, value: unknown, where: string): unknown {
  if (o.choices) {
    if (typeof value !== "string" || !o.choices.includes(value)) {
      throw new RangeError(
        `${where} must be ${o.choices.join(" or ")}, got ${
          JSON.stringify(value)
        }`,
      );
    }
    return value;
  }
  if (typeof value === "string" && where.startsWith("--")) {
    return parseNumber(where, value, o.rule!);
  }
  if (typeof value !== "number") {
    throw new RangeError(
      `${where} must be a JSON number, got ${JSON.stringify(value)}`,
    );
  }
  return parseNumber(where, String(value), o.rule!);
}

/**
 * A recipe from a plain object (a config file, or a checkpoint's stored
 * recipe), checked exactly as flags are: own keys only, no unknown key,
 * every value by its option's rule, required options present.
 *
 * @param method The method.
 * @param object The object.
 * @param where Where it came from, for messages.
 * @returns The recipe.
 * @throws {RangeError} Naming the key.
 */
export function recipeOf(
  method: CliMethod<unknown, MethodState>,
  object: unknown,
  where: string,
): Recipe {
  if (typeof object !== "object" || object === null || Array.isArray(object)) {
    throw new RangeError(`${where} must be a JSON object`);
  }
  const o = object as Record<string, unknown>;
  const specs = [...COMMON, ...method.options];
  const known = new Set([
    ...specs.map((s) => s.key),
    "method",
    "model",
    "from",
    "data",
  ]);
  for (const key of Object.keys(o)) {
    if (!known.has(key)) {
      throw new RangeError(
        `${where}: unknown key "${key}" (keys: ${[...known].join(", ")})`,
      );
    }
  }
  const out: Record<string, unknown> = {
    method: method.name,
    model: modelName(o.model === undefined ? undefined : String(o.model)),
    from: o.from ?? null,
    data: o.data ?? null,
  };
  if (o.method !== undefined && o.method !== method.name) {
    throw new RangeError(
      `${where}: method is ${JSON.stringify(o.method)}, not ${method.name}`,
    );
  }
  for (const key of ["from", "data"]) {
    if (out[key] !== null && typeof out[key] !== "string") {
      throw new RangeError(
        `${where}: ${key} must be a path, got ${JSON.stringify(out[key])}`,
      );
    }
  }
  for (const s of specs) {
    const v = Object.hasOwn(o, s.key) ? o[s.key] : s.default;
    out[s.key] = v === null ? null : optionValue(s, v, `${where}: ${s.key}`);
  }
  return out as Recipe;
}

/** Parsed `train --method ...` arguments. */
export interface MethodArgs {
  readonly recipe: Recipe;
  readonly given: ReadonlySet<string>;
  readonly out: string | null;
  readonly resume: boolean;
  readonly replace: boolean;
  readonly device: DeviceKind;
  readonly threads: number;
  readonly progressEvery: number;
  readonly help: boolean;
}

/** The recipe of flags over a `--config` file, and the keys the flags gave. */
async function recipeFromFlags(
  method: CliMethod<unknown, MethodState>,
  v: Record<string, string | boolean | undefined>,
): Promise<{ recipe: Recipe; given: Set<string> }> {
  const config = typeof v.config === "string" ? v.config : null;
  if (config !== null) await checkRegularFile("--config", config);
  const base = config === null
    ? {}
    : parseJson(await Deno.readTextFile(config), { where: config });
  const given = new Set<string>();
  const object: Record<string, unknown> = { ...(base as object) };
  for (const key of ["model", "from", "data"]) {
    if (typeof v[key] === "string") {
      object[key] = v[key];
      given.add(key);
    }
  }
  for (const s of [...COMMON, ...method.options]) {
    const text = v[s.flag];
    if (typeof text !== "string") continue;
    object[s.key] = optionValue(s, text, `--${s.flag}`);
    given.add(s.key);
  }
  const recipe = recipeOf(method, object, config ?? "options");
  for (const s of method.options) {
    if (recipe[s.key] === null && s.default === null && !v.resume) {
      throw new RangeError(
        `--method ${method.name} needs --${s.flag} (${s.help})`,
      );
    }
  }
  return { recipe, given };
}

/** The flags of a method's run, parsed and checked. */
export async function parseMethodArgs(
  method: CliMethod<unknown, MethodState>,
  args: string[],
): Promise<MethodArgs> {
  const specs = [...COMMON, ...method.options];
  const flags = Object.fromEntries(
    specs.map((s) => [s.flag, { type: "string" as const }]),
  );
  const v = parseFlags(args[0] === "--" ? args.slice(1) : args, {
    ...flags,
    method: { type: "string" },
    model: { type: "string" },
    from: { type: "string" },
    data: { type: "string" },
    config: { type: "string" },
    out: { type: "string" },
    resume: { type: "boolean" },
    replace: { type: "boolean" },
    device: { type: "string" },
    threads: { type: "string" },
    "progress-every": { type: "string" },
    help: { type: "boolean", short: "h" },
  }) as Record<string, string | boolean | undefined>;
  if (v.help) return { help: true } as MethodArgs;
  const { recipe, given } = await recipeFromFlags(method, v);
  const dev = (v.device ?? "wasm") as string;
  if (!["wasm", "reference", "webgpu"].includes(dev)) {
    throw new RangeError(
      `--device must be wasm, reference or webgpu, got ${JSON.stringify(dev)}`,
    );
  }
  const out = typeof v.out === "string" ? v.out : null;
  if (v.resume && out === null) {
    throw new RangeError("--resume needs --out DIR: the run to continue");
  }
  if (v.resume && v.replace) {
    throw new RangeError("--resume and --replace contradict each other");
  }
  return {
    recipe,
    given,
    out,
    resume: v.resume === true,
    replace: v.replace === true,
    device: dev as DeviceKind,
    threads: v.threads === undefined
      ? Math.min(navigator.hardwareConcurrency, MAX_THREADS)
      : parseNumber("--threads", v.threads, "positive-integer", {
        max: MAX_THREADS,
      }),
    progressEvery: v["progress-every"] === undefined ? 50 : parseNumber(
      "--progress-every",
      v["progress-every"],
      "positive-integer",
    ),
    help: false,
  };
}

/** The help text of a method's run. */
export function methodUsage(method: CliMethod<unknown, MethodState>): string {
  const line = (s: OptionSpec, required: boolean) => {
    const value = s.choices
      ? s.choices.join("|")
      : s.rule?.endsWith("integer")
      ? "N"
      : "X";
    const when = s.default !== null
      ? ` (default ${s.default})`
      : required
      ? " (required)"
      : "";
    return `${`  --${s.flag} ${value}`.padEnd(29)} ${s.help}${when}`;
  };
  return `Usage: deno task train -- --method ${method.name} [options]

${method.title} on ${Object.keys(MODELS).join("/")} with MNIST (or --data DIR).

Method options (flags, or camelCase keys in a --config JSON file):
${method.options.map((o) => line(o, true)).join("\n")}

Run options:
${COMMON.map((o) => line(o, false)).join("\n")}
  --model NAME                lenet5 (default), vgg7, resnet18 or mobilenetv2
  --from FILE                 start from a float model (deno task float -- --out DIR); default: a fresh initialisation
  --data DIR                  an IDX data set (e.g. /usr/share/datasets/fashion-mnist), normalised by its own statistics
  --config FILE               a JSON object of options (flags win)
  --out DIR                   the run's directory (checkpoint, report.json, report.md)
  --resume                    continue the run in --out (its recipe is re-checked)
  --replace                   start afresh where --out holds a run
  --device KIND               wasm (default), reference or webgpu
  --threads N                 WASM threads (default: all cores)
  --progress-every N          steps between progress lines (default 50)`;
}
