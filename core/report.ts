/**
 * The report of a Bayesian Bits run: what bit width every layer's weights
 * and output activation ended up with, which output channels were kept, what
 * the network costs in bit operations, and how accuracy and cost moved epoch
 * by epoch.
 *
 * A {@link BayesianBitsReport} is plain data (JSON-serialisable, versioned by
 * {@link REPORT_SCHEMA}). This module also renders it: {@link formatReportTable}
 * for the terminal, {@link formatReportMarkdown} for a document,
 * {@link summarizeLayerBits} for one line of progress output, and
 * {@link reportToJson} / {@link parseReport} to write and read it back with
 * validation.
 *
 * @module
 */

/** The schema identifier of {@link BayesianBitsReport} JSON. */
export const REPORT_SCHEMA = "bbits.report/1";

/** Probabilities `q(g) = P(z > 0)` of one quantizer's gates being on. */
export interface GateProbabilities {
  /** `[q4, q8, q16, q32]`. */
  readonly chain: readonly [number, number, number, number];
  /**
   * Pruning gates: `q2` per output channel, or `null` for a quantizer
   * without pruning gates.
   */
  readonly prune: readonly number[] | null;
}

/** One conv/dense layer of the report. */
export interface LayerReport {
  /** Layer name (graph node name). */
  readonly name: string;
  /** `"conv"` or `"dense"`. */
  readonly kind: "conv" | "dense";
  /** Multiply-accumulates per sample. */
  readonly macs: number;
  /**
   * Bit width of the kept output channels' weights: 2, 4, 8, 16 or 32 (32
   * also for a layer left in full precision, see `weightQuantized`).
   */
  readonly weightBits: number;
  /** Whether the weights have a quantizer (false: full precision). */
  readonly weightQuantized: boolean;
  /**
   * Bit width of the layer's output activation: 2, 4, 8, 16 or 32; `null`
   * when the output is not quantized (the logits, or a full-precision
   * layer).
   */
  readonly activationBits: number | null;
  /** Bit width of the layer's input as counted for BOPs (the network input counts as 8). */
  readonly inputBits: number;
  /** Output channels kept (pruning gate on). */
  readonly keptChannels: number;
  /** Output channels in total. */
  readonly totalChannels: number;
  /** Fraction of the input channels kept by the layer that produces the input. */
  readonly keptInputFraction: number;
  /** Giga bit operations per sample of this layer (spec section 4). */
  readonly gbops: number;
  /** Gate probabilities of the weight quantizer, or `null` without one. */
  readonly weightGates: GateProbabilities | null;
  /** Gate probabilities of the activation quantizer, or `null` without one. */
  readonly activationGates: GateProbabilities | null;
}

/** One epoch of a run's history. */
export interface HistoryEntry {
  /** 1-based epoch (counted over the whole run, phases included). */
  readonly epoch: number;
  /** `"bayesian-bits"`, `"fixed-gates"` or `"post-training"`. */
  readonly phase: string;
  /** Mean training loss (cross-entropy + mu x prior). */
  readonly loss: number;
  /** Mean training cross-entropy. */
  readonly crossEntropy: number;
  /** Mean of the summed prior over the epoch's steps (without mu). */
  readonly prior: number;
  /** Test accuracy in [0, 1] with deterministic gates. */
  readonly testAccuracy: number;
  /** Relative GBOPs in percent with deterministic gates. */
  readonly relativeGbops: number;
  /** Wall time of the epoch's training steps, in seconds. */
  readonly seconds: number;
  /** Training samples per second. */
  readonly samplesPerSecond: number;
}

/** The report of a run (or of a model at one point of a run). */
export interface BayesianBitsReport {
  /** Always {@link REPORT_SCHEMA}. */
  readonly schema: typeof REPORT_SCHEMA;
  /** Model name. */
  readonly model: string;
  /** The regulariser strength. */
  readonly mu: number;
  /** Test accuracy in [0, 1] with deterministic gates. */
  readonly testAccuracy: number;
  /** Relative GBOPs in percent: `100 * sum BOPs / (sum MACs * 32 * 32)`. */
  readonly relativeGbops: number;
  /** GBOPs per sample of the whole network. */
  readonly gbops: number;
  /** GBOPs per sample of the all-32-bit baseline. */
  readonly baselineGbops: number;
  /** Per-layer details in execution order. */
  readonly layers: readonly LayerReport[];
  /** Per-epoch history (empty for a model that was not trained here). */
  readonly history: readonly HistoryEntry[];
  /** Free-form run description (command, options, seed, wall time...). */
  readonly run: Readonly<Record<string, string | number | boolean | null>>;
}

