/**
 * The options of {@link bayesianBits}: the gate bit widths, the initial
 * logits, the learning-rate groups, and their checks.
 *
 * @module
 */

import type { PriorMode } from "../../reference/prior.ts";
import type { GatedModel } from "./model.ts";

/** The bit widths whose gates have logits: 2 (the pruning gate), 4, 8, 16, 32. */
export const GATE_BIT_WIDTHS: readonly [2, 4, 8, 16, 32] = Object.freeze(
  [2, 4, 8, 16, 32] as const,
);

/** Initial gate logits by the bit width of the gate (2 = the pruning gate). */
export interface InitialLogits {
  /** Pruning gates (one per output channel of weight quantizers). */
  readonly 2: number;
  /** The 4-bit level. */
  readonly 4: number;
  /** The 8-bit level. */
  readonly 8: number;
  /** The 16-bit level. */
  readonly 16: number;
  /** The 32-bit level. */
  readonly 32: number;
}

/** The recipe's initial logits: start at 8 bits with every channel kept. */
export const DEFAULT_INITIAL_LOGITS: InitialLogits = Object.freeze({
  2: 6,
  4: 6,
  8: 6,
  16: -6,
  32: -6,
});

/** Learning rates of the three parameter groups. */
export interface LearningRates {
  /** Weights and biases (Adam; the recipe's schedule applies to it). */
  readonly weights: number;
  /** Gate logits (Adam, constant). */
  readonly logits: number;
  /** Ranges `xmax` (Adam, constant). */
  readonly ranges: number;
}

/** Options of {@link bayesianBits}. */
export interface BayesianBitsOptions {
  /** Strength of the prior in `loss = CE + mu * sum R`; default 0.01. */
  readonly mu?: number;
  /** Per-output-channel pruning gates on weights; default true. */
  readonly pruning?: boolean;
  /**
   * Initial logits by gate bit width (any subset of 2, 4, 8, 16, 32); the
   * rest from {@link DEFAULT_INITIAL_LOGITS}.
   */
  readonly initialLogits?: Readonly<Record<number, number>>;
  /** Prior weighting: `"bop"` (default, the paper's) or `"const"`. */
  readonly prior?: PriorMode;
  /** Names of conv/dense layers left in full precision (no quantizers). */
  readonly fullPrecision?: readonly string[];
  /** Learning rates; each defaults to the recipe's 1e-3. */
  readonly learningRates?: Partial<LearningRates>;
}

/**
 * A number option, checked.
 *
 * @param what The option's name, for the message.
 * @param value The value given.
 * @param ok The rule.
 * @param rule The rule in words.
 * @returns The value.
 * @throws {RangeError} If it breaks the rule.
 */
export function checkNumber(
  what: string,
  value: unknown,
  ok: (v: number) => boolean,
  rule: string,
): number {
  if (typeof value !== "number" || !ok(value)) {
    throw new RangeError(
      `Invalid ${what} ${String(value)}: it must be ${rule}`,
    );
  }
  return value;
}

/** The options of {@link bayesianBits}, checked, with defaults filled in. */
export function resolveOptions(
  options: BayesianBitsOptions,
): Omit<GatedModel["options"], "fullPrecision"> {
  const mu = checkNumber(
    "mu",
    options.mu ?? 0.01,
    (v) => Number.isFinite(v) && v >= 0,
    "a finite number >= 0",
  );
  const pruning = options.pruning ?? true;
  if (typeof pruning !== "boolean") {
    throw new TypeError(
      `Invalid pruning ${String(pruning)}: it must be a boolean`,
    );
  }
  const initial: Record<number, number> = { ...DEFAULT_INITIAL_LOGITS };
  for (const [key, value] of Object.entries(options.initialLogits ?? {})) {
    const bits = Number(key);
    if (!(GATE_BIT_WIDTHS as readonly number[]).includes(bits)) {
      throw new RangeError(
        `Unknown bit width ${key} in initialLogits: gates exist for bit widths ${
          GATE_BIT_WIDTHS.join(", ")
        } (2 is the pruning gate)`,
      );
    }
    initial[bits] = checkNumber(
      `initial logit for ${bits} bits`,
      value,
      Number.isFinite,
      "a finite number",
    );
  }
  const priorMode = options.prior ?? "bop";
  if (priorMode !== "bop" && priorMode !== "const") {
    throw new RangeError(
      `Invalid prior mode ${
        JSON.stringify(priorMode)
      }: it must be "bop" or "const"`,
    );
  }
  const rates = { weights: 1e-3, logits: 1e-3, ranges: 1e-3 };
  for (const [group, value] of Object.entries(options.learningRates ?? {})) {
    if (!(group in rates)) {
      throw new RangeError(
        `Unknown learning-rate group "${group}": the groups are weights, logits, ranges`,
      );
    }
    rates[group as keyof LearningRates] = checkNumber(
      `learning rate for ${group}`,
      value,
      (v) => Number.isFinite(v) && v >= 0,
      "a finite number >= 0",
    );
  }
  return {
    mu,
    pruning,
    initialLogits: Object.freeze(initial) as unknown as InitialLogits,
    prior: priorMode,
    learningRates: Object.freeze(rates),
  };
}
