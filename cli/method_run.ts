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

import { type Device, device } from "../core/device.ts";
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
import { loadSnapshot, saveSnapshot } from "../io/snapshot.ts";
import { checkModelFits, MODELS } from "./config.ts";
import {
  type CliMethod,
  type MethodArgs,
  type MethodCheckpoint,
  type MethodProgress,
  methodUsage,
  parseMethodArgs,
  type Recipe,
  recipeOf,
} from "./method_args.ts";
import { loadRunData, type RunData } from "./data.ts";
import { loadFloat } from "./float_start.ts";
import { formatSeconds } from "./format.ts";
import { parseHistory } from "../io/report_json.ts";
import { provenance, UsageError, usageStage } from "./usage.ts";
import { checkRegularFile } from "./values.ts";

export type {
  CliMethod,
  MethodProgress,
  MethodTrainOptions,
  OptionSpec,
  Recipe,
} from "./method_args.ts";

/** Where a run stands: its recipe and, when resuming, the snapshot. */
interface Start<S extends MethodState> {
  readonly recipe: Recipe;
  readonly resume: MethodCheckpoint<S> | null;
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
  const earlierHistory = parseHistory(
    (run as { earlierHistory?: unknown } | null)?.earlierHistory ?? [],
    `checkpoint "${path}"`,
    "run.earlierHistory",
  );
  const wall = typeof run?.wallSeconds === "number" && run.wallSeconds >= 0
    ? run.wallSeconds
    : 0;
  console.error(
    `Resuming ${path}: ${snapshot.phase} epoch ${snapshot.epoch}/${snapshot.epochs} done`,
  );
  return { recipe, resume: { snapshot, earlierHistory }, wall };
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
  { snapshot, earlierHistory }: MethodCheckpoint<S>,
): Promise<void> {
  const wallSeconds = run.wall + (performance.now() - run.started) / 1000;
  await saveSnapshot(`${run.out}/checkpoint.safetensors`, {
    snapshot,
    run: { recipe: run.recipe, wallSeconds, earlierHistory },
  });
  await run.dir.commit();
  const history = [...earlierHistory, ...snapshot.history];
  const last = history[history.length - 1];
  const report = reportOf(run, snapshot.state, history, last.testAccuracy);
  await writeFileAtomic(`${run.out}/report.json`, reportToJson(report) + "\n");
  await writeFileAtomic(`${run.out}/report.md`, formatReportMarkdown(report));
  console.error(
    `[${snapshot.phase}] epoch ${last.epoch}/${run.recipe.epochs}: test ${
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
  const init = start.resume?.snapshot.state ??
    await initialState(run, model, float, dev, initKey);
  const done = await method.train(run.m, init, data, {
    recipe,
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
  done: { readonly state: S; readonly history: readonly HistoryEntry[] },
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
