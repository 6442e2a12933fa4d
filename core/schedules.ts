/**
 * Learning-rate schedules, as pure functions of the step counter.
 *
 * A {@link Schedule} maps the number of optimizer updates already done (or
 * an epoch index, through {@link perEpoch}) to a learning rate. The
 * optimizers of `optim.ts` take a {@link LearningRate}: a fixed number or a
 * schedule. Each factory checks its options when called, and each schedule
 * checks its step when evaluated.
 *
 * @module
 */

/**
 * A learning rate as a function of the step counter `t` (updates done before
 * the current one: 0 for the first update). Must return a finite number >= 0.
 */
export type Schedule = (step: number) => number;

/** A fixed learning rate or a {@link Schedule}. */
export type LearningRate = number | Schedule;

/**
 * Checks a numeric option against a rule, for the optimizers and schedules.
 *
 * @param what The option's name in the message, e.g. `"Adam beta1"`.
 * @param value The value given.
 * @param ok Whether a value satisfies the rule.
 * @param rule The rule in words, e.g. `"in [0, 1)"`.
 * @throws {RangeError} If `value` is not a number or fails `ok`.
 */
export function checkOption(
  what: string,
  value: number,
  ok: (v: number) => boolean,
  rule: string,
): void {
  if (typeof value !== "number" || !ok(value)) {
    throw new RangeError(`Invalid ${what} ${value}: it must be ${rule}`);
  }
}

function checkStep(step: number): void {
  if (typeof step !== "number" || !Number.isFinite(step) || step < 0) {
    throw new RangeError(
      `A schedule's step must be a finite number >= 0, got ${step}`,
    );
  }
}

function checkTotal(what: string, total: number): void {
  checkOption(
    `${what} total`,
    total,
    (v) => Number.isFinite(v) && v > 0,
    "a finite number > 0",
  );
}

function checkBaseRate(what: string, lr: number): void {
  checkOption(
    `${what} lr`,
    lr,
    (v) => Number.isFinite(v) && v >= 0,
    "a finite number >= 0",
  );
}

/**
 * A constant learning rate, as a schedule.
 *
 * @param lr The learning rate.
 * @returns `t => lr`.
 * @throws {RangeError} If `lr` is negative or not finite (the schedule
 *   throws one for a negative or non-finite step).
 *
 * @example
 * ```ts
 * import { constantSchedule } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(constantSchedule(0.01)(1000), 0.01);
 * ```
 */
export function constantSchedule(lr: number): Schedule {
  checkBaseRate("constant schedule", lr);
  return (step) => {
    checkStep(step);
    return lr;
  };
}

/**
 * Step decay (PyTorch's `StepLR`): `lr * gamma^floor(t / stepSize)`.
 *
 * @param options `lr`, `gamma` (> 0) and `stepSize` (a positive integer).
 * @returns The schedule.
 * @throws {RangeError} On a bad option (the schedule throws one for a
 *   negative or non-finite step).
 *
 * @example
 * ```ts
 * import { stepSchedule } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const schedule = stepSchedule({ lr: 1, gamma: 0.5, stepSize: 10 });
 * assert.deepEqual([0, 9, 10, 25].map(schedule), [1, 1, 0.5, 0.25]);
 * ```
 */
export function stepSchedule(
  options: {
    readonly lr: number;
    readonly gamma: number;
    readonly stepSize: number;
  },
): Schedule {
  const { lr, gamma, stepSize } = options;
  checkBaseRate("step schedule", lr);
  checkOption(
    "step schedule gamma",
    gamma,
    (v) => Number.isFinite(v) && v > 0,
    "a finite number > 0",
  );
  checkOption(
    "step schedule stepSize",
    stepSize,
    (v) => Number.isInteger(v) && v > 0,
    "a positive integer",
  );
  return (step) => {
    checkStep(step);
    return lr * gamma ** Math.floor(step / stepSize);
  };
}

