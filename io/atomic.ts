/**
 * Atomic file writes: the bytes go to a new temporary file beside the
 * target (`<target>.tmp-<uuid>`), are flushed to disk, then renamed over the
 * target. Readers see the old file or the new one, never a mix; on any
 * error the temporary file is removed and the old file is left as it was,
 * and the error names the target. A writer killed mid-write leaves its
 * temporary file behind: {@link isAtomicTemp} recognises those names, and
 * the run directories of the command line remove them at their next start.
 *
 * @module
 */

/** The suffix of a temporary file: `.tmp-` and a random UUID. */
const TEMP_SUFFIX =
  /\.tmp-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Whether a file name is one {@link writeFileAtomic} gives its temporary
 * files (`<target>.tmp-<uuid>`).
 *
 * @param name A file name (or path).
 * @returns True for a temporary file's name.
 *
 * @example
 * ```ts
 * import { isAtomicTemp } from "./atomic.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isAtomicTemp("report.json.tmp-0b8e2f7c-3d4a-4c1e-9f00-123456789abc"));
 * assert.ok(!isAtomicTemp("notes.tmp"));
 * ```
 */
export function isAtomicTemp(name: string): boolean {
  return TEMP_SUFFIX.test(name);
}

/**
 * The same error with the path and what was being done in its message,
 * keeping its class (`Deno.errors.NotFound` stays one), so that e.g. a full
 * disk reads `Cannot write "runs/a/report.json": No space left on device`.
 *
 * @param error The error thrown by a file operation.
 * @param what What failed, naming the path.
 * @returns The error to throw.
 */
export function errorNaming(error: unknown, what: string): Error {
  if (!(error instanceof Error)) return new Error(`${what}: ${error}`);
  if (error.message.startsWith(what)) return error;
  const Class = error.constructor as new (
    message: string,
    options?: ErrorOptions,
  ) => Error;
  try {
    return new Class(`${what}: ${error.message}`, { cause: error });
  } catch {
    return new Error(`${what}: ${error.message}`, { cause: error });
  }
}

/**
 * Writes `data` to `path` atomically: a new temporary file in the same
 * directory, flushed (`FsFile.sync`), then renamed over `path`. (The
 * directory entry itself is not fsynced, so after a power cut the rename
 * may be lost, but never half done.)
 *
 * @param path The target; its directory must exist.
 * @param data The bytes, or a text written as UTF-8.
 * @returns A promise resolved once the file is in place.
 * @throws {Error} Any file error (of its `Deno.errors` class), its message
 *   naming `path`: `Cannot write "<path>": ...`. The previous file at
 *   `path`, if any, is left as it was, and no temporary file remains.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./atomic.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/a.txt`, "one");
 * await writeFileAtomic(`${dir}/a.txt`, "two");
 * assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "two");
 * await assert.rejects(writeFileAtomic(`${dir}/no/b.txt`, "x"), /Cannot write ".*\/no\/b.txt"/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
): Promise<void> {
  const bytes = typeof data === "string"
    ? new TextEncoder().encode(data)
    : data;
  const tempPath = `${path}.tmp-${crypto.randomUUID()}`;
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(tempPath, { write: true, createNew: true });
    let written = 0;
    while (written < bytes.length) {
      written += await file.write(bytes.subarray(written));
    }
    await file.sync();
    file.close();
    file = undefined;
    await Deno.rename(tempPath, path);
  } catch (error) {
    file?.close();
    try {
      await Deno.remove(tempPath);
    } catch {
      // Not created, or already gone: nothing to clean up.
    }
    throw errorNaming(error, `Cannot write "${path}"`);
  }
}
