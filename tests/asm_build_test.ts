/** The generated WASM kernels are up to date, self-contained and typed from their sources. */

import assert from "node:assert/strict";
import { decodeBase64 } from "../asm/base64.ts";
import { generatedRegion, generateMicroKernels } from "../asm/gen_gemm.ts";
import {
  KERNEL_PARAMETERS,
  KERNELS_SOURCE_HASH,
  KERNELS_WASM_BASE64,
} from "../asm/kernels.generated.ts";
import {
  instantiateKernels,
  invokeKernel,
  type KernelArguments,
  positionalArguments,
} from "../asm/protocol.ts";
import { parseKernelSignatures } from "../asm/signatures.ts";
import { ASM_SOURCES, asmSourceHash } from "../asm/source_hash.ts";

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
      new URL(`../asm/src/${file}`, import.meta.url),
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
    new URL("../asm/src/gemm.ts", import.meta.url),
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
