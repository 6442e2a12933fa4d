/**
 * Rich output for Jupyter notebooks (Deno's kernel): a report as HTML
 * tables, a chart of the bits each layer learned, the Pareto plot of many
 * runs, and progress that updates one output in place while a long cell
 * runs.
 *
 * Each `show*` function returns a plain object with the `text/html` (or
 * `image/svg+xml`) and `text/plain` renderings that also displays itself
 * in a notebook (it has a `Symbol.for("Jupyter.display")` method): the last
 * expression of a cell renders, and outside a notebook the same object is
 * data (`.html`, `.text`). {@link progressDisplay} writes to one display id
 * in a notebook and to standard error elsewhere.
 *
 * @example
 * ```ts
 * import { JUPYTER_DISPLAY, showSvg } from "@bbits/core/notebook";
 * import assert from "node:assert/strict";
 *
 * const shown = showSvg("<svg/>", "an empty plot");
 * assert.equal(shown.text, "an empty plot");
 * assert.deepEqual(shown[JUPYTER_DISPLAY](), {
 *   "image/svg+xml": "<svg/>",
 *   "text/plain": "an empty plot",
 * });
 * ```
 *
 * @module
 */

import type { QuantizationReport } from "../core/report.ts";
import { type ParetoPoint, paretoSvg } from "./pareto.ts";

export {
  type GateProbabilities,
  type HistoryEntry,
  type LayerReport,
  type QuantizationReport,
  REPORT_SCHEMA,
  type ReportCosts,
  type ReportValue,
} from "../core/report.ts";
export type { ParetoPoint } from "./pareto.ts";
import { formatReportTable, type ReportTable, reportTables } from "./report.ts";

/** The symbol Deno's Jupyter kernel calls to render an object. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** A MIME bundle: renderings of one output by MIME type. */
export type MimeBundle = Readonly<Record<string, string>>;

/** Something a notebook renders and a script reads. */
export interface Shown {
  /** The plain-text rendering. */
  readonly text: string;
  /** The HTML rendering (`null` when the output is an SVG only). */
  readonly html: string | null;
  /** The SVG rendering (`null` when the output is HTML). */
  readonly svg: string | null;
  /** The MIME bundle the notebook shows. */
  [JUPYTER_DISPLAY](): MimeBundle;
}

/** Escapes text for HTML. */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => `&#${c.charCodeAt(0)};`,
  );
}

/** An HTML table of text cells. */
function htmlTable(table: ReportTable): string {
  const cell = (tag: string, text: string, c: number) =>
    `<${tag} style="text-align:${table.align[c]}">${escapeHtml(text)}</${tag}>`;
  return [
    "<table>",
    `<thead><tr>${
      table.header.map((h, c) => cell("th", h, c)).join("")
    }</tr></thead>`,
    "<tbody>",
    ...table.rows.map((r) =>
      `<tr>${r.map((text, c) => cell("td", text, c)).join("")}</tr>`
    ),
    "</tbody>",
    "</table>",
  ].join("\n");
}

/**
 * A report as HTML: a heading, the summary, layer and history tables, and
 * the gates' legend when the method has gates.
 *
 * @param report The report.
 * @returns The HTML fragment.
 */
export function reportHtml(report: QuantizationReport): string {
  const t = reportTables(report);
  return [
    `<div class="bbits-report">`,
    `<h3>${escapeHtml(report.method)} report: ${escapeHtml(report.model)}</h3>`,
    htmlTable(t.summary),
    `<h4>Layers</h4>`,
    htmlTable(t.layers),
    ...(t.legend ? [`<p><small>${escapeHtml(t.legend)}</small></p>`] : []),
    `<h4>History</h4>`,
    t.history.rows.length === 0
      ? "<p>No epochs recorded.</p>"
      : htmlTable(t.history),
    `</div>`,
  ].join("\n");
}

/**
 * An SVG bar chart of what each conv/dense layer learned: weight bits and
 * output activation bits on a log2 axis (no activation grid: no bar) and
 * the kept fraction of its output channels (full height: all), one group
 * of three bars per layer.
 *
 * @param report The report.
 * @returns The SVG document.
 */
