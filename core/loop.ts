/**
 * The one training loop every method runs: mini-batches uploaded to the
 * parameters' device, the method's loss and its gradient, one optimizer
 * update per batch inside a device scope (so a step's temporaries are freed
 * when it ends), progress every few steps, and after each epoch the test
 * accuracy and a snapshot. A method supplies a {@link LoopSpec}: its loss,
 * its trainable parameters and optimizer, its evaluation and metrics.
 *
 * @module
 */

import { valueAndGrad } from "./autodiff.ts";
import { type Batch, batchCount, batches, type Dataset } from "./data.ts";
import type { Device } from "./device.ts";
import type { Optimizer, OptimizerState } from "./optim.ts";
import { foldIn, type RandomKey } from "./rng.ts";
import type { Tensor } from "./tensor.ts";

/**
 * How often (ms) a long epoch gives the event loop a turn, so that signal
 * handlers (Ctrl-C releasing a run directory), timers and I/O callbacks run
 * during training: a step's awaits alone settle as microtasks and never let
 * them in. A turn costs about a millisecond.
 */
const TURN_EVERY_MS = 200;

/** Parameters by name. */
export type ParamRecord = Readonly<Record<string, Tensor>>;

/** What a method's loss returns for one batch. */
export interface StepLoss<S> {
  /** The loss to differentiate (`[1]`). */
  readonly loss: Tensor;
  /** Further `[1]` values to average over the epoch, by name. */
  readonly metrics: Readonly<Record<string, Tensor>>;
  /** The method's carried state after the step (e.g. batch-norm statistics). */
  readonly carry: S;
}

/** What a method supplies to {@link trainLoop}. */
export interface LoopSpec<S> {
  /** The optimizer of the trainable parameters. */
  readonly optimizer: Optimizer;
  /** Whether a parameter is learned (the others are passed through). */
  readonly trainable: (name: string) => boolean;
  /** The loss of one batch. */
  readonly loss: (
    params: ParamRecord,
    carry: S,
    x: Tensor,
    labels: Tensor,
    stepKey: RandomKey,
  ) => StepLoss<S>;
  /**
   * How each metric is averaged over an epoch: `"samples"` (weighted by
   * batch size) or `"steps"`; metrics the loss omits are `null`.
   */
  readonly metrics: Readonly<Record<string, "samples" | "steps">>;
  /** Test accuracy of the current parameters. */
  readonly evaluate: (
    params: ParamRecord,
    carry: S,
    test: Dataset,
  ) => Promise<number>;
  /**
   * Called after each epoch's steps, before its evaluation, with the
   * 1-based epoch: the parameters and carried state it returns continue
   * the run (e.g. a method's hard assignment).
   */
  readonly afterEpoch?: (
    params: ParamRecord,
    carry: S,
    epoch: number,
  ) => { readonly params: ParamRecord; readonly carry: S };
  /**
   * Makes what `measure`, `fallback` and `evaluate` read on the host
   * readable (a WebGPU device reads its small tensors back); awaited before
   * them.
   */
  readonly prepare?: (params: ParamRecord) => Promise<void>;
  /** Values for progress lines and epoch records from the parameters alone. */
  readonly measure?: (params: ParamRecord) => Readonly<Record<string, number>>;
  /** Host values of the named metrics the loss omitted, from the parameters. */
  readonly fallback?: (
    params: ParamRecord,
    names: ReadonlySet<string>,
  ) => Readonly<Record<string, number>>;
}

/** Where a loop starts: parameters, carried state, optimizer state, history. */
export interface LoopState<S> {
  /** All parameters. */
  readonly params: ParamRecord;
  /** The method's carried state. */
  readonly carry: S;
  /** The optimizer's state (`step` counts updates). */
  readonly optimizerState: OptimizerState;
  /** Completed epochs. */
  readonly epoch: number;
  /** One record per completed epoch. */
  readonly history: readonly EpochStats[];
}

/** One epoch's figures as the loop measures them. */
export interface EpochStats {
  /** 1-based epoch. */
  readonly epoch: number;
  /** Mean training loss. */
  readonly loss: number;
  /** Epoch means of the method's metrics. */
  readonly metrics: Readonly<Record<string, number>>;
  /** Test accuracy in [0, 1] after the epoch. */
  readonly testAccuracy: number;
  /** Values from `measure` after the epoch. */
  readonly measured: Readonly<Record<string, number>>;
  /** Wall time of the epoch's training steps, in seconds. */
  readonly seconds: number;
  /** Training samples per second. */
  readonly samplesPerSecond: number;
}

