/** The WASM device's first-fit heap: alignment, reuse, merging and growth. */

import assert from "node:assert/strict";
import { Heap, HEAP_ALIGN } from "../../asm/heap.ts";

const PAGE = 65536;

function memory(pages: number): WebAssembly.Memory {
  return new WebAssembly.Memory({
    initial: pages,
    maximum: 1024,
    shared: true,
  });
}

Deno.test("the heap rounds blocks up to 64 bytes and reuses the first free block that fits", () => {
  const heap = new Heap(memory(2), PAGE);
  const a = heap.alloc(1);
  const b = heap.alloc(65);
  const c = heap.alloc(0);
  assert.deepEqual([a, b, c], [PAGE, PAGE + 64, PAGE + 192]);
  assert.equal(heap.bytesInUse, 256);
  heap.free(b);
  assert.equal(heap.alloc(100), b, "the freed 128 bytes fit 100");
  assert.equal(heap.alloc(64), c + 64, "nothing free before c fits");
  assert.equal(heap.peakBytes, 320);
  assert.throws(() => heap.free(b + 1), /no live block at byte/);
});

Deno.test("freed neighbours merge into one block", () => {
  const heap = new Heap(memory(2), PAGE);
  const blocks = [0, 1, 2, 3].map(() => heap.alloc(HEAP_ALIGN));
  const tail = heap.alloc(HEAP_ALIGN);
  // Free out of order: 1, 3, then 2 joins both neighbours, then 0.
  for (const i of [1, 3, 2, 0]) heap.free(blocks[i]);
  assert.equal(heap.alloc(4 * HEAP_ALIGN), blocks[0]);
  assert.equal(heap.bytesInUse, 5 * HEAP_ALIGN);
  heap.free(tail);
});

Deno.test("the heap grows the memory when no block fits, past a base beyond its end", () => {
  const mem = memory(1);
  // The base lies one page past the memory's end: growth must cover it.
  const heap = new Heap(mem, 2 * PAGE);
  // More than the minimum growth of 16 pages.
  const a = heap.alloc(20 * PAGE);
  assert.equal(a, 2 * PAGE);
  assert.equal(mem.buffer.byteLength, 22 * PAGE);
  new Float32Array(mem.buffer, a, 20 * PAGE / 4).fill(1); // inside the memory
  const b = heap.alloc(PAGE);
  assert.equal(b, 22 * PAGE, "the next block starts where the last ended");
  heap.free(a);
  assert.equal(heap.alloc(2 * PAGE), a);
});