export function bitsChartSvg(report: QuantizationReport): string {
  const layers = report.layers;
  const w = Math.max(540, 90 + 96 * layers.length);
  const h = 260;
  const base = h - 48;
  const full = base - 40;
  // Bits on a log2 axis (1 to 32 bits: a fifth of the height per doubling).
  const scale = (bits: number) =>
    bits <= 0 ? 0 : full * Math.max(0, Math.log2(Math.min(bits, 32))) / 5;
  const bars: string[] = [];
  const colours = ["#1f77b4", "#ff7f0e", "#2ca02c"];
  layers.forEach((l, i) => {
    const x0 = 60 + 96 * i;
    const values: [number, string][] = [
      [
        l.weightQuantized ? l.weightBits : 32,
        `w ${l.weightQuantized ? l.weightBits : "fp32"}`,
      ],
      [
        l.activationBits ?? 0,
        l.activationBits === null ? "a -" : `a ${l.activationBits}`,
      ],
      [
        32 * l.keptChannels / l.totalChannels,
        `${l.keptChannels}/${l.totalChannels}`,
      ],
    ];
    values.forEach(([v, label], k) => {
      const x = x0 + 26 * k;
      bars.push(
        `<rect x="${x}" y="${base - scale(v)}" width="22" height="${
          scale(v)
        }" fill="${colours[k]}"><title>${
          escapeHtml(`${l.name}: ${label}`)
        }</title></rect>`,
        `<text x="${x + 11}" y="${
          base - scale(v) - 4
        }" text-anchor="middle" font-size="10">${
          escapeHtml(label.replace(/^[wa] /, ""))
        }</text>`,
      );
    });
    bars.push(
      `<text x="${x0 + 37}" y="${base + 16}" text-anchor="middle">${
        escapeHtml(l.name)
      }</text>`,
    );
  });
  const legend = [
    "weight bits",
    "activation bits",
    "kept channels (full height: all)",
  ]
    .map((text, k) =>
      `<rect x="${[60, 170, 300][k]}" y="${
        h - 20
      }" width="10" height="10" fill="${colours[k]}"/>` +
      `<text x="${[74, 184, 314][k]}" y="${h - 11}">${text}</text>`
    );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14">${
      escapeHtml(report.method)
    }: bits per layer</text>`,
    ...[2, 4, 8, 16, 32].map((b) =>
      `<line x1="50" y1="${base - scale(b)}" x2="${w - 10}" y2="${
        base - scale(b)
      }" stroke="#eee"/>` +
      `<text x="44" y="${base - scale(b) + 4}" text-anchor="end">${b}</text>`
    ),
    `<line x1="50" y1="${base}" x2="${w - 10}" y2="${base}" stroke="#888"/>`,
    ...bars,
    ...legend,
    "</svg>",
  ].join("\n") + "\n";
}

/** A shown HTML fragment. */
export function showHtml(html: string, text: string): Shown {
  return {
    text,
    html,
    svg: null,
    [JUPYTER_DISPLAY]: () => ({ "text/html": html, "text/plain": text }),
  };
}

/** A shown SVG document. */
export function showSvg(svg: string, text: string): Shown {
  return {
    text,
    html: null,
    svg,
    [JUPYTER_DISPLAY]: () => ({ "image/svg+xml": svg, "text/plain": text }),
  };
}

/**
 * A report for a notebook: its HTML tables (plain text: the terminal table).
 *
 * @param report The report.
 * @returns The shown report.
 */
export function showReport(report: QuantizationReport): Shown {
  return showHtml(reportHtml(report), formatReportTable(report));
}

/**
 * The bits chart of a report for a notebook ({@link bitsChartSvg}).
 *
 * @param report The report.
 * @returns The shown chart.
 */
export function showBits(report: QuantizationReport): Shown {
  return showSvg(
    bitsChartSvg(report),
    report.layers.map((l) =>
      `${l.name}: w ${l.weightQuantized ? l.weightBits : "fp32"}, a ${
        l.activationBits ?? "-"
      }, kept ${l.keptChannels}/${l.totalChannels}`
    ).join("\n"),
  );
}

/**
 * The Pareto plot of many runs for a notebook (`paretoSvg`).
 *
 * @param points The runs' points.
 * @param title The plot's title.
 * @returns The shown plot.
 */
export function showPareto(
  points: readonly ParetoPoint[],
  title?: string,
): Shown {
  return showSvg(
    paretoSvg(points, { title }),
    points.map((p) =>
      `${p.method} ${p.label}: ${(100 * p.accuracy).toFixed(2)} % at ${
        p.relativeGbops.toFixed(3)
      } %`
    ).join("\n"),
  );
}

/** Where progress goes: a notebook display, or lines of text. */
export interface ProgressDisplay {
  /** Replaces the shown progress with `text` (one line or a few). */
  update(text: string): void;
  /** Whether it updates a notebook output in place. */
  readonly inNotebook: boolean;
}

/** The part of Deno's Jupyter API (`Deno.jupyter`) progress uses. */
export interface JupyterApi {
  /** Shows a MIME bundle; with a display id and `update`, replaces it. */
  display(
    bundle: MimeBundle,
    options: { raw: boolean; display_id?: string; update?: boolean },
  ): Promise<void>;
}

/** Deno's Jupyter API, or `null` outside a notebook (accessing it throws there). */
function jupyter(): JupyterApi | null {
  try {
    const api = (Deno as unknown as { jupyter?: JupyterApi }).jupyter;
    return api && typeof api.display === "function" ? api : null;
  } catch {
    return null;
  }
}

let displays = 0;

/**
 * Progress of a long cell: in a notebook one output, updated in place
 * through a display id; elsewhere each update is a line on standard error
 * (or goes to `write`).
 *
 * @param options `write` for the text outside a notebook (default: a line
 *   on standard error); `jupyter`, the notebook API to use (default:
 *   `Deno.jupyter` when the code runs in a notebook, else `null`).
 * @returns The display.
 */
export function progressDisplay(
  options: {
    readonly write?: (line: string) => void;
    readonly jupyter?: JupyterApi | null;
  } = {},
): ProgressDisplay {
  const api = options.jupyter === undefined ? jupyter() : options.jupyter;
  if (!api) {
    const write = options.write ?? ((line: string) => console.error(line));
    return { inNotebook: false, update: (text) => write(text) };
  }
  const id = `bbits-progress-${Date.now()}-${displays++}`;
  let first = true;
  return {
    inNotebook: true,
    update: (text) => {
      const bundle = {
        "text/plain": text,
        "text/html": `<pre>${escapeHtml(text)}</pre>`,
      };
      void api.display(bundle, { raw: true, display_id: id, update: !first });
      first = false;
    },
  };
}
