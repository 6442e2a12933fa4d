/**
 * Reports rendered and stored: {@link formatReportTable} for the terminal,
 * {@link formatReportMarkdown} for a document, {@link summarizeLayerBits}
 * for one line of progress output, and (from `io/report_json.ts`)
 * `reportToJson` / `parseReport` to write and read the JSON with
 * validation. The report itself is built by `frozenReport` (core/report.ts)
 * from a frozen model's plan, so nothing here knows which method ran: the
 * gate columns appear when the layers carry gate probabilities, the
 * history's metric columns are the method's metrics.
 *
 * @module
 */

import type {
  GateProbabilities,
  HistoryEntry,
  LayerReport,
  QuantizationReport,
} from "../core/report.ts";

export * from "./report_json.ts";

// ---------------------------------------------------------------------------
// Cell text shared by the terminal table, the Markdown document and the
// one-line summary: one definition per column, so the three never diverge.

/** Horizontal alignment of a column. */
export type Align = "left" | "right";

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

/** `"fp32"` for a layer whose weights are not on a grid, else the bit width. */
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
function formatGates(gates: GateProbabilities | null | undefined): string {
  if (!gates) return "-";
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
];

const GATE_COLUMNS: readonly Column<LayerReport>[] = [
  { header: "w gates", align: "left", cell: (l) => formatGates(l.weightGates) },
  {
    header: "a gates",
    align: "left",
    cell: (l) => formatGates(l.activationGates),
  },
];

/** Whether any layer carries gate probabilities (the method has gates). */
function hasGates(report: QuantizationReport): boolean {
  return report.layers.some((l) =>
    l.weightGates !== undefined || l.activationGates !== undefined
  );
}

/** The layer table's columns: the gate columns only for a method with gates. */
function layerColumns(report: QuantizationReport): Column<LayerReport>[] {
  return hasGates(report)
    ? [...LAYER_COLUMNS, ...GATE_COLUMNS]
    : [...LAYER_COLUMNS];
}

/**
 * The history table's columns: epoch, phase, loss, cross-entropy, one
 * column per method metric (3 decimals; `-` where an epoch lacks it), test
 * accuracy, relative GBOPs, seconds, samples/s.
 */
