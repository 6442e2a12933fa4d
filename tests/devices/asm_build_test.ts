/** The generated WASM kernels are up to date, self-contained and typed from their sources. */

import assert from "node:assert/strict";
import { decodeBase64 } from "../../asm/base64.ts";
import { generatedRegion, generateMicroKernels } from "../../asm/gen_gemm.ts";
import {
  generateSparseKernels,
  sparseGeneratedRegion,
} from "../../asm/gen_gemm_sparse.ts";
import {
  KERNEL_PARAMETERS,
  KERNELS_SOURCE_HASH,
  KERNELS_WASM_BASE64,
} from "../../asm/kernels.generated.ts";
import {
  HEADER_BASE,
  instantiateKernels,
  invokeKernel,
  type KernelArguments,
  positionalArguments,
} from "../../asm/protocol.ts";
import { parseKernelSignatures } from "../../asm/signatures.ts";
import { ASM_SOURCES, asmSourceHash } from "../../asm/source_hash.ts";

Deno.test("kernels.generated.ts was built from the current AssemblyScript sources", async () => {
  assert.equal(
    KERNELS_SOURCE_HASH,
    await asmSourceHash(),
    "asm/kernels.generated.ts is stale: run `deno task build:asm`",
  );
});

Deno.test("the kernel module imports only its memory and exports every kernel", () => {
  const module = new WebAssembly.Module(decodeBase64(KERNELS_WASM_BASE64));
  assert.deepEqual(WebAssembly.Module.imports(module), [
    { module: "env", name: "memory", kind: "memory" },
  ]);
  const names = WebAssembly.Module.exports(module).map((e) => e.name).sort();
  for (
    const name of ["copy", "fillUniform", "quantizeBackward", "quantizeForward"]
  ) {
    assert.ok(
      names.includes(name),
      `missing export ${name} in ${names.join(", ")}`,
    );
  }
  const functions = WebAssembly.Module.exports(module)
    .filter((e) => e.kind === "function")
    .map((e) => e.name)
    .sort();
  assert.deepEqual(functions, Object.keys(KERNEL_PARAMETERS).sort());
});

Deno.test("the generated parameter table is the sources' signatures, in positional order", async () => {
  const parsed: Record<string, string[]> = {};
  for (const file of ASM_SOURCES.filter((f) => f !== "index.ts")) {
    const text = await Deno.readTextFile(
      new URL(`../../asm/src/${file}`, import.meta.url),
    );
    for (const s of parseKernelSignatures(text, file)) {
      parsed[s.name] = s.parameters.map((p) => p.name);
    }
  }
  assert.deepEqual(parsed, KERNEL_PARAMETERS);
  assert.deepEqual(KERNEL_PARAMETERS.gemmScratchBytes, ["k", "cols"]);
});

Deno.test("kernels are called with named arguments, in any order", () => {
  const exports = instantiateKernels(
    new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true }),
  );
  // 4 bytes * k 3 * 8 columns (5 rounded up to a multiple of 4).
  assert.equal(
    invokeKernel(exports, "gemmScratchBytes", { cols: 5, k: 3 }),
    96,
  );
  assert.deepEqual(
    positionalArguments("copy", { end: 4, begin: 0, y: 2, x: 1 }),
    [1, 2, 0, 4],
  );
  assert.throws(
    () =>
      positionalArguments(
        "copy",
        { x: 1, y: 2, begin: 0 } as unknown as KernelArguments["copy"],
      ),
    /Kernel copy: argument "end" is missing/,
  );
});

Deno.test("the GEMM micro-kernels in asm/src/gemm.ts are the generator's output", async () => {
  const source = await Deno.readTextFile(
    new URL("../../asm/src/gemm.ts", import.meta.url),
  );
  const committed = generatedRegion(source);
  const generated = generateMicroKernels();
  assert.equal(
    committed,
    generated,
    "asm/src/gemm.ts's micro-kernels differ from asm/gen_gemm.ts: run it, then `deno task build:asm`",
  );
  for (const width of [12, 8, 4]) {
    assert.match(committed, new RegExp(`@inline function kern${width}\\(`));
  }
  assert.throws(() => generatedRegion("no markers"), SyntaxError);
});

Deno.test("the sparse GEMM's chunk kernels in asm/src/gemm_sparse.ts are the generator's output", async () => {
  const source = await Deno.readTextFile(
    new URL("../../asm/src/gemm_sparse.ts", import.meta.url),
  );
  assert.equal(
    sparseGeneratedRegion(source),
    generateSparseKernels(),
    "asm/src/gemm_sparse.ts's chunk kernels differ from asm/gen_gemm_sparse.ts: run it, then `deno task build:asm`",
  );
  assert.throws(() => sparseGeneratedRegion("no markers"), SyntaxError);
});

/** `[offset, length]` of each active data segment of a WASM binary. */
function dataSegments(bytes: Uint8Array): [number, number][] {
  let at = 8;
  const leb = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) return value;
    }
  };
  const segments: [number, number][] = [];
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = leb();
    const end = at + size;
    if (id === 11) {
      for (let count = leb(); count > 0; count--) {
        assert.equal(leb(), 0, "an active segment of memory 0");
        assert.equal(bytes[at++], 0x41, "an i32.const offset");
        const offset = leb();
        assert.equal(bytes[at++], 0x0b, "end of the offset expression");
        const length = leb();
        segments.push([offset, length]);
        at += length;
      }
    }
    at = end;
  }
  return segments;
}

Deno.test("the module's static data ends below the control block", () => {
  const segments = dataSegments(decodeBase64(KERNELS_WASM_BASE64));
  assert.ok(segments.length > 0, "the exp and log tables are static data");
  for (const [offset, length] of segments) {
    assert.ok(
      offset + length <= HEADER_BASE,
      `data at ${offset}..${
        offset + length
      } overlaps the control block at ${HEADER_BASE}`,
    );
  }
});
