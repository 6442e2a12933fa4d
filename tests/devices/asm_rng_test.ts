/** The WASM device's Threefry uniform kernel against core/rng.ts. */

import assert from "node:assert/strict";
import { createWasmDevice } from "../../asm/device.ts";
import { randomKey, uniform } from "../../core/rng.ts";

Deno.test("the uniform kernel reproduces the uniform stream bit for bit", async () => {
  for (const threads of [1, 2]) {
    using dev = await createWasmDevice({ threads, parallelThreshold: 8 });
    const keys = [[0, 0], randomKey(42), [0xffffffff, 0x12345678]] as const;
    const offsets = [0, 1, 2, 7, 2 ** 32 - 3, 2 ** 33 - 1000];
    for (const key of keys) {
      for (const offset of offsets) {
        for (const count of [0, 1, 2, 5, 8, 9, 37, 1000]) {
          const out = dev.kernels.uniform(key, count, offset);
          assert.deepEqual(
            await out.read(),
            uniform(key, count, offset),
            `key [${key}], offset ${offset}, count ${count}, ${threads} threads`,
          );
        }
      }
    }
  }
});

Deno.test("the uniform kernel rejects bad keys and offsets past the stream", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  assert.throws(
    () => dev.kernels.uniform([1, -1] as unknown as [number, number], 4, 0),
    /Invalid random key \[1,-1\]/,
  );
  assert.throws(
    () => dev.kernels.uniform([1, 2], 4, 2 ** 33 - 3),
    /from stream offset 8589934589/,
  );
  assert.throws(() => dev.kernels.uniform([1, 2], -1, 0), /Cannot draw -1/);
});
