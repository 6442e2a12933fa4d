/**
 * `train --method bsq|fracbits`: the peers of Bayesian Bits through one
 * runner. Each method supplies its options (flags and config keys), how to
 * build, initialise, train and freeze it ({@link CliMethod}); the runner does
 * what every run needs: strict values, the run directory (lock, `--replace`,
 * `--resume` re-checking the stored recipe as a fresh one), the data, the
 * float start (`--from`) or a fresh initialisation, progress lines, a
 * checkpoint and the reports after every epoch, and the final report.
 *
 * @module
 */

import { type Device, device, type DeviceKind } from "../core/device.ts";
import { evaluateFrozen, withFrozen } from "../core/frozen.ts";
import { initGraph, type ModelGraph } from "../core/graph.ts";
import type { Frozen, MethodState } from "../core/method.ts";
import {
  frozenReport,
  type HistoryEntry,
  type QuantizationReport,
  type ReportValue,
} from "../core/report.ts";
import { randomKey, splitKey } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import type { Dataset } from "../core/data.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { onnxSizes, saveOnnx } from "../io/onnx.ts";
import type { ParamRecord } from "../core/loop.ts";
import {
  formatReportMarkdown,
  formatReportTable,
  reportToJson,
  summarizeLayerBits,
} from "../io/report.ts";
import { checkOutputPath, RunDirectory } from "../io/run_dir.ts";
import {
  loadSnapshot,
  saveSnapshot,
  type TrainingSnapshot,
} from "../io/snapshot.ts";
import { checkModelFits, modelName, MODELS } from "./config.ts";
import { loadRunData, type RunData } from "./data.ts";
import { loadFloat } from "./float_start.ts";
import { formatSeconds } from "./format.ts";
import { parseFlags, provenance, UsageError, usageStage } from "./usage.ts";
import {
  checkRegularFile,
  MAX_THREADS,
  type NumberRule,
  parseNumber,
} from "./values.ts";

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

/** What the runner passes to a method's training. */
export interface MethodTrainOptions<S extends MethodState> {
  readonly epochs: number;
  readonly batchSize: number;
  readonly key: ReturnType<typeof randomKey>;
  readonly resume?: TrainingSnapshot<S>;
  readonly progressEvery: number;
  readonly onProgress: (p: MethodProgress) => void;
  readonly onEpoch: (snapshot: TrainingSnapshot<S>) => Promise<void>;
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
  ): Promise<TrainingSnapshot<S>>;
  /** A loaded snapshot as this method's (throws on another method's). */
  snapshot(stored: TrainingSnapshot): TrainingSnapshot<S>;
  /** The trained model frozen. */
  freeze(m: M, state: S): Frozen;
}

