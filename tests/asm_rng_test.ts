/** The WASM Threefry uniform kernel against core/rng.ts. */

import assert from "node:assert/strict";
import { randomKey, uniform } from "../core/rng.ts";
import { createWasmBackend } from "../asm/backend.ts";

Deno.test("uniformInto reproduces the uniform stream bit for bit", async () => {
  for (const threads of [1, 2]) {
    using wasm = await createWasmBackend({ threads, parallelThreshold: 8 });
    const keys = [[0, 0], randomKey(42), [0xffffffff, 0x12345678]] as const;
    const offsets = [0, 1, 2, 7, 2 ** 32 - 3, 2 ** 33 - 1000];
    for (const key of keys) {
      for (const offset of offsets) {
        for (const count of [0, 1, 2, 5, 8, 9, 37, 1000]) {
          const out = wasm.alloc(count);
          wasm.uniformInto(key, offset, out);
          assert.deepEqual(
            out.view(),
            uniform(key, count, offset),
            `key [${key}], offset ${offset}, count ${count}, ${threads} threads`,
          );
        }
      }
    }
  }
});

Deno.test("uniformInto rejects bad keys and offsets past the stream", async () => {
  using wasm = await createWasmBackend({ threads: 1 });
  const out = wasm.alloc(4);
  assert.throws(
    () => wasm.uniformInto([1, -1] as unknown as [number, number], 0, out),
    /Invalid random key \[1,-1\]/,
  );
  assert.throws(
    () => wasm.uniformInto([1, 2], 2 ** 33 - 3, out),
    /from stream offset 8589934589/,
  );
});