/**
 * Cosine annealing (PyTorch's `CosineAnnealingLR`, closed form):
 * `minLr + (lr - minLr) * (1 + cos(pi * t / total)) / 2` for `t < total`,
 * and exactly `minLr` from `t = total` on.
 *
 * @param options `lr`, `total` (> 0) and `minLr` (default 0).
 * @returns The schedule.
 * @throws {RangeError} On a bad option (the schedule throws one for a
 *   negative or non-finite step).
 *
 * @example
 * ```ts
 * import { cosineSchedule } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const schedule = cosineSchedule({ lr: 1, total: 100 });
 * assert.equal(schedule(0), 1);
 * assert.ok(Math.abs(schedule(50) - 0.5) < 1e-15);
 * assert.equal(schedule(100), 0);
 * ```
 */
export function cosineSchedule(
  options: {
    readonly lr: number;
    readonly total: number;
    readonly minLr?: number;
  },
): Schedule {
  const { lr, total, minLr = 0 } = options;
  checkBaseRate("cosine schedule", lr);
  checkTotal("cosine schedule", total);
  checkBaseRate("cosine schedule min", minLr);
  return (step) => {
    checkStep(step);
    if (step >= total) return minLr;
    return minLr + (lr - minLr) * (1 + Math.cos(Math.PI * step / total)) / 2;
  };
}

/**
 * Constant for the first two thirds of training, then linear to zero.
 *
 * With `start = 2 * total / 3`:
 *
 * ```text
 * t <= start:         lr
 * start < t < total:  lr * (total - t) / (total - start)
 * t >= total:         0 (exactly)
 * ```
 *
 * The decay starts right after `t = start` (which still gets the full `lr`)
 * and reaches exactly 0 at `t = total`. `t` is the schedule's step: an
 * optimizer update count, or an epoch through {@link perEpoch}. An
 * optimizer evaluates its schedule at the number of updates already done,
 * so over `total` updates the last one uses `t = total - 1`, i.e.
 * `lr * 3 / total`; the rate is 0 once training is over.
 *
 * @param options `lr` and `total` (> 0; e.g. the number of epochs).
 * @returns The schedule.
 * @throws {RangeError} On a bad option (the schedule throws one for a
 *   negative or non-finite step).
 *
 * @example
 * ```ts
 * import { constantThenLinearSchedule } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const schedule = constantThenLinearSchedule({ lr: 1, total: 30 });
 * assert.deepEqual([0, 20, 25, 30].map(schedule), [1, 1, 0.5, 0]);
 * ```
 */
export function constantThenLinearSchedule(
  options: { readonly lr: number; readonly total: number },
): Schedule {
  const { lr, total } = options;
  checkBaseRate("constant-then-linear schedule", lr);
  checkTotal("constant-then-linear schedule", total);
  const start = (2 * total) / 3;
  return (step) => {
    checkStep(step);
    if (step <= start) return lr;
    if (step >= total) return 0;
    return lr * (total - step) / (total - start);
  };
}

/**
 * Turns a per-epoch schedule into a per-update one: every update of epoch
 * `e` gets `schedule(e)`, as when PyTorch's scheduler steps once per epoch.
 *
 * @param schedule A schedule over epochs.
 * @param stepsPerEpoch Updates per epoch, a positive integer.
 * @returns `t => schedule(floor(t / stepsPerEpoch))`.
 * @throws {RangeError} If `stepsPerEpoch` is not a positive integer.
 *
 * @example
 * ```ts
 * import { constantThenLinearSchedule, perEpoch } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * // 6 epochs of 100 updates: full rate in epochs 0..4, half in epoch 5.
 * const perUpdate = perEpoch(constantThenLinearSchedule({ lr: 1, total: 6 }), 100);
 * assert.deepEqual([0, 499, 500, 599].map(perUpdate), [1, 1, 0.5, 0.5]);
 * assert.equal(perUpdate(600), 0); // epoch 6: training is over
 * ```
 */
export function perEpoch(schedule: Schedule, stepsPerEpoch: number): Schedule {
  checkOption(
    "stepsPerEpoch",
    stepsPerEpoch,
    (v) => Number.isInteger(v) && v > 0,
    "a positive integer",
  );
  return (step) => {
    checkStep(step);
    return schedule(Math.floor(step / stepsPerEpoch));
  };
}