/** A progress report of {@link trainLoop}. */
export interface LoopProgress {
  /** 1-based epoch. */
  readonly epoch: number;
  /** Number of epochs. */
  readonly epochs: number;
  /** 1-based step within the epoch. */
  readonly step: number;
  /** Steps per epoch. */
  readonly steps: number;
  /** Mean training loss over the epoch so far. */
  readonly loss: number;
  /** The method's metrics: sample-weighted means so far, or the last step's. */
  readonly metrics: Readonly<Record<string, number>>;
  /** Values from `measure`. */
  readonly measured: Readonly<Record<string, number>>;
  /** Training samples per second over the epoch so far. */
  readonly samplesPerSecond: number;
  /** Estimated seconds left for the whole run. */
  readonly etaSeconds: number;
}

/** Options of {@link trainLoop}. */
export interface LoopOptions<S> {
  /** Epochs of the run. */
  readonly epochs: number;
  /** Mini-batch size. */
  readonly batchSize: number;
  /** Shuffling key (folded with the epoch). */
  readonly shuffleKey: RandomKey;
  /** Per-step key (folded with the optimizer step), handed to the loss. */
  readonly stepKey: RandomKey;
  /** Progress callback, every `progressEvery` steps and at each epoch's end. */
  readonly onProgress?: (progress: LoopProgress) => void;
  /** Steps between progress reports. */
  readonly progressEvery: number;
  /** Called (awaited) after each epoch with the state at its end. */
  readonly onEpoch?: (state: LoopState<S>) => void | Promise<void>;
  /** A clock in milliseconds. */
  readonly now: () => number;
}

/**
 * Throughput and time left of a run in progress: `seen` samples of the
 * current epoch (1-based `epoch` of `epochs`, `perEpoch` samples each) took
 * `elapsedSeconds`.
 *
 * @param seen Samples done this epoch.
 * @param elapsedSeconds Seconds this epoch so far.
 * @param epoch 1-based epoch.
 * @param epochs Epochs of the run.
 * @param perEpoch Samples per epoch.
 * @returns The rate and the estimate.
 */
export function progressRate(
  seen: number,
  elapsedSeconds: number,
  epoch: number,
  epochs: number,
  perEpoch: number,
): { samplesPerSecond: number; etaSeconds: number } {
  const samplesPerSecond = seen / Math.max(elapsedSeconds, 1e-9);
  const remaining = (epochs - epoch) * perEpoch + (perEpoch - seen);
  return { samplesPerSecond, etaSeconds: remaining / samplesPerSecond };
}

/** A step whose scalars are not read yet. */
interface PendingStep {
  /** Its batch size. */
  readonly size: number;
  /** Its loss and metrics, on the device. */
  readonly scalars: Record<string, Tensor>;
  /** Host values of the metrics its loss omitted. */
  readonly fallback: Record<string, number>;
}

/** Sums of one epoch so far. */
class EpochSums {
  loss = 0;
  seen = 0;
  steps = 0;
  readonly sums: Record<string, number> = {};
  last: Record<string, number> = {};

  add(
    size: number,
    loss: number,
    metrics: Record<string, number>,
    spec: LoopSpec<unknown>,
  ): void {
    this.loss += loss * size;
    this.seen += size;
    this.steps++;
    for (const [name, how] of Object.entries(spec.metrics)) {
      const v = metrics[name];
      this.sums[name] = (this.sums[name] ?? 0) +
        (how === "samples" ? v * size : v);
    }
    this.last = metrics;
  }

  means(spec: LoopSpec<unknown>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, how] of Object.entries(spec.metrics)) {
      out[name] = this.sums[name] /
        (how === "samples" ? this.seen : this.steps);
    }
    return out;
  }

  /** Progress values: sample-weighted means so far, step metrics as of the last step. */
  progress(spec: LoopSpec<unknown>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, how] of Object.entries(spec.metrics)) {
      out[name] = how === "samples"
        ? this.sums[name] / this.seen
        : this.last[name];
    }
    return out;
  }
}

