/**
 * The staleness check of the generated WASM kernels: a SHA-256 over the
 * AssemblyScript sources and the compiler flags, computed without loading the
 * compiler (so tests can compare it with the stamp in
 * `asm/kernels.generated.ts`).
 *
 * @module
 */

/** AssemblyScript sources of the kernel module, relative to `asm/src/`; `index.ts` is the entry. */
export const ASM_SOURCES: readonly string[] = Object.freeze([
  "index.ts",
  "quantizer.ts",
  "rng.ts",
  "copy.ts",
  "gemm.ts",
  "gemm_sparse.ts",
  "ops.ts",
]);

/**
 * The `asc` flags (besides the entry file and `--outFile`) the kernels are
 * built with: no runtime, no imports but the shared memory, SIMD and threads.
 */
export const ASC_FLAGS: readonly string[] = Object.freeze([
  "-O3",
  "--runtime",
  "stub",
  "--use",
  "abort=",
  "--enable",
  "simd,threads",
  "--importMemory",
  "--sharedMemory",
  "--initialMemory",
  "1",
  "--maximumMemory",
  "65536",
  "--noAssert",
]);

/**
 * Computes the hex SHA-256 of the build inputs: each source's name and text,
 * then the flags, each followed by a NUL byte.
 *
 * @param readText Reads a source by its path relative to `asm/src/`
 *   (defaults to reading the files next to this module; needs `--allow-read`).
 * @returns 64 lowercase hex digits.
 *
 * @example
 * ```ts
 * import { asmSourceHash } from "./source_hash.ts";
 * import assert from "node:assert/strict";
 *
 * const hash = await asmSourceHash((name) => Promise.resolve(`// ${name}`));
 * assert.match(hash, /^[0-9a-f]{64}$/);
 * ```
 */
export async function asmSourceHash(
  readText: (name: string) => Promise<string> = readSource,
): Promise<string> {
  const parts: string[] = [];
  for (const name of ASM_SOURCES) parts.push(name, await readText(name));
  parts.push(...ASC_FLAGS);
  const bytes = new TextEncoder().encode(parts.map((p) => p + "\0").join(""));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function readSource(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`./src/${name}`, import.meta.url));
}
