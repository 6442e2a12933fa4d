/**
 * Helpers of the command-line tests: output captured in process, the CLI
 * spawned as a user runs it, and comparisons of run files without their
 * timings.
 */

import { loadCheckpoint } from "../../io/checkpoint.ts";

/** Runs `fn` with console output captured (the CLI prints progress and the report). */
export async function quietly<T>(fn: () => Promise<T>): Promise<{
  value: T;
  out: string;
  err: string;
}> {
  const log = console.log;
  const error = console.error;
  let out = "";
  let err = "";
  console.log = (...a: unknown[]) => (out += a.join(" ") + "\n");
  console.error = (...a: unknown[]) => (err += a.join(" ") + "\n");
  try {
    return { value: await fn(), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** The repository's root, where the CLI runs from. */
export const ROOT = new URL("../../", import.meta.url);

/**
 * The CLI as `deno task` runs it (read and write permissions only), its
 * stdout and stderr piped.
 */
export function spawnCli(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      ...["run", "--no-check", "--allow-read", "--allow-write"],
      ...["cli/main.ts", ...args],
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/**
 * Reads a child's stderr line by line until `stop` returns true for a
 * line (then calls `then`, e.g. to signal the child) or the stream ends;
 * the rest is read to the end. Returns everything read.
 */
export async function watchStderr(
  child: Deno.ChildProcess,
  stop: (line: string) => boolean,
  then: () => void,
): Promise<string> {
  let text = "";
  let pending = "";
  let stopped = false;
  const decoder = new TextDecoder();
  for await (const chunk of child.stderr) {
    const piece = decoder.decode(chunk, { stream: true });
    text += piece;
    pending += piece;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    if (!stopped && lines.some(stop)) {
      stopped = true;
      then();
    }
  }
  return text;
}

/** The keys whose values are timings or the command line: they differ between two runs of one recipe. */
const TIMING_KEYS = new Set([
  "seconds",
  "samplesPerSecond",
  "wallSeconds",
  "command",
]);

/** A JSON value without the {@link TIMING_KEYS}, at any depth. */
export function withoutTimings(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutTimings);
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !TIMING_KEYS.has(key))
      .map(([key, v]) => [key, withoutTimings(v)]),
  );
}

/** A checkpoint's tensors as bytes, and its state without timings. */
export async function checkpointContents(path: string) {
  const { tensors, state } = await loadCheckpoint(path);
  const bytes = Object.fromEntries(
    Object.entries(tensors).map(([name, t]) => [
      name,
      {
        dtype: t.dtype,
        shape: t.shape,
        bytes: new Uint8Array(
          t.data.buffer,
          t.data.byteOffset,
          t.data.byteLength,
        ),
      },
    ]),
  );
  return { tensors: bytes, state: withoutTimings(state) };
}

/** Runs `fn` with console output captured, catching what it throws. */
export async function attempt<T>(fn: () => Promise<T>): Promise<{
  value?: T;
  error?: Error;
  out: string;
  err: string;
}> {
  const log = console.log;
  const error = console.error;
  let out = "";
  let err = "";
  console.log = (...a: unknown[]) => (out += a.join(" ") + "\n");
  console.error = (...a: unknown[]) => (err += a.join(" ") + "\n");
  try {
    return { value: await fn(), out, err };
  } catch (e) {
    return { error: e as Error, out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}