/** The options every method's run has (beside the method's own). */
const COMMON: readonly OptionSpec[] = [
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
interface MethodArgs {
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

/** The flags of a method's run, parsed and checked. */
async function parseMethodArgs(
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
  const base = typeof v.config === "string"
    ? JSON.parse(await Deno.readTextFile(v.config)) as Record<string, unknown>
    : {};
  const given = new Set<string>();
  const object: Record<string, unknown> = { ...base };
  for (const key of ["model", "from", "data"]) {
    if (typeof v[key] === "string") {
      object[key] = v[key];
      given.add(key);
    }
  }
  for (const s of specs) {
    const text = v[s.flag];
    if (typeof text !== "string") continue;
    object[s.key] = optionValue(s, text, `--${s.flag}`);
    given.add(s.key);
  }
  if (v.help) return { help: true } as MethodArgs;
  const recipe = recipeOf(
    method,
    object,
    v.config ? String(v.config) : "options",
  );
  for (const s of method.options) {
    if (recipe[s.key] === null && s.default === null && !v.resume) {
      throw new RangeError(
        `--method ${method.name} needs --${s.flag} (${s.help})`,
      );
    }
  }
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

/** Where a run stands: its recipe and, when resuming, the snapshot. */
interface Start<S extends MethodState> {
  readonly recipe: Recipe;
  readonly resume: TrainingSnapshot<S> | null;
  readonly wall: number;
}

/** Reads the run to continue, re-checking its recipe and refusing differing flags. */
async function resumeStart<S extends MethodState>(
  method: CliMethod<unknown, S>,
  a: MethodArgs,
  path: string,
  dev: Device,
): Promise<Start<S>> {
  const stored = await loadSnapshot(path, { device: dev });
  const run = stored.run as { recipe?: unknown; wallSeconds?: unknown } | null;
  const recipe = recipeOf(
    method as unknown as CliMethod<unknown, MethodState>,
    run?.recipe,
    `checkpoint "${path}": run.recipe`,
  );
  for (const key of a.given) {
    if (JSON.stringify(recipe[key]) !== JSON.stringify(a.recipe[key])) {
      throw new UsageError(
        `Cannot resume with ${key} = ${
          JSON.stringify(a.recipe[key])
        }: the run in ${path} has ${key} = ${JSON.stringify(recipe[key])}`,
      );
    }
  }
  const snapshot = method.snapshot(stored.snapshot);
  if (snapshot.epochs !== recipe.epochs || snapshot.epoch > snapshot.epochs) {
    throw new RangeError(
      `checkpoint "${path}": epoch ${snapshot.epoch} of ${snapshot.epochs} does not fit the recipe's ${recipe.epochs} epochs`,
    );
  }
  const wall = typeof run?.wallSeconds === "number" && run.wallSeconds >= 0
    ? run.wallSeconds
    : 0;
  console.error(
    `Resuming ${path}: epoch ${snapshot.epoch}/${snapshot.epochs} done`,
  );
  return { recipe, resume: snapshot, wall };
}

/** What one run needs while it trains. */
interface Run<M, S extends MethodState> {
  readonly method: CliMethod<M, S>;
  readonly m: M;
  readonly recipe: Recipe;
  readonly out: string;
  readonly dir: RunDirectory;
  readonly data: RunData;
  readonly facts: Record<string, ReportValue>;
  readonly wall: number;
  readonly started: number;
}

/** The report of a state: frozen, with the history so far. */
function reportOf<M, S extends MethodState>(
  run: Run<M, S>,
  state: S,
  history: readonly HistoryEntry[],
  testAccuracy: number,
): QuantizationReport {
  return withFrozen(
    state.params,
    () => run.method.freeze(run.m, state),
    (f) =>
      frozenReport(f, {
        testAccuracy,
        history,
        methodOptions: Object.fromEntries(
          run.method.options.map((
            o,
          ) => [o.key, run.recipe[o.key] as ReportValue]),
        ),
        run: {
          ...run.facts,
          wallSeconds: Math.round(
            run.wall + (performance.now() - run.started) / 1000,
          ),
        },
      }),
  );
}

/** After each epoch: the checkpoint, the reports, one line. */
async function endOfEpoch<M, S extends MethodState>(
  run: Run<M, S>,
  snapshot: TrainingSnapshot<S>,
): Promise<void> {
  const wallSeconds = run.wall + (performance.now() - run.started) / 1000;
  await saveSnapshot(`${run.out}/checkpoint.safetensors`, {
    snapshot,
    run: { recipe: run.recipe, wallSeconds },
  });
  await run.dir.commit();
  const last = snapshot.history[snapshot.history.length - 1];
  const report = reportOf(
    run,
    snapshot.state,
    snapshot.history,
    last.testAccuracy,
  );
  await writeFileAtomic(`${run.out}/report.json`, reportToJson(report) + "\n");
  await writeFileAtomic(`${run.out}/report.md`, formatReportMarkdown(report));
  console.error(
    `[${run.method.name}] epoch ${last.epoch}/${snapshot.epochs}: test ${
      (100 * last.testAccuracy).toFixed(2)
    } %, ${report.relativeGbops.toFixed(3)} % GBOPs, ${
      summarizeLayerBits(report)
    }; ${last.seconds.toFixed(0)} s (${
      last.samplesPerSecond.toFixed(0)
    } samples/s)`,
  );
}

/** One progress line on stderr. */
function printProgress(name: string, p: MethodProgress): void {
  const extra = Object.entries(p.extra).map(([k, v]) =>
    ` ${k} ${v.toPrecision(4)}`
  ).join("");
  console.error(
    `[${name}] epoch ${p.epoch}/${p.epochs} step ${p.step}/${p.steps} loss ${
      p.loss.toFixed(4)
    }${extra} ${p.samplesPerSecond.toFixed(0)} samples/s ETA ${
      formatSeconds(p.etaSeconds)
    } GBOPs ${p.relativeGbops.toFixed(3)} %`,
  );
}

/** The initial state of a fresh run: the float start or a fresh model, and a first batch. */
async function initialState<M, S extends MethodState>(
  run: Run<M, S>,
  model: ModelGraph,
  float: MethodState | null,
  dev: Device,
  initKey: ReturnType<typeof randomKey>,
): Promise<S> {
  const start = float ?? initGraph(model, initKey, dev);
  const size = Math.min(run.recipe.batchSize, run.data.train.count);
  const image = run.data.train.shape.reduce((a, b) => a * b, 1);
  const first = dev.upload(
    run.data.train.images.subarray(0, size * image),
    [size, ...run.data.train.shape],
  );
  return await run.method.init(run.m, start, first);
}

/**
 * Runs `train --method NAME`: see the module documentation. The order
 * keeps the user's files safe, as the Bayesian Bits run does: values and
 * options checked, `--from` loaded, then the directory locked.
 *
 * @param method The method.
 * @param args The arguments after `train`.
 * @returns The exit code.
 */
export async function methodTrainCommand<M, S extends MethodState>(
  method: CliMethod<M, S>,
  args: string[],
): Promise<number> {
  const generic = method as unknown as CliMethod<unknown, MethodState>;
  const a = await usageStage(async () => {
    const parsed = await parseMethodArgs(generic, args);
    if (!parsed.help && !parsed.resume) {
      checkModelFits(parsed.recipe.model, [1, 28, 28], "MNIST");
      method.build(MODELS[parsed.recipe.model].build(), parsed.recipe);
    }
    return parsed;
  });
  if (a.help) {
    console.log(methodUsage(generic));
    return 0;
  }
  const started = performance.now();
  const out = a.out ??
    `runs/${new Date().toISOString().replaceAll(":", "-").slice(0, 19)}`;
  const checkpoint = `${out}/checkpoint.safetensors`;
  if (!a.resume && a.recipe.from !== null) {
    await checkRegularFile("--from", a.recipe.from);
  }
  await checkOutputPath("--out", out);
  using dev = await device(a.device, { threads: a.threads });
  const float = !a.resume && a.recipe.from !== null
    ? await loadFloat(a.recipe.from, a.recipe.model, dev)
    : null;
  await using dir = await RunDirectory.open(out, { command: "train" });
  const start: Start<S> = a.resume
    ? await resumeStart(method, a, checkpoint, dev)
    : await freshStart(a, checkpoint);
  const { recipe } = start;
  const data = await loadRunData(recipe.data, recipe.limit);
  checkModelFits(recipe.model, data.train.shape, data.name);
  if (a.replace) {
    await dir.setAside([
      "checkpoint.safetensors",
      "report.json",
      "report.md",
      "model.onnx",
    ]);
  }
  const model = MODELS[recipe.model].build();
  const run: Run<M, S> = {
    method,
    m: method.build(model, recipe),
    recipe,
    out,
    dir,
    data,
    facts: {
      command: `deno task train -- ${args.filter((x) => x !== "--").join(" ")}`
        .trim(),
      data: data.name,
      trainImages: data.train.count,
      testImages: data.test.count,
      ...(await provenance(dev, a.threads)),
    },
    wall: start.wall,
    started,
  };
  const [initKey, trainKey] = splitKey(randomKey(recipe.seed), 2);
  const init = start.resume?.state ??
    await initialState(run, model, float, dev, initKey);
  const done = await method.train(run.m, init, data, {
    epochs: recipe.epochs,
    batchSize: recipe.batchSize,
    key: trainKey,
    resume: start.resume ?? undefined,
    progressEvery: a.progressEvery,
    onProgress: (p) => printProgress(method.name, p),
    onEpoch: (s) => endOfEpoch(run, s),
  });
  await finish(run, done);
  return 0;
}

/** A fresh start: refuses an existing run unless `--replace`. */
async function freshStart<S extends MethodState>(
  a: MethodArgs,
  checkpoint: string,
): Promise<Start<S>> {
  if (!a.replace && (await Deno.stat(checkpoint).catch(() => null))) {
    throw new RangeError(
      `${checkpoint} exists: pass --resume to continue that run, or choose another --out`,
    );
  }
  return { recipe: a.recipe, resume: null, wall: 0 };
}

/** The final report, printed, and the frozen model's accuracy checked. */
async function finish<M, S extends MethodState>(
  run: Run<M, S>,
  done: TrainingSnapshot<S>,
): Promise<void> {
  const last = done.history.at(-1);
  const accuracy = last?.testAccuracy ??
    await withFrozen(
      done.state.params,
      () => run.method.freeze(run.m, done.state),
      (f) => evaluateFrozen(f, run.data.test),
    );
  const report = reportOf(run, done.state, done.history, accuracy);
  await writeFileAtomic(`${run.out}/report.json`, reportToJson(report) + "\n");
  await writeFileAtomic(`${run.out}/report.md`, formatReportMarkdown(report));
  console.log(formatReportTable(report));
  console.log(
    `\nReports: ${run.out}/report.json, ${run.out}/report.md; checkpoint: ${run.out}/checkpoint.safetensors`,
  );
  await exportModel(
    run.out,
    done.state.params,
    () => run.method.freeze(run.m, done.state),
  );
}

/**
 * Writes `OUT/model.onnx` (QuantizeLinear/DequantizeLinear at the learned
 * widths) and prints its size beside the float model's and the notes of
 * the export (e.g. widths stored on a wider integer type).
 *
 * @param out The run's directory.
 * @param params The state's parameters.
 * @param freeze Freezes the state.
 */
export async function exportModel(
  out: string,
  params: ParamRecord,
  freeze: () => Frozen,
): Promise<void> {
  const path = `${out}/model.onnx`;
  await withFrozen(params, freeze, async (frozen) => {
    const exported = await saveOnnx(path, frozen);
    const sizes = onnxSizes(frozen);
    console.log(
      `Exported model (ONNX, opset ${exported.opset}): ${path}, ${exported.bytes.length} bytes (the float model: ${sizes.floatBytes} bytes, ${
        (100 * exported.bytes.length / sizes.floatBytes).toFixed(1)
      } %)`,
    );
    const notes = exported.layers.flatMap((l) =>
      l.notes.map((n) => `  ${l.name}: ${n}`)
    );
    if (notes.length > 0) console.log(notes.join("\n"));
  });
}