// ---------------------------------------------------------------------------
// Cell text shared by the terminal table, the Markdown document and the
// one-line summary: one definition per column, so the three never diverge.

/** Horizontal alignment of a column. */
type Align = "left" | "right";

/** One column of a rendered table: its header and how a row becomes text. */
interface Column<Row> {
  readonly header: string;
  readonly align: Align;
  readonly cell: (row: Row) => string;
}

/** What the gate columns mean (printed under both layer tables). */
const GATES_LEGEND =
  "gates: P(on) of q4/q8/q16/q32; q2 = pruning gates, min/mean/max over output channels";

/** The terminal table shows every history row up to this many... */
const HISTORY_SHOW_ALL_UP_TO = 10;
/** ...and only the last this many beyond. */
const HISTORY_TAIL_ROWS = 5;

/** `1234567` as `"1,234,567"`; non-integers unchanged. */
function formatInteger(n: number): string {
  if (!Number.isInteger(n) || Math.abs(n) >= 1e21) return String(n);
  return String(n).replace(/\B(?=(\d{3})+$)/g, ",");
}

/**
 * GBOPs to 4 significant digits, without an exponent for values of 1000 and
 * more (toPrecision would write `1.860e+3`).
 */
function formatGbops(gbops: number): string {
  return Math.abs(gbops) >= 1000 ? gbops.toFixed(0) : gbops.toPrecision(4);
}

/** `"fp32"` for a layer whose weights have no quantizer, else the bit width. */
function weightBitsText(layer: LayerReport): string {
  return layer.weightQuantized ? String(layer.weightBits) : "fp32";
}

/** `"-"` for an unquantized output activation, else the bit width. */
function activationBitsText(layer: LayerReport): string {
  return layer.activationBits === null ? "-" : String(layer.activationBits);
}

/**
 * Gate probabilities compactly: `"1.00/1.00/0.02/0.00"` for the chain, then
 * `" q2 min/mean/max"` over the pruning gates when there are any; `"-"` for
 * no quantizer.
 */
function formatGates(gates: GateProbabilities | null): string {
  if (gates === null) return "-";
  const chain = gates.chain.map((p) => p.toFixed(2)).join("/");
  if (gates.prune === null) return chain;
  if (gates.prune.length === 0) return `${chain} q2 -`;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const p of gates.prune) {
    min = Math.min(min, p);
    max = Math.max(max, p);
    sum += p;
  }
  const mean = sum / gates.prune.length;
  return `${chain} q2 ${[min, mean, max].map((p) => p.toFixed(2)).join("/")}`;
}

const LAYER_COLUMNS: readonly Column<LayerReport>[] = [
  { header: "layer", align: "left", cell: (l) => l.name },
  { header: "kind", align: "left", cell: (l) => l.kind },
  { header: "MACs", align: "right", cell: (l) => formatInteger(l.macs) },
  { header: "w bits", align: "right", cell: weightBitsText },
  { header: "a bits", align: "right", cell: activationBitsText },
  {
    header: "kept/total",
    align: "right",
    cell: (l) => `${l.keptChannels}/${l.totalChannels}`,
  },
  { header: "in bits", align: "right", cell: (l) => String(l.inputBits) },
  { header: "GBOPs", align: "right", cell: (l) => formatGbops(l.gbops) },
  { header: "w gates", align: "left", cell: (l) => formatGates(l.weightGates) },
  {
    header: "a gates",
    align: "left",
    cell: (l) => formatGates(l.activationGates),
  },
];

