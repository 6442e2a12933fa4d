/**
 * Shared formatting of the command-line tools.
 *
 * @module
 */

/**
 * A duration for progress lines: `42s`, `3m07s`, `2h05m`. Rounds to the
 * whole second first (so 59.6 s is `1m00s`, never `60s`), and to the whole
 * minute above an hour; `?` for a duration that is not finite (e.g. an ETA
 * before the first measured step).
 *
 * @param s Seconds, at least 0.
 * @returns The formatted duration.
 *
 * @example
 * ```ts
 * import { formatSeconds } from "./format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatSeconds(59.6), "1m00s");
 * assert.equal(formatSeconds(7530), "2h06m");
 * ```
 */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const whole = Math.max(0, Math.round(s));
  if (whole >= 3600) {
    const minutes = Math.round(whole / 60);
    const h = Math.floor(minutes / 60);
    return `${h}h${(minutes % 60).toString().padStart(2, "0")}m`;
  }
  const m = Math.floor(whole / 60);
  const sec = whole % 60;
  return m > 0 ? `${m}m${sec.toString().padStart(2, "0")}s` : `${sec}s`;
}
