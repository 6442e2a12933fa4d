/**
 * Reports as JSON: {@link reportToJson} writes a report, {@link parseReport}
 * reads one back, both through one checker, so what is written is exactly
 * what is read. Reports of schema version 1 (0.1.0, Bayesian Bits only)
 * read as version 2 reports; {@link parseHistory} reads the history entries
 * of either version (training snapshots and run records store them).
 *
 * @module
 */

import {
  type GateProbabilities,
  type HistoryEntry,
  type LayerReport,
  type QuantizationReport,
  REPORT_SCHEMA,
  REPORT_SCHEMA_V1,
  type ReportCosts,
  type ReportValue,
} from "../core/report.ts";
import { checkMethodBits } from "../core/bit_widths.ts";
import { describeValue, keyPath, parseJson } from "../core/schema.ts";

/**
 * The method of every version 1 report: version 0.1.0 trained Bayesian Bits
 * only.
 */
const V1_METHOD = "bayesian-bits";

const describe = describeValue;

/**
 * Bounds of the method options a method's reports may carry, by method:
 * Bayesian Bits' `mu` weighs a penalty, so it is not negative.
 */
const OPTION_MINIMA: Readonly<
  Record<string, Readonly<Record<string, number>>>
> = {
  "bayesian-bits": { mu: 0 },
};

/** Checks plain JSON values; `context` opens every message. */
class ValueChecker {
  constructor(protected readonly context: string) {}

  /** A TypeError for a value of the wrong type (or a missing field). */
  typeError(path: string, expected: string, value: unknown): TypeError {
    return new TypeError(
      value === undefined
        ? `${this.context}: ${path} is missing (expected ${expected})`
        : `${this.context}: ${path} must be ${expected}, got ${
          describe(value)
        }`,
    );
  }

  /** A RangeError for a value of the right type but out of range. */
  rangeError(path: string, expected: string, value: unknown): RangeError {
    return new RangeError(
      `${this.context}: ${path} must be ${expected}, got ${describe(value)}`,
    );
  }

  object(value: unknown, path: string): Record<string, unknown> {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw this.typeError(path, "an object", value);
    }
    return value as Record<string, unknown>;
  }

  array(value: unknown, path: string): readonly unknown[] {
    if (!Array.isArray(value)) throw this.typeError(path, "an array", value);
    return value;
  }

  string(value: unknown, path: string): string {
    if (typeof value !== "string") {
      throw this.typeError(path, "a string", value);
    }
    return value;
  }

  boolean(value: unknown, path: string): boolean {
    if (typeof value !== "boolean") {
      throw this.typeError(path, "a boolean", value);
    }
    return value;
  }

  /** The costs in the other conventions: four non-negative numbers. */
  costs(value: unknown): ReportCosts {
    const o = this.object(value, "costs");
    const get = (key: keyof ReportCosts) => {
      const n = this.number(o[key], `costs.${key}`);
      if (n < 0) throw this.rangeError(`costs.${key}`, "non-negative", n);
      return n;
    };
    return {
      macsBitsRelativeGbops: get("macsBitsRelativeGbops"),
      executableRelativeGbops: get("executableRelativeGbops"),
      weightBytes: get("weightBytes"),
      floatWeightBytes: get("floatWeightBytes"),
    };
  }

  /** A finite number (JSON.parse turns `1e999` into Infinity, JSON.stringify NaN into null). */
  number(value: unknown, path: string): number {
    if (typeof value !== "number") {
      throw this.typeError(path, "a number", value);
    }
    if (!Number.isFinite(value)) {
      throw this.rangeError(path, "a finite number", value);
    }
    return value;
  }

  count(value: unknown, path: string): number {
    const n = this.number(value, path);
    if (!Number.isInteger(n) || n < 0) {
      throw this.rangeError(path, "a non-negative integer", n);
    }
    return n;
  }

  /** A finite number at least `min` (and at most `max` when given). */
  atLeast(value: unknown, path: string, min: number, max?: number): number {
    const n = this.number(value, path);
    if (n < min || (max !== undefined && n > max)) {
      throw this.rangeError(
        path,
        max === undefined ? `>= ${min}` : `in [${min}, ${max}]`,
        n,
      );
    }
    return n;
  }

  probability(value: unknown, path: string): number {
    const p = this.number(value, path);
    if (p < 0 || p > 1) throw this.rangeError(path, "in [0, 1]", p);
    return p;
  }

  /** A record of strings, finite numbers, booleans and nulls. */
  record(value: unknown, path: string): Record<string, ReportValue> {
    const o = this.object(value, path);
    const out: Record<string, ReportValue> = {};
    for (const [key, v] of Object.entries(o)) {
      const at = keyPath(path, key);
      if (typeof v === "number") {
        out[key] = this.number(v, at);
      } else if (
        v === null || typeof v === "string" || typeof v === "boolean"
      ) {
        out[key] = v;
      } else {
        throw this.typeError(at, "a string, number, boolean or null", v);
      }
    }
    return out;
  }

  /** A record of finite numbers. */
  numbers(value: unknown, path: string): Record<string, number> {
    const o = this.object(value, path);
    const out: Record<string, number> = {};
    for (const [key, v] of Object.entries(o)) {
      out[key] = this.number(v, keyPath(path, key));
    }
    return out;
  }
}

