/**
 * Accuracy against cost across runs: the points of many reports (one per
 * run of a sweep or a comparison), which of them are Pareto-optimal, a
 * table, and an SVG plot of test accuracy against relative GBOPs (log
 * scale) with every method on one axis and each method's frontier drawn.
 *
 * Plain functions of plain data: a notebook shows the SVG, the CLI writes
 * it to a file.
 *
 * @example
 * ```ts
 * import { paretoFront, paretoSvg } from "@bbits/core/report";
 * import assert from "node:assert/strict";
 *
 * const points = [
 *   { label: "a", method: "bsq", relativeGbops: 1, accuracy: 0.99 },
 *   { label: "b", method: "bsq", relativeGbops: 2, accuracy: 0.98 },
 * ];
 * assert.deepEqual(paretoFront(points), [true, false]);
 * assert.ok(paretoSvg(points).startsWith("<svg"));
 * ```
 *
 * @module
 */

import type { QuantizationReport } from "../core/report.ts";

/** One run: its cost and accuracy. */
export interface ParetoPoint {
  /** What identifies the run (e.g. its directory or its knob). */
  readonly label: string;
  /** The method, e.g. `"bayesian-bits"`. */
  readonly method: string;
  /** Relative GBOPs in percent (Bayesian Bits' convention). */
  readonly relativeGbops: number;
  /** Test accuracy in [0, 1]. */
  readonly accuracy: number;
  /** Relative GBOPs as MACs x bw x ba, when the report has it. */
  readonly macsBitsRelativeGbops?: number;
}

/**
 * The point of a report.
 *
 * @param report The report of a run.
 * @param label What identifies the run.
 * @returns Its method, cost and accuracy.
 */
export function pointOf(
  report: QuantizationReport,
  label: string,
): ParetoPoint {
  return {
    label,
    method: report.method,
    relativeGbops: report.relativeGbops,
    accuracy: report.testAccuracy,
    ...(report.costs
      ? { macsBitsRelativeGbops: report.costs.macsBitsRelativeGbops }
      : {}),
  };
}

/**
 * Which points are Pareto-optimal: no other point costs at most as much
 * and is at least as accurate, better in one of the two. Equal points are
 * all optimal.
 *
 * @param points The points.
 * @returns One flag per point, in order.
 */
export function paretoFront(points: readonly ParetoPoint[]): boolean[] {
  return points.map((p) =>
    !points.some((q) =>
      q.relativeGbops <= p.relativeGbops && q.accuracy >= p.accuracy &&
      (q.relativeGbops < p.relativeGbops || q.accuracy > p.accuracy)
    )
  );
}

/**
 * The points as a table sorted by method and cost: method, label, test
 * accuracy, relative GBOPs in both conventions, and a mark on the points
 * of the frontier over all methods.
 *
 * @param points The points.
 * @param options `markdown: true` for a Markdown table (default: aligned text).
 * @returns The table.
 */
export function formatParetoTable(
  points: readonly ParetoPoint[],
  options: { readonly markdown?: boolean } = {},
): string {
  const front = paretoFront(points);
  const rows = points.map((p, i) => ({ p, front: front[i] }))
    .sort((a, b) =>
      a.p.method.localeCompare(b.p.method) ||
      a.p.relativeGbops - b.p.relativeGbops
    )
    .map(({ p, front }) => [
      p.method,
      p.label,
      (100 * p.accuracy).toFixed(2),
      p.relativeGbops.toFixed(3),
      p.macsBitsRelativeGbops === undefined
        ? "-"
        : p.macsBitsRelativeGbops.toFixed(3),
      front ? "*" : "",
    ]);
  const header = [
    "method",
    "run",
    "test acc %",
    "rel GBOPs %",
    "MACs x bw x ba %",
    "front",
  ];
  if (options.markdown) {
    return [header, header.map(() => "---"), ...rows]
      .map((r) => `| ${r.join(" | ")} |`).join("\n") + "\n";
  }
  const widths = header.map((h, c) =>
    Math.max(h.length, ...rows.map((r) => r[c].length))
  );
  return [header, ...rows]
    .map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd())
    .join("\n") + "\n";
}

/** Colours and markers of the methods, in order of first appearance. */
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

/** Escapes text for XML. */
function xml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Log-scale ticks (1, 2, 5 per decade) within `[lo, hi]`. */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (
    let e = Math.floor(Math.log10(lo));
    e <= Math.ceil(Math.log10(hi));
    e++
  ) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t >= lo && t <= hi) ticks.push(Number(t.toPrecision(3)));
    }
  }
  return ticks;
}