const HISTORY_COLUMNS: readonly Column<HistoryEntry>[] = [
  { header: "epoch", align: "right", cell: (h) => String(h.epoch) },
  { header: "phase", align: "left", cell: (h) => h.phase },
  { header: "loss", align: "right", cell: (h) => h.loss.toFixed(4) },
  {
    header: "cross-entropy",
    align: "right",
    cell: (h) => h.crossEntropy.toFixed(4),
  },
  { header: "prior", align: "right", cell: (h) => h.prior.toFixed(3) },
  {
    header: "test acc %",
    align: "right",
    cell: (h) => (100 * h.testAccuracy).toFixed(2),
  },
  {
    header: "rel GBOPs %",
    align: "right",
    cell: (h) => h.relativeGbops.toFixed(3),
  },
  { header: "seconds", align: "right", cell: (h) => h.seconds.toFixed(1) },
  {
    header: "samples/s",
    align: "right",
    cell: (h) => h.samplesPerSecond.toFixed(0),
  },
];

/** `"99.12 %"`: an accuracy in [0, 1] as a percentage with 2 decimals. */
function accuracyText(accuracy: number): string {
  return `${(100 * accuracy).toFixed(2)} %`;
}

/** `"0.356 %"`: relative GBOPs (already a percentage) with 3 decimals. */
function relativeGbopsText(relativeGbops: number): string {
  return `${relativeGbops.toFixed(3)} %`;
}

// ---------------------------------------------------------------------------
// Terminal table

/** Wraps text in an ANSI style, or leaves it alone. */
type Paint = (text: string) => string;

/** Display width in code points (not UTF-16 units). */
function textWidth(text: string): number {
  return [...text].length;
}

function padCell(text: string, width: number, align: Align): string {
  const fill = " ".repeat(width - textWidth(text));
  return align === "left" ? text + fill : fill + text;
}

/**
 * A header line, a rule and one line per row, columns padded to the widest
 * cell. Padding happens before painting, so colour codes never count towards
 * a column's width.
 */
function textTable<Row>(
  columns: readonly Column<Row>[],
  rows: readonly Row[],
  bold: Paint,
): string[] {
  const cells = rows.map((row) => columns.map((c) => c.cell(row)));
  const widths = columns.map((c, i) =>
    Math.max(textWidth(c.header), ...cells.map((r) => textWidth(r[i])))
  );
  const line = (texts: readonly string[]) =>
    texts.map((t, i) => padCell(t, widths[i], columns[i].align)).join("  ")
      .trimEnd();
  return [
    bold(line(columns.map((c) => c.header))),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...cells.map(line),
  ];
}

/**
 * Renders a report as a table for a terminal: a header line (model, mu, test
 * accuracy, relative GBOPs, GBOPs), one row per layer (MACs, weight bits —
 * `fp32` for unquantized weights —, activation bits — `-` when not quantized
 * —, kept/total output channels, input bits, GBOPs, compact gate
 * probabilities), then the history: every epoch when there are at most 10,
 * else the last 5 with a note of how many are hidden.
 *
 * @param report The report.
 * @param options `color: true` adds ANSI bold/dim styling (default: plain
 *   text, no escape codes).
 * @returns The table, lines joined by `\n`, without a trailing newline.
 *
 * @example
 * ```ts
 * import { type BayesianBitsReport, formatReportTable, REPORT_SCHEMA } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const report: BayesianBitsReport = {
 *   schema: REPORT_SCHEMA, model: "tiny", mu: 0.01, testAccuracy: 0.9,
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
 * const lines = formatReportTable(report).split("\n");
 * assert.equal(
 *   lines[0],
 *   "tiny: mu 0.01, test accuracy 90.00 %, relative GBOPs 6.250 %, GBOPs 0.06400 (baseline 1.024)",
 * );
 * assert.match(lines[4], /^fc +dense +1,000,000 +8 +- +10\/10 +8 +0\.06400 +1\.00\/0\.01\/0\.00\/0\.00 +-$/);
 * ```
 */
