/**
 * The WASM device's thread pool: chunked calls (threads claim chunks as
 * they come free) cover every chunk once, report failures and leave the
 * pool usable; the control block stays clear of the kernel module's static
 * data on many threads.
 */

import assert from "node:assert/strict";
import { createWasmDevice } from "../../asm/device.ts";
import { splitChunks } from "../../asm/pool.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { assertAllClose, assertBitwise, randomValues } from "../_fixtures.ts";

Deno.test("splitChunks cuts a split into aligned chunks covering the same range", () => {
  const jobs = [{ begin: 0, end: 500 }, { begin: 500, end: 1000 }];
  const chunks = splitChunks(jobs, 12);
  assert.equal(chunks.length, 8);
  assert.equal(chunks[0].begin, 0);
  assert.equal(chunks[chunks.length - 1].end, 1000);
  for (let i = 0; i < chunks.length; i++) {
    if (i > 0) assert.equal(chunks[i].begin, chunks[i - 1].end);
    if (i < chunks.length - 1) assert.equal(chunks[i].end % 12, 0);
  }
  assert.deepEqual(splitChunks([{ begin: 0, end: 5 }], 4), [
    { begin: 0, end: 5 },
  ]);
  // Never more than the table's 64 rows.
  const many = Array.from({ length: 40 }, (_, t) => ({
    begin: t * 10,
    end: t * 10 + 10,
  }));
  assert.ok(splitChunks(many, 1).length <= 64);
});

Deno.test("a chunked call runs every chunk once, on any number of threads", async () => {
  for (const threads of [1, 3]) {
    using dev = await createWasmDevice({ threads });
    const x = dev.upload(randomValues(1, 1000), [1000]);
    const y = dev.zeros([1000]);
    // 37 chunks of 27 elements (the last 28), more chunks than threads.
    const chunks = Array.from({ length: 37 }, (_, i) => ({
      x: dev.offset(x),
      y: dev.offset(y),
      begin: i * 27,
      end: i === 36 ? 1000 : i * 27 + 27,
    }));
    dev.runChunks("copy", chunks);
    assertBitwise(y.toFloat32Array(), x.toFloat32Array(), `${threads}`);
  }
});

Deno.test("a failing chunk fails the call and the pool keeps working", async () => {
  using dev = await createWasmDevice({ threads: 2 });
  const x = dev.upload([1, 2, 3, 4], [4]);
  const y = dev.zeros([4]);
  const beyond = dev.memory.buffer.byteLength;
  const chunks = [0, 1, 2, 3].map((i) => ({
    x: dev.offset(x),
    // Chunk 2 reads past the end of the memory: a WASM trap.
    y: i === 2 ? beyond : dev.offset(y),
    begin: i,
    end: i + 1,
  }));
  assert.throws(() => dev.runChunks("copy", chunks));
  dev.runChunks("copy", [{
    x: dev.offset(x),
    y: dev.offset(y),
    begin: 0,
    end: 4,
  }]);
  assert.deepEqual([...y.toFloat32Array()], [1, 2, 3, 4]);
});

Deno.test("the control block leaves the module's exp and log tables intact on 8 threads", async () => {
  using dev = await createWasmDevice({ threads: 8, parallelThreshold: 1 });
  // A call on all eight threads writes every argument slot.
  const big = randomValues(2, 4096, -3, 3);
  dev.kernels.activation("relu", dev.upload(big, [4096]));
  const logits = randomValues(3, 40, -4, 4);
  const labels = new Int32Array([0, 3, 9, 1]);
  const got = dev.kernels.softmaxCrossEntropy(
    dev.upload(logits, [4, 10]),
    dev.upload(labels, [4], "int32"),
  );
  const want = referenceDevice.kernels.softmaxCrossEntropy(
    referenceDevice.upload(logits, [4, 10]),
    referenceDevice.upload(labels, [4], "int32"),
  );
  assertAllClose(got.loss.toFloat32Array(), want.loss.toFloat32Array(), "loss");
  assertAllClose(
    got.probs.toFloat32Array(),
    want.probs.toFloat32Array(),
    "probs",
  );
});
