/**
 * The methods `train --method` runs besides Bayesian Bits (whose recipe is
 * `cli/config.ts`): each one's options and how the runner of
 * `cli/method_run.ts` builds, initialises, trains and freezes it.
 *
 * @module
 */

import type { MethodState } from "../core/method.ts";
import {
  clipsFromBatch,
  type FracBitsModel,
  fracBitsRecipe,
  type FracBitsSnapshot,
  fracBitsSnapshot,
  type FracBitsState,
  freezeFracBits,
  initFracBits,
  trainFracBits,
} from "../core/methods/fracbits/mod.ts";
import type { TrainingSnapshot } from "../io/snapshot.ts";
import {
  bsq,
  type BsqCheckpoint,
  type BsqModel,
  bsqSnapshot,
  type BsqState,
  freezeBsq,
  initBsq,
  type StoredBsqSnapshot,
  trainBsq,
} from "../core/methods/bsq/mod.ts";
import type { CliMethod, MethodCheckpoint } from "./method_args.ts";
import { UsageError } from "./usage.ts";

/** FracBits (spec fracbits.md): its options as flags and config keys. */
export const FRACBITS_CLI: CliMethod<FracBitsModel, FracBitsState> = {
  name: "fracbits",
  title: "FracBits (fractional bit widths, a BitOPs target, hard assignment)",
  options: [
    {
      key: "targetGbops",
      flag: "target-gbops",
      rule: "positive",
      default: null,
      help:
        "target relative GBOPs in percent (e.g. 1.0371 = uniform 3 bits on LeNet-5)",
    },
    {
      key: "kappa",
      flag: "kappa",
      rule: "positive",
      default: 1,
      help: "weight of the penalty kappa * |cost - target|",
    },
    {
      key: "granularity",
      flag: "granularity",
      choices: ["layer", "kernel"],
      default: "layer",
      help: "a width per layer or per output kernel",
    },
    {
      key: "minBits",
      flag: "min-bits",
      rule: "non-negative-integer",
      default: 1,
      help: "narrowest width (0: prune kernels; kernel-wise only)",
    },
    {
      key: "maxBits",
      flag: "max-bits",
      rule: "positive-integer",
      default: 8,
      help: "widest width",
    },
    {
      key: "clipInit",
      flag: "clip-init",
      choices: ["batch", "fixed"],
      default: "batch",
      help:
        "PACT clips start at a first batch's maximum (as Bayesian Bits' ranges) or at the code's 8/10",
    },
    {
      key: "rescale",
      flag: "rescale",
      choices: ["all", "classifier", "none"],
      default: "all",
      help: "the DoReFa weights' constant rescale",
    },
    {
      key: "assignAfter",
      flag: "assign-after",
      rule: "positive-integer",
      default: 80,
      help: "the epoch after which the widths are assigned and frozen",
    },
    {
      key: "lr",
      flag: "lr",
      rule: "positive",
      default: 1e-3,
      help: "Adam learning rate (weights, widths, clips)",
    },
  ],
  build: (model, o) =>
    fracBitsRecipe(model, {
      targetRelativeGbops: o.targetGbops as number,
      kappa: o.kappa as number,
      granularity: o.granularity as "layer" | "kernel",
      minBits: o.minBits as number,
      maxBits: o.maxBits as number,
      clipInit: o.clipInit as "batch" | "fixed",
      rescale: o.rescale as "all" | "classifier" | "none",
      assignAfterEpoch: o.assignAfter as number,
      learningRate: o.lr as number,
    }),
  init: async (fm, float, first) => {
    const state = initFracBits(fm, float);
    return fm.options.clipInit === "batch"
      ? await clipsFromBatch(fm, state, first)
      : state;
  },
  train: (fm, init, data, o) =>
    trainFracBits(fm, init, data, {
      epochs: o.epochs,
      batchSize: o.batchSize,
      key: o.key,
      resume: o.resume?.snapshot as FracBitsSnapshot | undefined,
      progressEvery: o.progressEvery,
      onProgress: (p) =>
        o.onProgress({
          ...p,
          extra: { ce: p.crossEntropy, penalty: p.penalty, cost: p.cost },
        }),
      onEpoch: (s) =>
        o.onEpoch({
          snapshot: s as TrainingSnapshot<FracBitsState>,
          earlierHistory: [],
        }),
    }),
  snapshot: (s) =>
    fracBitsSnapshot(
      s as TrainingSnapshot<MethodState & Record<string, unknown>>,
    ) as TrainingSnapshot<FracBitsState>,
  freeze: freezeFracBits,
};