export function formatReportTable(
  report: BayesianBitsReport,
  options: { readonly color?: boolean } = {},
): string {
  const color = options.color === true;
  const bold: Paint = color ? (t) => `\x1b[1m${t}\x1b[22m` : (t) => t;
  const dim: Paint = color ? (t) => `\x1b[2m${t}\x1b[22m` : (t) => t;
  const lines = [
    bold(
      `${report.model}: mu ${report.mu}, test accuracy ${
        accuracyText(report.testAccuracy)
      }, relative GBOPs ${relativeGbopsText(report.relativeGbops)}, GBOPs ${
        formatGbops(report.gbops)
      } (baseline ${formatGbops(report.baselineGbops)})`,
    ),
    "",
    ...textTable(LAYER_COLUMNS, report.layers, bold),
    dim(GATES_LEGEND),
    "",
  ];
  const history = report.history;
  if (history.length === 0) {
    lines.push("history: none");
  } else if (history.length <= HISTORY_SHOW_ALL_UP_TO) {
    lines.push(`history (${history.length} epochs):`);
    lines.push(...textTable(HISTORY_COLUMNS, history, bold));
  } else {
    const hidden = history.length - HISTORY_TAIL_ROWS;
    lines.push(
      `history (last ${HISTORY_TAIL_ROWS} of ${history.length} epochs):`,
    );
    lines.push(...textTable(HISTORY_COLUMNS, history.slice(hidden), bold));
    lines.push(dim(`(${hidden} earlier epochs hidden)`));
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// One-line summary

/**
 * Summarises every layer's bit widths and kept channels on one line:
 * `name w<weight bits>/a<activation bits> kept/total`, with `wfp32` for
 * unquantized weights and `-` for an unquantized output activation, layers
 * separated by `, `.
 *
 * @param report The report.
 * @returns E.g. `"conv1 w8/a4 32/32, conv2 w4/a8 40/64, fc1 w2/a8 300/512, fc2 w8/- 10/10"`.
 *
 * @example
 * ```ts
 * import { type BayesianBitsReport, REPORT_SCHEMA, summarizeLayerBits } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const report: BayesianBitsReport = {
 *   schema: REPORT_SCHEMA, model: "tiny", mu: 0.01, testAccuracy: 0.9,
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
 * assert.equal(summarizeLayerBits(report), "fc w8/- 10/10");
 * ```
 */
export function summarizeLayerBits(report: BayesianBitsReport): string {
  return report.layers.map((l) => {
    const activation = l.activationBits === null ? "-" : `a${l.activationBits}`;
    return `${l.name} w${
      weightBitsText(l)
    }/${activation} ${l.keptChannels}/${l.totalChannels}`;
  }).join(", ");
}

// ---------------------------------------------------------------------------
// Markdown

/**
 * Text safe inside a Markdown table cell: backslashes and pipes escaped (a
 * trailing `\` would otherwise escape the cell's closing `|`), line breaks
 * turned into spaces.
 */
function markdownCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(
    /\r\n|\r|\n/g,
    " ",
  );
}

function markdownRow(cells: readonly string[]): string {
  return `| ${cells.map(markdownCell).join(" | ")} |`;
}

function markdownTable<Row>(
  columns: readonly Column<Row>[],
  rows: readonly Row[],
): string[] {
  return [
    markdownRow(columns.map((c) => c.header)),
    `|${columns.map((c) => c.align === "right" ? "---:" : "---").join("|")}|`,
    ...rows.map((row) => markdownRow(columns.map((c) => c.cell(row)))),
  ];
}

/**
 * Renders a report as a Markdown document with three tables: a summary (test
 * accuracy, relative GBOPs, GBOPs, baseline GBOPs, mu, then every `run`
 * entry), the layers (the columns of {@link formatReportTable}) and the
 * per-epoch history (epoch, phase, loss, cross-entropy, prior, test accuracy
 * %, relative GBOPs %, seconds, samples/s; a sentence instead of the table
 * when there is no history). `|`, `\` and line breaks in cell text are
 * escaped.
 *
 * @param report The report.
 * @returns The document, ending with a newline.
 *
 * @example
 * ```ts
 * import { type BayesianBitsReport, formatReportMarkdown, REPORT_SCHEMA } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const report: BayesianBitsReport = {
 *   schema: REPORT_SCHEMA, model: "tiny", mu: 0.01, testAccuracy: 0.9,
 *   relativeGbops: 6.25, gbops: 0.064, baselineGbops: 1.024,
 *   layers: [{
 *     name: "fc", kind: "dense", macs: 1_000_000, weightBits: 8,
 *     weightQuantized: true, activationBits: null, inputBits: 8,
 *     keptChannels: 10, totalChannels: 10, keptInputFraction: 1, gbops: 0.064,
 *     weightGates: { chain: [1, 0.01, 0, 0], prune: null }, activationGates: null,
 *   }],
 *   history: [],
 *   run: { command: "train --mu 0.01 | tee log" },
 * };
 * const md = formatReportMarkdown(report);
 * assert.ok(md.includes("| test accuracy | 90.00 % |"));
 * assert.ok(md.includes("| command | train --mu 0.01 \\| tee log |"));
 * assert.ok(md.includes("| fc | dense | 1,000,000 | 8 | - | 10/10 | 8 | 0.06400 |"));
 * ```
 */
export function formatReportMarkdown(report: BayesianBitsReport): string {
  const summary: [string, string][] = [
    ["test accuracy", accuracyText(report.testAccuracy)],
    ["relative GBOPs", relativeGbopsText(report.relativeGbops)],
    ["GBOPs", formatGbops(report.gbops)],
    ["baseline GBOPs", formatGbops(report.baselineGbops)],
    ["mu", String(report.mu)],
    ...Object.entries(report.run).map(([key, value]): [string, string] => [
      key,
      String(value),
    ]),
  ];
  const lines = [
    `# Bayesian Bits report: ${markdownCell(report.model)}`,
    "",
    "## Summary",
    "",
    markdownRow(["quantity", "value"]),
    "|---|---|",
    ...summary.map(markdownRow),
    "",
    "## Layers",
    "",
    ...markdownTable(LAYER_COLUMNS, report.layers),
    "",
    `${GATES_LEGEND[0].toUpperCase()}${GATES_LEGEND.slice(1)}.`,
    "",
    "## History",
    "",
    ...(report.history.length === 0
      ? ["No epochs recorded."]
      : markdownTable(HISTORY_COLUMNS, report.history)),
  ];
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------
// JSON: one checker for both directions. It builds a fresh report with the
// known fields only, in declaration order (schema first), so what
// reportToJson writes is exactly what parseReport accepts.

/** A short description of an offending value for error messages. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  switch (typeof value) {
    case "string": {
      const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
      return `string ${JSON.stringify(shown)}`;
    }
    case "number":
      return String(value);
    case "boolean":
      return `boolean ${value}`;
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}

/** `run.seed`, or `run["wall time"]` for a key that is not an identifier. */
function keyPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key)
    ? `${path}.${key}`
    : `${path}[${JSON.stringify(key)}]`;
}

