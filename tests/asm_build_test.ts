/** The generated WASM kernels are up to date and self-contained. */

import assert from "node:assert/strict";
import { asmSourceHash } from "../asm/source_hash.ts";
import {
  KERNELS_SOURCE_HASH,
  KERNELS_WASM_BASE64,
} from "../asm/kernels.generated.ts";
import { decodeBase64 } from "../asm/base64.ts";

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
});