/**
 * Checks the fields of one report value, building a fresh report with the
 * known fields only, in declaration order (schema first).
 */
class ReportChecker extends ValueChecker {
  /** A bit width of `method`'s set (0, pruned, only when `pruned`). */
  methodBits(
    value: unknown,
    path: string,
    method: string,
    pruned = true,
  ): number {
    const bits = this.number(value, path);
    try {
      return checkMethodBits(method, bits, path, { pruned });
    } catch (error) {
      throw new RangeError(`${this.context}: ${(error as Error).message}`);
    }
  }

  /** An output activation's width: `null` (not quantized) or one of the method's. */
  activationBits(value: unknown, path: string, method: string): number | null {
    return value === null ? null : this.methodBits(value, path, method, false);
  }

  /** The method's options: a record, with the method's bounds on known keys. */
  methodOptions(value: unknown, method: string): Record<string, ReportValue> {
    const options = this.record(value, "methodOptions");
    const minima = Object.hasOwn(OPTION_MINIMA, method)
      ? OPTION_MINIMA[method]
      : {};
    for (const [key, min] of Object.entries(minima)) {
      if (Object.hasOwn(options, key)) {
        this.atLeast(options[key], keyPath("methodOptions", key), min);
      }
    }
    return options;
  }

  gates(value: unknown, path: string): GateProbabilities | null {
    if (value === null) return null;
    const o = this.object(value, path);
    const chain = this.array(o.chain, `${path}.chain`);
    if (chain.length !== 4) {
      throw this.rangeError(
        `${path}.chain`,
        "4 probabilities [q4, q8, q16, q32]",
        chain,
      );
    }
    const [q4, q8, q16, q32] = chain.map((p, i) =>
      this.probability(p, `${path}.chain[${i}]`)
    );
    const prune = o.prune === null
      ? null
      : this.array(o.prune, `${path}.prune`).map((p, i) =>
        this.probability(p, `${path}.prune[${i}]`)
      );
    return { chain: [q4, q8, q16, q32], prune };
  }

  /**
   * The gate fields of a layer: absent stays absent (a method without
   * gates) unless `required` (version 1, where every layer had them).
   */
  gateFields(
    o: Record<string, unknown>,
    path: string,
    required: boolean,
  ): Pick<LayerReport, "weightGates" | "activationGates"> {
    const fields: {
      weightGates?: GateProbabilities | null;
      activationGates?: GateProbabilities | null;
    } = {};
    for (const key of ["weightGates", "activationGates"] as const) {
      if (required || o[key] !== undefined) {
        fields[key] = this.gates(o[key], `${path}.${key}`);
      }
    }
    return fields;
  }

  layer(
    value: unknown,
    path: string,
    v1: boolean,
    method: string,
  ): LayerReport {
    const o = this.object(value, path);
    const kind = this.string(o.kind, `${path}.kind`);
    if (kind !== "conv" && kind !== "dense") {
      throw this.rangeError(`${path}.kind`, `"conv" or "dense"`, kind);
    }
    const keptChannels = this.count(o.keptChannels, `${path}.keptChannels`);
    const totalChannels = this.count(o.totalChannels, `${path}.totalChannels`);
    if (keptChannels > totalChannels) {
      throw this.rangeError(
        `${path}.keptChannels`,
        `at most totalChannels (${totalChannels})`,
        keptChannels,
      );
    }
    const at = (key: string) => `${path}.${key}`;
    return {
      name: this.string(o.name, at("name")),
      kind,
      macs: this.count(o.macs, at("macs")),
      weightBits: this.methodBits(o.weightBits, at("weightBits"), method),
      weightQuantized: this.boolean(o.weightQuantized, at("weightQuantized")),
      activationBits: this.activationBits(
        o.activationBits,
        at("activationBits"),
        method,
      ),
      inputBits: this.atLeast(o.inputBits, at("inputBits"), 1, 32),
      keptChannels,
      totalChannels,
      keptInputFraction: this.probability(
        o.keptInputFraction,
        at("keptInputFraction"),
      ),
      gbops: this.atLeast(o.gbops, at("gbops"), 0),
      ...this.gateFields(o, path, v1),
    };
  }