/** The tensors of the parameters and optimizer slots, to free a superseded step's. */
function stateTensors(params: ParamRecord, state: OptimizerState): Tensor[] {
  const out = [...Object.values(params)];
  for (const slots of Object.values(state.slots)) {
    out.push(...Object.values(slots));
  }
  return out;
}

/**
 * Runs epochs `start.epoch + 1 .. epochs` of a method on the device its
 * parameters live on. Deterministic: the same spec, state, keys and data
 * give the same parameters bit for bit, whether run at once or resumed from
 * any epoch's state.
 *
 * @param spec The method's loss, optimizer and evaluation.
 * @param start Where to start (epoch 0 with a fresh optimizer state, or a resumed state).
 * @param data Training and test sets.
 * @param options Epochs, batch size, keys, callbacks.
 * @returns The state after the last epoch.
 */
export async function trainLoop<S>(
  spec: LoopSpec<S>,
  start: LoopState<S>,
  data: { readonly train: Dataset; readonly test: Dataset },
  options: LoopOptions<S>,
): Promise<LoopState<S>> {
  const run = new Run(spec, start, data, options);
  for (let epoch = start.epoch + 1; epoch <= options.epochs; epoch++) {
    const epochStart = options.now();
    const sums = await run.epoch(epoch, epochStart);
    const seconds = (options.now() - epochStart) / 1000;
    if (spec.afterEpoch) {
      // A method's end of epoch may read its parameters on the host.
      await spec.prepare?.(run.params);
      ({ params: run.params, carry: run.carry } = spec.afterEpoch(
        run.params,
        run.carry,
        epoch,
      ));
    }
    await spec.prepare?.(run.params);
    run.history.push({
      epoch,
      loss: sums.loss / sums.seen,
      metrics: sums.means(spec as LoopSpec<unknown>),
      testAccuracy: await spec.evaluate(run.params, run.carry, data.test),
      measured: spec.measure?.(run.params) ?? {},
      seconds,
      samplesPerSecond: sums.seen / Math.max(seconds, 1e-9),
    });
    // The epoch's state goes to the caller: the loop no longer frees it.
    run.owned = new Set();
    await options.onEpoch?.(run.state(epoch));
  }
  return run.state(options.epochs);
}

/** A run in progress: the current state and what the loop may free. */
class Run<S> {
  params: ParamRecord;
  carry: S;
  optimizerState: OptimizerState;
  readonly history: EpochStats[];
  /** Tensors this loop made and no caller holds: freed once superseded. */
  owned = new Set<Tensor>();
  readonly #dev: Device;
  readonly #steps: number;
  readonly #lossAndGrad: LossAndGrad<S>;

