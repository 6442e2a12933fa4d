/**
 * Usage errors and provenance of the command line: a misspelt flag gets a
 * "did you mean", usage errors exit with code 2 (failures with 1), and
 * reports say which library, Deno and commit produced them.
 *
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { VERSION } from "../core/version.ts";

/** A bad command line: an unknown flag, a bad value, a missing argument (exit code 2). */
export class UsageError extends RangeError {
  /** The error's name. */
  override readonly name = "UsageError";
}

/** Levenshtein distance of two short strings. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(
        row[j] + 1,
        next[j - 1] + 1,
        row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    row = next;
  }
  return row[b.length];
}

/**
 * The known flag nearest to an unknown one (within 2 edits, or a prefix),
 * or `null`.
 *
 * @param unknown The flag as given, e.g. `--fine-tune-epoch`.
 * @param known The flags' names without dashes.
 * @returns `--name` of the nearest, or `null`.
 */
export function suggestFlag(
  unknown: string,
  known: readonly string[],
): string | null {
  const name = unknown.replace(/^-+/, "").split("=")[0];
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = k.startsWith(name) && name.length >= 3 ? 0.5 : distance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best !== null && bestDistance <= 2 ? `--${best}` : null;
}

/**
 * `parseArgs` (strict, no positionals) whose errors are usage errors, an
 * unknown flag with the nearest known one suggested.
 *
 * @param args The arguments.
 * @param options The flags.
 * @returns The parsed values.
 * @throws {UsageError} On an unknown flag, a missing value, a positional.
 */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false })
      .values;
  } catch (error) {
    const message = (error as Error).message;
    const unknown = /Unknown option '([^']+)'/.exec(message)?.[1];
    const hint = unknown ? suggestFlag(unknown, Object.keys(options)) : null;
    throw new UsageError(
      hint ? `${message} (did you mean ${hint}?)` : message,
      { cause: error },
    );
  }
}

/**
 * Runs the parsing stage of a command: whatever it throws is a usage error.
 *
 * @param stage The parsing and validation of the command line.
 * @returns What it returns.
 * @throws {UsageError} Wrapping any error of the stage.
 */
export async function usageStage<T>(stage: () => T | Promise<T>): Promise<T> {
  try {
    return await stage();
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError((error as Error).message, { cause: error });
  }
}

/** The commit a checkout's HEAD names, read from its files; `null` when unknown. */
export async function gitCommit(root: URL): Promise<string | null> {
  if (root.protocol !== "file:") return null;
  const read = (url: URL) => Deno.readTextFile(url).then((t) => t.trim());
  try {
    let gitDir = new URL(".git/", root);
    const stat = await Deno.stat(new URL(".git", root));
    if (stat.isFile) {
      const pointer = (await read(new URL(".git", root))).replace(
        /^gitdir: /,
        "",
      );
      gitDir = new URL(pointer.endsWith("/") ? pointer : `${pointer}/`, root);
    }
    const head = await read(new URL("HEAD", gitDir));
    if (/^[0-9a-f]{40}$/.test(head)) return head;
    const ref = /^ref: (refs\/\S+)$/.exec(head)?.[1];
    if (!ref) return null;
    const common = await read(new URL("commondir", gitDir))
      .then((c) => new URL(c.endsWith("/") ? c : `${c}/`, gitDir))
      .catch(() => gitDir);
    for (const dir of [gitDir, common]) {
      const loose = await read(new URL(ref, dir)).catch(() => null);
      if (loose && /^[0-9a-f]{40}$/.test(loose)) return loose;
    }
    const packed = await read(new URL("packed-refs", common)).catch(() => "");
    const line = packed.split("\n").find((l) => l.endsWith(` ${ref}`));
    return line?.slice(0, 40) ?? null;
  } catch {
    return null;
  }
}

/** What produced a run: library, Deno, device, threads, and the commit when known. */
export async function provenance(
  device: { readonly name: string },
  threads: number,
): Promise<Record<string, string | number>> {
  const commit = await gitCommit(new URL("../", import.meta.url));
  return {
    version: VERSION,
    deno: Deno.version.deno,
    device: device.name,
    threads,
    ...(commit ? { commit } : {}),
  };
}