  /**
   * One epoch: version 2 (`metrics`), or version 1 (a named `prior`, which
   * becomes `metrics.prior`).
   */
  historyEntry(value: unknown, path: string): HistoryEntry {
    const o = this.object(value, path);
    const at = (key: string) => `${path}.${key}`;
    const metrics = o.metrics === undefined && o.prior !== undefined
      ? { prior: this.number(o.prior, at("prior")) }
      : this.numbers(o.metrics, at("metrics"));
    return {
      epoch: this.count(o.epoch, at("epoch")),
      phase: this.string(o.phase, at("phase")),
      loss: this.number(o.loss, at("loss")),
      crossEntropy: this.atLeast(o.crossEntropy, at("crossEntropy"), 0),
      metrics,
      testAccuracy: this.probability(o.testAccuracy, at("testAccuracy")),
      relativeGbops: this.atLeast(
        o.relativeGbops,
        at("relativeGbops"),
        0,
        100,
      ),
      seconds: this.atLeast(o.seconds, at("seconds"), 0),
      samplesPerSecond: this.atLeast(
        o.samplesPerSecond,
        at("samplesPerSecond"),
        0,
      ),
    };
  }

  history(value: unknown, path: string): HistoryEntry[] {
    return this.array(value, path).map((h, i) =>
      this.historyEntry(h, `${path}[${i}]`)
    );
  }

  /** A report of either schema, as a version 2 report. */
  report(value: unknown): QuantizationReport {
    const o = this.object(value, "the report");
    const schema = this.string(o.schema, "schema");
    if (schema !== REPORT_SCHEMA && schema !== REPORT_SCHEMA_V1) {
      throw new RangeError(
        `${this.context}: unsupported schema ${
          JSON.stringify(schema)
        }, expected ${JSON.stringify(REPORT_SCHEMA)} or ${
          JSON.stringify(REPORT_SCHEMA_V1)
        }`,
      );
    }
    const v1 = schema === REPORT_SCHEMA_V1;
    const model = this.string(o.model, "model");
    const method = v1 ? V1_METHOD : this.string(o.method, "method");
    return {
      schema: REPORT_SCHEMA,
      model,
      method,
      methodOptions: v1
        ? { mu: this.atLeast(o.mu, "mu", 0) }
        : this.methodOptions(o.methodOptions, method),
      testAccuracy: this.probability(o.testAccuracy, "testAccuracy"),
      relativeGbops: this.atLeast(o.relativeGbops, "relativeGbops", 0, 100),
      gbops: this.atLeast(o.gbops, "gbops", 0),
      baselineGbops: this.atLeast(o.baselineGbops, "baselineGbops", 0),
      ...(o.costs === undefined ? {} : { costs: this.costs(o.costs) }),
      layers: this.array(o.layers, "layers").map((l, i) =>
        this.layer(l, `layers[${i}]`, v1, method)
      ),
      history: this.history(o.history, "history"),
      run: this.record(o.run, "run"),
    };
  }
}

/**
 * Serialises a report as pretty JSON (2-space indent) with `schema` first and
 * the other fields in declaration order. The report is validated as
 * {@link parseReport} would read it, so a NaN or Infinity (which
 * `JSON.stringify` would silently write as `null`) is an error instead.
 *
 * @param report The report.
 * @returns The JSON text, without a trailing newline.
 * @throws {RangeError} If a number is not finite, naming its path: `Cannot
 *   write report JSON: layers[1].gbops must be a finite number, got NaN`;
 *   also for the other range checks of {@link parseReport}.
 * @throws {TypeError} If a field is missing or of the wrong type (a report
 *   not built as its type says).
 *
 * @example
 * ```ts
 * import { type QuantizationReport, reportToJson } from "@bbits/core";
 * import { REPORT_SCHEMA } from "@bbits/core/report";
 * import assert from "node:assert/strict";
 *
 * const report: QuantizationReport = {
 *   schema: REPORT_SCHEMA, model: "tiny", method: "bayesian-bits",
 *   methodOptions: { mu: 0.01 }, testAccuracy: 0.9,
 *   relativeGbops: 6.25, gbops: 0.064, baselineGbops: 1.024,
 *   layers: [{
 *     name: "fc", kind: "dense", macs: 1_000_000, weightBits: 8,
 *     weightQuantized: true, activationBits: null, inputBits: 8,
 *     keptChannels: 10, totalChannels: 10, keptInputFraction: 1, gbops: 0.064,
 *     weightGates: { chain: [1, 0.01, 0, 0], prune: null }, activationGates: null,
 *   }],
 *   history: [],
 *   run: {},
 * };
 * assert.ok(reportToJson(report).startsWith(
 *   '{\n  "schema": "bbits.report/2",\n  "model": "tiny",\n  "method": "bayesian-bits",',
 * ));
 * assert.throws(
 *   () => reportToJson({ ...report, gbops: Infinity }),
 *   new RangeError("Cannot write report JSON: gbops must be a finite number, got Infinity"),
 * );
 * ```
 */