function historyColumns(
  history: readonly HistoryEntry[],
): Column<HistoryEntry>[] {
  const metrics = [...new Set(history.flatMap((h) => Object.keys(h.metrics)))];
  return [
    { header: "epoch", align: "right", cell: (h) => String(h.epoch) },
    { header: "phase", align: "left", cell: (h) => h.phase },
    { header: "loss", align: "right", cell: (h) => h.loss.toFixed(4) },
    {
      header: "cross-entropy",
      align: "right",
      cell: (h) => h.crossEntropy.toFixed(4),
    },
    ...metrics.map((name): Column<HistoryEntry> => ({
      header: name,
      align: "right",
      cell: (h) => name in h.metrics ? h.metrics[name].toFixed(3) : "-",
    })),
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
}

/** `"99.12 %"`: an accuracy in [0, 1] as a percentage with 2 decimals. */
function accuracyText(accuracy: number): string {
  return `${(100 * accuracy).toFixed(2)} %`;
}

/** `"0.356 %"`: relative GBOPs (already a percentage) with 3 decimals. */
function relativeGbopsText(relativeGbops: number): string {
  return `${relativeGbops.toFixed(3)} %`;
}

/** `"Bayesian Bits"` for `"bayesian-bits"`: a method name as a title. */
function methodTitle(method: string): string {
  return method.split(/[-_ ]+/).filter((w) => w.length > 0)
    .map((w) => w[0].toUpperCase() + w.slice(1)).join(" ");
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

/** The history part of the terminal table. */
function historyLines(
  history: readonly HistoryEntry[],
  bold: Paint,
  dim: Paint,
): string[] {
  if (history.length === 0) return ["history: none"];
  const columns = historyColumns(history);
  if (history.length <= HISTORY_SHOW_ALL_UP_TO) {
    return [
      `history (${history.length} epochs):`,
      ...textTable(columns, history, bold),
    ];
  }
  const hidden = history.length - HISTORY_TAIL_ROWS;
  return [
    `history (last ${HISTORY_TAIL_ROWS} of ${history.length} epochs):`,
    ...textTable(columns, history.slice(hidden), bold),
    dim(`(${hidden} earlier epochs hidden)`),
  ];
}

/** `"mu 0.01, "`: the method's options as the header line shows them. */
function optionsText(report: QuantizationReport): string {
  return Object.entries(report.methodOptions)
    .map(([key, value]) => `${key} ${value}, `).join("");
}

/**
 * Renders a report as a table for a terminal: a header line (model, the
 * method's options, test accuracy, relative GBOPs, GBOPs), one row per
 * layer (MACs, weight bits — `fp32` for unquantized weights —, activation
 * bits — `-` when not quantized —, kept/total output channels, input bits,
 * GBOPs, and compact gate probabilities when the method has gates), then
 * the history: every epoch when there are at most 10, else the last 5 with
 * a note of how many are hidden.
 *
 * @param report The report.
 * @param options `color: true` adds ANSI bold/dim styling (default: plain
 *   text, no escape codes).
 * @returns The table, lines joined by `\n`, without a trailing newline.
 *
 * @example
 * ```ts
 * import { formatReportTable, type QuantizationReport } from "@bbits/core";
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
 * const lines = formatReportTable(report).split("\n");
 * assert.equal(
 *   lines[0],
 *   "tiny: mu 0.01, test accuracy 90.00 %, relative GBOPs 6.250 %, GBOPs 0.06400 (baseline 1.024)",
 * );
 * assert.match(lines[4], /^fc +dense +1,000,000 +8 +- +10\/10 +8 +0\.06400 +1\.00\/0\.01\/0\.00\/0\.00 +-$/);
 * ```
 */
export function formatReportTable(
  report: QuantizationReport,
  options: { readonly color?: boolean } = {},
): string {
  const color = options.color === true;
  const bold: Paint = color ? (t) => `\x1b[1m${t}\x1b[22m` : (t) => t;
  const dim: Paint = color ? (t) => `\x1b[2m${t}\x1b[22m` : (t) => t;
  return [
    bold(
      `${report.model}: ${optionsText(report)}test accuracy ${
        accuracyText(report.testAccuracy)
      }, relative GBOPs ${relativeGbopsText(report.relativeGbops)}, GBOPs ${
        formatGbops(report.gbops)
      } (baseline ${formatGbops(report.baselineGbops)})`,
    ),
    "",
    ...textTable(layerColumns(report), report.layers, bold),
    ...(hasGates(report) ? [dim(GATES_LEGEND)] : []),
    ...costsLine(report),
    "",
    ...historyLines(report.history, bold, dim),
  ].join("\n");
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
 * import { type QuantizationReport } from "@bbits/core";
 * import { REPORT_SCHEMA, summarizeLayerBits } from "@bbits/core/report";
 * import assert from "node:assert/strict";
 *
 * const report: QuantizationReport = {
 *   schema: REPORT_SCHEMA, model: "tiny", method: "float", methodOptions: {},
 *   testAccuracy: 0.9, relativeGbops: 100, gbops: 1.024, baselineGbops: 1.024,
 *   layers: [{
 *     name: "fc", kind: "dense", macs: 1_000_000, weightBits: 32,
 *     weightQuantized: false, activationBits: null, inputBits: 32,
 *     keptChannels: 10, totalChannels: 10, keptInputFraction: 1, gbops: 1.024,
 *   }],
 *   history: [],
 *   run: {},
 * };
 * assert.equal(summarizeLayerBits(report), "fc wfp32/- 10/10");
 * ```
 */
export function summarizeLayerBits(report: QuantizationReport): string {
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

/** Bytes as KiB with one decimal. */
function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The summary rows of a report's costs in the other conventions, if any. */
function costRows(report: QuantizationReport): [string, string][] {
  const c = report.costs;
  if (!c) return [];
  return [
    [
      "relative GBOPs, MACs x bw x ba",
      relativeGbopsText(c.macsBitsRelativeGbops),
    ],
    [
      "relative GBOPs, executable widths",
      relativeGbopsText(c.executableRelativeGbops),
    ],
    ["weights", `${kib(c.weightBytes)} (float32: ${kib(c.floatWeightBytes)})`],
  ];
}

/**
 * The line under a report's headline: its costs in the other conventions,
 * or nothing for a report without them.
 */
function costsLine(report: QuantizationReport): string[] {
  const c = report.costs;
  if (!c) return [];
  return [
    `relative GBOPs as MACs x bw x ba ${
      relativeGbopsText(c.macsBitsRelativeGbops)
    }, with executable widths (2/4/8/16/32) ${
      relativeGbopsText(c.executableRelativeGbops)
    }; weights ${kib(c.weightBytes)} of ${kib(c.floatWeightBytes)} in float32`,
  ];
}

/** The summary table's rows: figures, the method's options, the run. */
function summaryRows(report: QuantizationReport): [string, string][] {
  const entries = (record: Readonly<Record<string, unknown>>) =>
    Object.entries(record).map(([key, value]): [string, string] => [
      key,
      String(value),
    ]);
  return [
    ["test accuracy", accuracyText(report.testAccuracy)],
    ["relative GBOPs", relativeGbopsText(report.relativeGbops)],
    ["GBOPs", formatGbops(report.gbops)],
    ["baseline GBOPs", formatGbops(report.baselineGbops)],
    ...entries(report.methodOptions),
    ...entries(report.run),
    ...costRows(report),
  ];
}

/**
 * Renders a report as a Markdown document titled by its method (`#
 * Bayesian Bits report: lenet5`) with three tables: a summary (test
 * accuracy, relative GBOPs, GBOPs, baseline GBOPs, the method's options,
 * then every `run` entry), the layers (the columns of
 * {@link formatReportTable}, the gate legend below when there are gates)
 * and the per-epoch history (epoch, phase, loss, cross-entropy, the
 * method's metrics, test accuracy %, relative GBOPs %, seconds, samples/s;
 * a sentence instead of the table when there is no history). `|`, `\` and
 * line breaks in cell text are escaped.
 *
 * @param report The report.
 * @returns The document, ending with a newline.
 *
 * @example
 * ```ts
 * import { formatReportMarkdown, type QuantizationReport } from "@bbits/core";
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
 *   run: { command: "train --mu 0.01 | tee log" },
 * };
 * const md = formatReportMarkdown(report);
 * assert.ok(md.startsWith("# Bayesian Bits report: tiny\n"));
 * assert.ok(md.includes("| test accuracy | 90.00 % |"));
 * assert.ok(md.includes("| mu | 0.01 |"));
 * assert.ok(md.includes("| command | train --mu 0.01 \\| tee log |"));
 * assert.ok(md.includes("| fc | dense | 1,000,000 | 8 | - | 10/10 | 8 | 0.06400 |"));
 * ```
 */
export function formatReportMarkdown(report: QuantizationReport): string {
  const lines = [
    `# ${methodTitle(report.method)} report: ${markdownCell(report.model)}`,
    "",
    "## Summary",
    "",
    markdownRow(["quantity", "value"]),
    "|---|---|",
    ...summaryRows(report).map(markdownRow),
    "",
    "## Layers",
    "",
    ...markdownTable(layerColumns(report), report.layers),
    "",
    ...(hasGates(report)
      ? [`${GATES_LEGEND[0].toUpperCase()}${GATES_LEGEND.slice(1)}.`, ""]
      : []),
    "## History",
    "",
    ...(report.history.length === 0
      ? ["No epochs recorded."]
      : markdownTable(historyColumns(report.history), report.history)),
  ];
  return lines.join("\n") + "\n";
}

