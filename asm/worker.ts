/**
 * A worker thread of the WASM device's pool (`asm/pool.ts`). It
 * instantiates the kernel module over the shared memory it is sent, answers
 * `"ready"`, then loops: wait for a job in its control slot, run the
 * kernel, signal done (protocol in `asm/protocol.ts`). The pool's
 * `dispose()` posts the quit op (a worker blocked in `Atomics.wait` is not
 * woken by `terminate()` alone), then terminates it.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  argsOffset,
  claimChunks,
  CONTROL,
  CONTROL_WORDS,
  controlOffset,
  instantiateKernels,
  invokePositional,
  KERNEL_NAMES,
  type KernelExports,
  MAX_ARGS,
  QUIT,
} from "./protocol.ts";

interface Start {
  memory: WebAssembly.Memory;
  slot: number;
  threads: number;
}

self.onmessage = (event: MessageEvent<Start>) => {
  const { memory, slot, threads } = event.data;
  let exports: KernelExports;
  try {
    exports = instantiateKernels(memory);
  } catch (error) {
    self.postMessage(String(error));
    return;
  }
  self.postMessage("ready");
  // Let the "ready" message go out before this thread blocks for good.
  setTimeout(() => {
    serve(memory, exports, slot, threads);
    self.close();
  }, 0);
};

function serve(
  memory: WebAssembly.Memory,
  exports: KernelExports,
  slot: number,
  threads: number,
): void {
  // The control block and argument slots sit below the first heap page, so
  // these views stay valid when the memory grows.
  const control = new Int32Array(
    memory.buffer,
    controlOffset(slot),
    CONTROL_WORDS,
  );
  const args = new Float64Array(
    memory.buffer,
    argsOffset(slot, threads),
    MAX_ARGS,
  );
  // Sequence numbers start at 1; a job may be posted before this loop starts.
  let seen = 0;
  for (;;) {
    let sequence = Atomics.load(control, CONTROL.sequence);
    while (sequence === seen) {
      Atomics.wait(control, CONTROL.sequence, seen);
      sequence = Atomics.load(control, CONTROL.sequence);
    }
    seen = sequence;
    const op = control[CONTROL.op];
    if (op === QUIT) return;
    let failed = 0;
    try {
      const name = KERNEL_NAMES[op];
      if (name === undefined) throw new RangeError(`Unknown kernel op ${op}`);
      const chunks = control[CONTROL.chunks];
      if (chunks > 0) {
        claimChunks(
          exports,
          name,
          memory,
          threads,
          slot,
          chunks,
          control[CONTROL.argCount],
          control[CONTROL.scratchStride],
        );
      } else {
        invokePositional(
          exports,
          name,
          args.subarray(0, control[CONTROL.argCount]),
        );
      }
    } catch (error) {
      failed = 1;
      console.error(`WASM worker ${slot}: ${error}`);
    }
    control[CONTROL.failed] = failed;
    Atomics.store(control, CONTROL.done, sequence);
    Atomics.notify(control, CONTROL.done);
  }
}