/** The plot's axes: data ranges, mapping and the frame's SVG. */
function axes(points: readonly ParetoPoint[], w: number, h: number) {
  const m = { left: 64, right: 16, top: 36, bottom: 48 };
  const gbops = points.map((p) => p.relativeGbops).filter((g) => g > 0);
  const lo = Math.min(...gbops) / 1.4;
  const hi = Math.max(...gbops) * 1.4;
  const acc = points.map((p) => 100 * p.accuracy);
  const bottom = Math.floor(Math.min(...acc) - 0.5);
  const top = Math.min(100, Math.ceil(Math.max(...acc) + 0.25));
  const x = (g: number) =>
    m.left +
    (Math.log10(Math.max(g, lo)) - Math.log10(lo)) /
      (Math.log10(hi) - Math.log10(lo)) * (w - m.left - m.right);
  const y = (a: number) =>
    h - m.bottom - (a - bottom) / (top - bottom) * (h - m.top - m.bottom);
  const parts: string[] = [
    `<rect x="${m.left}" y="${m.top}" width="${w - m.left - m.right}" height="${
      h - m.top - m.bottom
    }" fill="none" stroke="#888"/>`,
  ];
  for (const t of logTicks(lo, hi)) {
    parts.push(
      `<line x1="${x(t)}" y1="${m.top}" x2="${x(t)}" y2="${
        h - m.bottom
      }" stroke="#eee"/>`,
      `<text x="${x(t)}" y="${
        h - m.bottom + 16
      }" text-anchor="middle">${t}</text>`,
    );
  }
  const step = top - bottom > 6 ? 2 : top - bottom > 3 ? 1 : 0.5;
  for (let a = Math.ceil(bottom / step) * step; a <= top; a += step) {
    parts.push(
      `<line x1="${m.left}" y1="${y(a)}" x2="${w - m.right}" y2="${
        y(a)
      }" stroke="#eee"/>`,
      `<text x="${m.left - 6}" y="${y(a) + 4}" text-anchor="end">${a}</text>`,
    );
  }
  parts.push(
    `<text x="${(w + m.left) / 2}" y="${
      h - 10
    }" text-anchor="middle">relative GBOPs (%, log scale)</text>`,
    `<text x="16" y="${
      (h + m.top) / 2
    }" text-anchor="middle" transform="rotate(-90 16 ${
      (h + m.top) / 2
    })">test accuracy (%)</text>`,
  );
  return { x, y, frame: parts, m };
}

/**
 * An SVG plot of test accuracy against relative GBOPs (log scale): every
 * method's points in its own colour, each method's own frontier as a line,
 * the points of the frontier over all methods ringed, and a legend.
 *
 * @param points The points (at least one).
 * @param options The title and the size in pixels (default 720 x 440).
 * @returns The SVG document.
 * @throws {RangeError} Without points, or with a point whose cost is not
 *   positive or whose accuracy is outside [0, 1].
 */
export function paretoSvg(
  points: readonly ParetoPoint[],
  options: {
    readonly title?: string;
    readonly width?: number;
    readonly height?: number;
  } = {},
): string {
  if (points.length === 0) throw new RangeError("Nothing to plot: no points");
  for (const p of points) {
    if (!(p.relativeGbops > 0 && p.accuracy >= 0 && p.accuracy <= 1)) {
      throw new RangeError(
        `Cannot plot "${p.label}": relative GBOPs ${p.relativeGbops}, accuracy ${p.accuracy}`,
      );
    }
  }
  const w = options.width ?? 720;
  const h = options.height ?? 440;
  const { x, y, frame, m } = axes(points, w, h);
  const methods = [...new Set(points.map((p) => p.method))];
  const overall = paretoFront(points);
  const body: string[] = [];
  methods.forEach((method, k) => {
    const colour = PALETTE[k % PALETTE.length];
    const own = points.filter((p) => p.method === method);
    const front = own.filter((_, i) => paretoFront(own)[i])
      .sort((a, b) => a.relativeGbops - b.relativeGbops);
    body.push(
      `<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${
        front.map((p) => `${x(p.relativeGbops)},${y(100 * p.accuracy)}`)
          .join(" ")
      }"/>`,
    );
    for (const p of own) {
      body.push(
        `<circle cx="${x(p.relativeGbops)}" cy="${
          y(100 * p.accuracy)
        }" r="4" fill="${colour}"><title>${
          xml(
            `${p.method} ${p.label}: ${(100 * p.accuracy).toFixed(2)} % at ${
              p.relativeGbops.toFixed(3)
            } %`,
          )
        }</title></circle>`,
      );
      if (overall[points.indexOf(p)]) {
        body.push(
          `<circle cx="${x(p.relativeGbops)}" cy="${
            y(100 * p.accuracy)
          }" r="7" fill="none" stroke="#000"/>`,
        );
      }
    }
    body.push(
      `<circle cx="${w - m.right - 240}" cy="${
        h - m.bottom - 14 - 18 * k
      }" r="4" fill="${colour}"/>`,
      `<text x="${w - m.right - 230}" y="${h - m.bottom - 10 - 18 * k}">${
        xml(method)
      }</text>`,
    );
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="#fff"/>`,
    `<text x="${w / 2}" y="20" text-anchor="middle" font-size="14">${
      xml(options.title ?? "Test accuracy against relative GBOPs")
    }</text>`,
    ...frame,
    ...body,
    `<text x="${w - m.right - 240}" y="${
      h - m.bottom - 10 - 18 * methods.length
    }">ringed: the frontier over all methods</text>`,
    "</svg>",
  ].join("\n") + "\n";
}