export function reportToJson(report: QuantizationReport): string {
  const checker = new ReportChecker("Cannot write report JSON");
  if (report.schema !== REPORT_SCHEMA) {
    throw checker.rangeError(
      "schema",
      JSON.stringify(REPORT_SCHEMA),
      report.schema,
    );
  }
  return JSON.stringify(checker.report(report), null, 2);
}

/**
 * Reads a report written by {@link reportToJson}, checking the schema, every
 * required field and its type, that numbers are finite, that counts are
 * non-negative integers with `keptChannels <= totalChannels`, and that
 * accuracies and gate probabilities lie in [0, 1]. Unknown fields are
 * dropped. A version 1 report (`bbits.report/1`, written by 0.1.0) reads as
 * a version 2 one: method `"bayesian-bits"`, its `mu` in `methodOptions`,
 * each history entry's `prior` in its `metrics`.
 *
 * @param json The JSON text.
 * @returns A fresh report of schema {@link REPORT_SCHEMA}.
 * @throws {SyntaxError} If `json` is not JSON.
 * @throws {RangeError} If the schema is neither version (`Invalid report:
 *   unsupported schema "bbits.report/3", expected "bbits.report/2" or
 *   "bbits.report/1"`), or a value is out of range (`Invalid report: gbops
 *   must be a finite number, got Infinity`).
 * @throws {TypeError} If a field is missing (`Invalid report:
 *   layers[0].name is missing (expected a string)`) or has the wrong type
 *   (`Invalid report: layers[0].macs must be a number, got string "1200"`).
 *
 * @example A version 1 report reads as version 2
 * ```ts
 * import { parseReport } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const json = JSON.stringify({
 *   schema: "bbits.report/1", model: "tiny", mu: 0.01, testAccuracy: 0.9,
 *   relativeGbops: 6.25, gbops: 0.064, baselineGbops: 1.024,
 *   layers: [], history: [], run: { seed: 1 },
 * });
 * const report = parseReport(json);
 * assert.equal(report.schema, "bbits.report/2");
 * assert.equal(report.method, "bayesian-bits");
 * assert.deepEqual(report.methodOptions, { mu: 0.01 });
 * assert.equal(report.run.seed, 1);
 * assert.throws(
 *   () => parseReport(json.replace('"mu":0.01', '"mu":"0.01"')),
 *   new TypeError('Invalid report: mu must be a number, got string "0.01"'),
 * );
 * ```
 */
export function parseReport(json: string): QuantizationReport {
  const where = "Invalid report";
  return new ReportChecker(where).report(parseJson(json, { where }));
}

/**
 * Reads a history (a report's, or one a training snapshot or run record
 * stores) from parsed JSON, entries of either schema version, checked as
 * {@link parseReport} checks them.
 *
 * @param value The parsed history (an array of entries).
 * @param where Opens error messages (e.g. the file it came from).
 * @param path The history's own path in messages (default `"history"`).
 * @returns Fresh version 2 entries.
 * @throws {TypeError | RangeError} As {@link parseReport} does, naming the
 *   entry (`history[1].loss must be a number, got string "0.25"`).
 *
 * @example
 * ```ts
 * import { parseHistory } from "@bbits/core/report";
 * import assert from "node:assert/strict";
 *
 * const [entry] = parseHistory([{
 *   epoch: 1, phase: "bayesian-bits", loss: 1.5, crossEntropy: 1.25, prior: 25,
 *   testAccuracy: 0.75, relativeGbops: 6.25, seconds: 2.5, samplesPerSecond: 400,
 * }], "a 0.1.0 snapshot");
 * assert.deepEqual(entry.metrics, { prior: 25 });
 * ```
 */
export function parseHistory(
  value: unknown,
  where: string,
  path = "history",
): HistoryEntry[] {
  return new ReportChecker(where).history(value, path);
}