/** BSQ (spec bsq.md): its options as flags and config keys. */
export const BSQ_CLI: CliMethod<BsqModel, BsqState> = {
  name: "bsq",
  title: "BSQ (bit-plane weights, a bit-level group Lasso, re-quantization)",
  options: [
    {
      key: "alpha",
      flag: "alpha",
      rule: "non-negative",
      default: 0.01,
      help: "strength of the memory-weighted bit-level group Lasso",
    },
    {
      key: "activationBits",
      flag: "activation-bits",
      rule: "non-negative-integer",
      default: 4,
      help: "fixed width of every hidden activation (0: float)",
    },
    {
      key: "initialBits",
      flag: "initial-bits",
      rule: "positive-integer",
      default: 8,
      help: "planes of the converted float model",
    },
    {
      key: "maxBits",
      flag: "max-bits",
      rule: "positive-integer",
      default: 8,
      help: "the most planes a layer may grow to (1..16)",
    },
    {
      key: "fineTuneEpochs",
      flag: "fine-tune-epochs",
      rule: "non-negative-integer",
      default: 40,
      help: "the last epochs, with the scheme fixed",
    },
    {
      key: "requantizeEvery",
      flag: "requantize-every",
      rule: "positive-integer",
      default: 20,
      help: "epochs between re-quantizations (Prun_Int)",
    },
    {
      key: "lr",
      flag: "lr",
      rule: "positive",
      default: 1e-3,
      help: "Adam learning rate",
    },
  ],
  build: (model, o) => {
    if ((o.fineTuneEpochs as number) > (o.epochs as number)) {
      throw new RangeError(
        `--fine-tune-epochs ${o.fineTuneEpochs} exceeds --epochs ${o.epochs}`,
      );
    }
    return bsq(model, {
      alpha: o.alpha as number,
      activationBits: o.activationBits as number,
      initialBits: o.initialBits as number,
      maxBits: o.maxBits as number,
    });
  },
  init: (q, float, first) => initBsq(q, float, first),
  train: async (q, init, data, o) => {
    const r = o.recipe as {
      fineTuneEpochs: number;
      requantizeEvery: number;
      lr: number;
    };
    const result = await trainBsq(q, init, data, {
      bsqEpochs: o.epochs - r.fineTuneEpochs,
      fineTuneEpochs: r.fineTuneEpochs,
      requantizeEvery: r.requantizeEvery,
      learningRate: r.lr,
      batchSize: o.batchSize,
      key: o.key,
      resume: o.resume as BsqCheckpoint | undefined,
      progressEvery: o.progressEvery,
      onProgress: (p) =>
        o.onProgress({
          ...p,
          extra: { ce: p.crossEntropy, R: p.regularizer },
        }),
      onEpoch: (c) => o.onEpoch(c as unknown as MethodCheckpoint<BsqState>),
    });
    return { state: result.state, history: result.history };
  },
  snapshot: (s) =>
    bsqSnapshot(s as StoredBsqSnapshot) as unknown as TrainingSnapshot<
      BsqState
    >,
  freeze: freezeBsq,
};

/** The methods by `--method` name (Bayesian Bits and float are the `train` and `float` commands). */
export const CLI_METHODS: Readonly<
  Record<string, CliMethod<unknown, MethodState>>
> = {
  fracbits: FRACBITS_CLI as unknown as CliMethod<unknown, MethodState>,
  bsq: BSQ_CLI as unknown as CliMethod<unknown, MethodState>,
};

/** The `--method` names `train` takes. */
export const METHOD_NAMES: readonly string[] = [
  "bayesian-bits",
  ...Object.keys(CLI_METHODS),
  "float",
];

/**
 * Splits `--method NAME` (or `--method=NAME`) off a `train` command line.
 *
 * @param args The arguments after `train`.
 * @returns The method (`"bayesian-bits"` when absent) and the other arguments.
 * @throws {UsageError} On a missing or unknown name (with the nearest one).
 */
export function methodOf(
  args: readonly string[],
): { method: string; rest: string[] } {
  const rest = args[0] === "--" ? args.slice(1) : [...args];
  const i = rest.findIndex((a) =>
    a === "--method" || a.startsWith("--method=")
  );
  if (i < 0) return { method: "bayesian-bits", rest };
  const inline = rest[i].startsWith("--method=");
  const name = inline ? rest[i].slice("--method=".length) : rest[i + 1];
  rest.splice(i, inline ? 1 : 2);
  if (name === undefined || !METHOD_NAMES.includes(name)) {
    const near = name === undefined
      ? null
      : METHOD_NAMES.find((m) => m.startsWith(name.slice(0, 3)));
    throw new UsageError(
      `--method must be ${METHOD_NAMES.join(", ")}; got ${
        JSON.stringify(name ?? null)
      }${near ? ` (did you mean ${near}?)` : ""}`,
    );
  }
  return { method: name, rest };
}