/**
 * Checks the fields of one report value; `context` opens every message
 * ("Invalid report" when reading, "Cannot write report JSON" when writing).
 */
class ReportChecker {
  constructor(private readonly context: string) {}

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

  probability(value: unknown, path: string): number {
    const p = this.number(value, path);
    if (p < 0 || p > 1) throw this.rangeError(path, "in [0, 1]", p);
    return p;
  }

  /** The bit width `null` (not quantized) or a finite number. */
  bitsOrNull(value: unknown, path: string): number | null {
    return value === null ? null : this.number(value, path);
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

  layer(value: unknown, path: string): LayerReport {
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
    return {
      name: this.string(o.name, `${path}.name`),
      kind,
      macs: this.number(o.macs, `${path}.macs`),
      weightBits: this.number(o.weightBits, `${path}.weightBits`),
      weightQuantized: this.boolean(
        o.weightQuantized,
        `${path}.weightQuantized`,
      ),
      activationBits: this.bitsOrNull(
        o.activationBits,
        `${path}.activationBits`,
      ),
      inputBits: this.number(o.inputBits, `${path}.inputBits`),
      keptChannels,
      totalChannels,
      keptInputFraction: this.number(
        o.keptInputFraction,
        `${path}.keptInputFraction`,
      ),
      gbops: this.number(o.gbops, `${path}.gbops`),
      weightGates: this.gates(o.weightGates, `${path}.weightGates`),
      activationGates: this.gates(o.activationGates, `${path}.activationGates`),
    };
  }

  historyEntry(value: unknown, path: string): HistoryEntry {
    const o = this.object(value, path);
    return {
      epoch: this.count(o.epoch, `${path}.epoch`),
      phase: this.string(o.phase, `${path}.phase`),
      loss: this.number(o.loss, `${path}.loss`),
      crossEntropy: this.number(o.crossEntropy, `${path}.crossEntropy`),
      prior: this.number(o.prior, `${path}.prior`),
      testAccuracy: this.probability(o.testAccuracy, `${path}.testAccuracy`),
      relativeGbops: this.number(o.relativeGbops, `${path}.relativeGbops`),
      seconds: this.number(o.seconds, `${path}.seconds`),
      samplesPerSecond: this.number(
        o.samplesPerSecond,
        `${path}.samplesPerSecond`,
      ),
    };
  }

  run(value: unknown, path: string): BayesianBitsReport["run"] {
    const o = this.object(value, path);
    const run: Record<string, string | number | boolean | null> = {};
    for (const [key, v] of Object.entries(o)) {
      const at = keyPath(path, key);
      if (typeof v === "number") {
        run[key] = this.number(v, at);
      } else if (
        v === null || typeof v === "string" || typeof v === "boolean"
      ) {
        run[key] = v;
      } else {
        throw this.typeError(at, "a string, number, boolean or null", v);
      }
    }
    return run;
  }

  report(value: unknown): BayesianBitsReport {
    const o = this.object(value, "the report");
    const schema = this.string(o.schema, "schema");
    if (schema !== REPORT_SCHEMA) {
      throw new RangeError(
        `${this.context}: unsupported schema ${
          JSON.stringify(schema)
        }, expected ${JSON.stringify(REPORT_SCHEMA)}`,
      );
    }
    return {
      schema: REPORT_SCHEMA,
      model: this.string(o.model, "model"),
      mu: this.number(o.mu, "mu"),
      testAccuracy: this.probability(o.testAccuracy, "testAccuracy"),
      relativeGbops: this.number(o.relativeGbops, "relativeGbops"),
      gbops: this.number(o.gbops, "gbops"),
      baselineGbops: this.number(o.baselineGbops, "baselineGbops"),
      layers: this.array(o.layers, "layers").map((l, i) =>
        this.layer(l, `layers[${i}]`)
      ),
      history: this.array(o.history, "history").map((h, i) =>
        this.historyEntry(h, `history[${i}]`)
      ),
      run: this.run(o.run, "run"),
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
 * import { type BayesianBitsReport, REPORT_SCHEMA, reportToJson } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const report: BayesianBitsReport = {
 *   schema: REPORT_SCHEMA, model: "tiny", mu: 0.01, testAccuracy: 0.9,
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
 * assert.ok(reportToJson(report).startsWith('{\n  "schema": "bbits.report/1",\n  "model": "tiny",'));
 * assert.throws(
 *   () => reportToJson({ ...report, gbops: Infinity }),
 *   new RangeError("Cannot write report JSON: gbops must be a finite number, got Infinity"),
 * );
 * ```
 */
export function reportToJson(report: BayesianBitsReport): string {
  const checked = new ReportChecker("Cannot write report JSON").report(report);
  return JSON.stringify(checked, null, 2);
}

/**
 * Reads a report written by {@link reportToJson}, checking the schema, every
 * required field and its type, that numbers are finite, that counts are
 * non-negative integers with `keptChannels <= totalChannels`, and that
 * accuracies and gate probabilities lie in [0, 1]. Unknown fields are
 * dropped.
 *
 * @param json The JSON text.
 * @returns A fresh report.
 * @throws {SyntaxError} If `json` is not JSON.
 * @throws {RangeError} If the schema is not {@link REPORT_SCHEMA} (`Invalid
 *   report: unsupported schema "bbits.report/2", expected "bbits.report/1"`),
 *   or a value is out of range (`Invalid report: mu must be a finite number,
 *   got Infinity`).
 * @throws {TypeError} If a field is missing (`Invalid report:
 *   layers[0].name is missing (expected a string)`) or has the wrong type
 *   (`Invalid report: layers[0].macs must be a number, got string "1200"`).
 *
 * @example
 * ```ts
 * import { parseReport } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const json = JSON.stringify({
 *   schema: "bbits.report/1", model: "tiny", mu: 0.01, testAccuracy: 0.9,
 *   relativeGbops: 6.25, gbops: 0.064, baselineGbops: 1.024,
 *   layers: [], history: [], run: { seed: 1 },
 * });
 * assert.equal(parseReport(json).run.seed, 1);
 * assert.throws(
 *   () => parseReport(json.replace('"mu":0.01', '"mu":"0.01"')),
 *   new TypeError('Invalid report: mu must be a number, got string "0.01"'),
 * );
 * ```
 */
export function parseReport(json: string): BayesianBitsReport {
  return new ReportChecker("Invalid report").report(JSON.parse(json));
}