/** One table of {@link reportTables}: header, alignment and text cells. */
export interface ReportTable {
  /** Column headers. */
  readonly header: readonly string[];
  /** Per column, `"left"` or `"right"`. */
  readonly align: readonly Align[];
  /** Rows of text cells. */
  readonly rows: readonly (readonly string[])[];
}

/**
 * A report's three tables as text cells, for any renderer (the notebook's
 * HTML): the summary (quantity, value), the layers (gate columns only for
 * a method with gates) and the history; the cells read as in
 * {@link formatReportMarkdown}.
 *
 * @param report The report.
 * @returns The tables and the gates' legend (or `null` without gates).
 */
export function reportTables(report: QuantizationReport): {
  readonly summary: ReportTable;
  readonly layers: ReportTable;
  readonly history: ReportTable;
  readonly legend: string | null;
} {
  const table = <Row>(
    columns: readonly Column<Row>[],
    rows: readonly Row[],
  ) => ({
    header: columns.map((c) => c.header),
    align: columns.map((c) => c.align),
    rows: rows.map((row) => columns.map((c) => c.cell(row))),
  });
  return {
    summary: {
      header: ["quantity", "value"],
      align: ["left", "left"],
      rows: summaryRows(report),
    },
    layers: table(layerColumns(report), report.layers),
    history: table(historyColumns(report.history), report.history),
    legend: hasGates(report) ? GATES_LEGEND : null,
  };
}
