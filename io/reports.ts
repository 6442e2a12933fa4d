/**
 * Reports of frozen models: the schema (`bbits.report/2`), the builder,
 * the terminal table, Markdown, the one-line summary and JSON.
 *
 * @example
 * ```ts
 * import { REPORT_SCHEMA } from "@bbits/core/report";
 * import assert from "node:assert/strict";
 *
 * assert.equal(REPORT_SCHEMA, "bbits.report/2");
 * ```
 *
 * @module
 */

export * from "../core/report.ts";
export * from "./report.ts";
export * from "./report_json.ts";
export * from "../core/bit_widths.ts";
export * from "./pareto.ts";