  constructor(
    readonly spec: LoopSpec<S>,
    start: LoopState<S>,
    readonly data: { readonly train: Dataset; readonly test: Dataset },
    readonly options: LoopOptions<S>,
  ) {
    ({ params: this.params, carry: this.carry } = start);
    this.optimizerState = start.optimizerState;
    this.history = [...start.history];
    this.#dev = Object.values(start.params)[0].device;
    this.#steps = batchCount(data.train.count, options.batchSize);
    this.#lossAndGrad = valueAndGrad(
      (
        trainable: ParamRecord,
        frozen: ParamRecord,
        carry: S,
        x: Tensor,
        labels: Tensor,
        key: RandomKey,
      ) => {
        const r = spec.loss({ ...frozen, ...trainable }, carry, x, labels, key);
        return [r.loss, r] as const;
      },
      { aux: true },
    );
  }

  state(epoch: number): LoopState<S> {
    const { params, carry, optimizerState } = this;
    return { params, carry, optimizerState, epoch, history: [...this.history] };
  }

  /**
   * The training steps of one epoch. A step's scalars (loss, metrics) stay
   * on the device until a progress line or the epoch's end needs them: a
   * GPU is never made to wait in between.
   */
  async epoch(epoch: number, epochStart: number): Promise<EpochSums> {
    const { spec, options } = this;
    const sums = new EpochSums();
    const order = batches(this.data.train, options.batchSize, {
      key: foldIn(options.shuffleKey, epoch),
    });
    let lastTurn = performance.now();
    const pending: PendingStep[] = [];
    for (const batch of order) {
      const scalars = this.step(batch);
      if (performance.now() - lastTurn >= TURN_EVERY_MS) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        lastTurn = performance.now();
      }
      const missing = new Set(
        Object.keys(spec.metrics).filter((n) => !(n in scalars)),
      );
      let fallback: Record<string, number> = {};
      if (missing.size > 0 && spec.fallback) {
        await spec.prepare?.(this.params);
        fallback = { ...spec.fallback(this.params, missing) };
      }
      pending.push({ size: batch.size, scalars, fallback });
      const step = sums.steps + pending.length;
      const due = step % options.progressEvery === 0 || step === this.#steps;
      if (!due) continue;
      await this.drain(pending, sums);
      if (options.onProgress) {
        await spec.prepare?.(this.params);
        this.progress(epoch, epochStart, sums);
      }
    }
    await this.drain(pending, sums);
    return sums;
  }

  /** Reads the pending steps' scalars in order into the sums, and frees them. */
  async drain(pending: PendingStep[], sums: EpochSums): Promise<void> {
    for (const p of pending.splice(0)) {
      const values = await readScalars(p.scalars);
      this.#dev.free(...Object.values(p.scalars));
      const metrics = { ...p.fallback, ...values };
      delete metrics.loss;
      sums.add(p.size, values.loss, metrics, this.spec as LoopSpec<unknown>);
    }
  }

  /** One step; frees the state it supersedes; returns the step's scalars. */
  step(batch: Batch): Record<string, Tensor> {
    const dev = this.#dev;
    const before = stateTensors(this.params, this.optimizerState);
    const result = runStep(
      dev,
      this.spec,
      this.#lossAndGrad,
      { params: this.params, carry: this.carry, state: this.optimizerState },
      batch,
      this.data.train,
      this.options.stepKey,
    );
    this.params = result.params;
    this.carry = result.carry;
    this.optimizerState = result.optimizerState;
    const now = new Set(stateTensors(this.params, this.optimizerState));
    for (const t of before) if (this.owned.has(t) && !now.has(t)) dev.free(t);
    const old = new Set(before);
    this.owned = new Set(
      [...now].filter((t) => !old.has(t) || this.owned.has(t)),
    );
    return result.scalars;
  }

  progress(epoch: number, epochStart: number, sums: EpochSums): void {
    const { options, spec } = this;
    options.onProgress?.({
      epoch,
      epochs: options.epochs,
      step: sums.steps,
      steps: this.#steps,
      loss: sums.loss / sums.seen,
      metrics: sums.progress(spec as LoopSpec<unknown>),
      measured: spec.measure?.(this.params) ?? {},
      ...progressRate(
        sums.seen,
        (options.now() - epochStart) / 1000,
        epoch,
        options.epochs,
        this.data.train.count,
      ),
    });
  }
}

async function readScalars(
  scalars: Record<string, Tensor>,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, t] of Object.entries(scalars)) {
    out[name] = (await t.read())[0];
  }
  return out;
}

type LossAndGrad<S> = (
  trainable: ParamRecord,
  frozen: ParamRecord,
  carry: S,
  x: Tensor,
  labels: Tensor,
  key: RandomKey,
) => { value: Tensor; grads: Record<string, Tensor>; aux: StepLoss<S> };

/** One step in a device scope: what survives is the new state and the step's scalars. */
function runStep<S>(
  dev: Device,
  spec: LoopSpec<S>,
  lossAndGrad: LossAndGrad<S>,
  from: { params: ParamRecord; carry: S; state: OptimizerState },
  batch: Batch,
  train: Dataset,
  stepKey: RandomKey,
): {
  params: ParamRecord;
  carry: S;
  optimizerState: OptimizerState;
  scalars: Record<string, Tensor>;
} {
  const { params, carry, state: optimizerState } = from;
  return dev.scope(() => {
    const trainable: Record<string, Tensor> = {};
    const frozen: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(params)) {
      (spec.trainable(name) ? trainable : frozen)[name] = t;
    }
    const x = dev.upload(batch.images, [batch.size, ...train.shape]);
    const labels = dev.upload(batch.labels, [batch.size], "int32");
    const key = foldIn(stepKey, optimizerState.step);
    const { value, grads, aux } = lossAndGrad(
      trainable,
      frozen,
      carry,
      x,
      labels,
      key,
    );
    const update = spec.optimizer.update(trainable, grads, optimizerState);
    return {
      params: { ...frozen, ...update.params },
      carry: aux.carry,
      optimizerState: update.state,
      scalars: { loss: value, ...aux.metrics },
    };
  });
}
