import assert from "node:assert/strict";
import { decodeSafetensors } from "../../core/safetensors.ts";
import { encodeIdx, parseIdx } from "../../core/idx.ts";
import { parseJson } from "../../core/schema.ts";
import { gunzipBounded, loadMnist } from "../../io/mnist.ts";
import { loadCheckpoint } from "../../io/checkpoint.ts";
import { withTempDir } from "../_io_fixtures.ts";

/** A header-length prefix, the header text, and the payload bytes. */
function handBuilt(headerText: string, payload: number[]): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  const bytes = new Uint8Array(8 + header.length + payload.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
  bytes.set(header, 8);
  bytes.set(payload, 8 + header.length);
  return bytes;
}

/** The error `f` throws (it must throw). */
function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected an error");
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("decodeSafetensors() refuses a tensor name given twice (the format forbids it; JSON.parse kept the last)", () => {
  const a = '"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  const error = thrown(() =>
    decodeSafetensors(handBuilt(`{${a},${a}}`, [0, 0, 128, 63]))
  );
  assert.ok(error instanceof RangeError);
  assert.match(error.message, /duplicate key "w" in the top-level object/);
  // A duplicate field inside an entry is refused too, with its path.
  const twice =
    '{"w":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}';
  assert.match(
    thrown(() => decodeSafetensors(handBuilt(twice, [0, 0, 0, 0]))).message,
    /duplicate key "dtype" in w/,
  );
});

Deno.test("decodeSafetensors() refuses a shape nested 100,000 deep with a RangeError, not a stack overflow", () => {
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  const header = `{"w":{"dtype":"F32","shape":${deep},"data_offsets":[0,0]}}`;
  const error = thrown(() => decodeSafetensors(handBuilt(header, [])));
  assert.ok(error instanceof RangeError, String(error));
  assert.match(error.message, /nested deeper than 8 levels/);
  assert.ok(error.message.length < 300, `${error.message.length} characters`);
});

Deno.test("error messages quote a prefix and the length of a huge offending value, not the value", () => {
  const name = "n".repeat(4_000_000);
  const header = `{"${name}":{"dtype":"${
    "D".repeat(1_000_000)
  }","shape":[1],"data_offsets":[0,4]}}`;
  const error = thrown(() =>
    decodeSafetensors(handBuilt(header, [0, 0, 0, 0]))
  );
  assert.ok(error instanceof RangeError);
  assert.match(error.message, /\(4000000 characters\)/);
  assert.match(error.message, /\(1000000 characters\)/);
  assert.ok(error.message.length < 400, `${error.message.length} characters`);
  const shape = `[${new Array(100_000).fill(-1).join(",")}]`;
  const bad = thrown(() =>
    decodeSafetensors(
      handBuilt(`{"w":{"dtype":"F32","shape":${shape},"data_offsets":[0,4]}}`, [
        0,
        0,
        0,
        0,
      ]),
    )
  );
  assert.match(bad.message, /\(100000 dimensions\)/);
  assert.ok(bad.message.length < 300, `${bad.message.length} characters`);
  const json = `{"k": "${"v".repeat(1_000_000)}"`; // unterminated object
  const syntax = thrown(() => parseJson(json));
  assert.ok(syntax instanceof SyntaxError);
  assert.ok(syntax.message.length < 300, `${syntax.message.length} characters`);
});

Deno.test("parseIdx() accepts a valid zero-element file whose other sizes overflow a float64 product", () => {
  // 40 dimensions of 2^32 - 1 then a 0: 0 elements, a header-only file.
  const shape = [...new Array(40).fill(0xffffffff), 0];
  const file = new Uint8Array(4 + 4 * shape.length);
  const view = new DataView(file.buffer);
  file[2] = 0x08;
  file[3] = shape.length;
  shape.forEach((size, d) => view.setUint32(4 + 4 * d, size, false));
  const parsed = parseIdx(file);
  assert.equal(parsed.data.length, 0);
  assert.deepEqual(parsed.shape, shape);
  assert.deepEqual(encodeIdx(parsed), file);
  // A zero-image MNIST-shaped file too, and one such file with a trailing byte is refused.
  const empty = encodeIdx({ dtype: "uint8", shape: [0, 28, 28], data: [] });
  assert.deepEqual(parseIdx(empty).shape, [0, 28, 28]);
  const longer = new Uint8Array(file.length + 1);
  longer.set(file);
  assert.match(thrown(() => parseIdx(longer)).message, /1 trailing bytes/);
});

Deno.test("gunzipBounded() stops at its bound; loadMnist() refuses a gzip bomb at the file's exact size", async () => {
  const zeros = new Uint8Array(64 << 20); // 64 MiB of zeros: about 64 KiB of gzip
  const bomb = await gzip(zeros);
  assert.ok(bomb.length < 256 << 10, `${bomb.length} bytes`);
  await assert.rejects(
    gunzipBounded(bomb, 1 << 20, "bomb.gz"),
    (error: Error) =>
      error instanceof RangeError &&
      /"bomb.gz": it decompresses to more than 1048576 bytes/.test(
        error.message,
      ),
  );
  await withTempDir(async (dir) => {
    for (
      const [name, count] of [["train", 60_000], ["t10k", 10_000]] as const
    ) {
      await Deno.writeFile(`${dir}/${name}-images-idx3-ubyte.gz`, bomb);
      const labels = encodeIdx({
        dtype: "uint8",
        shape: [count],
        data: new Uint8Array(count),
      });
      await Deno.writeFile(`${dir}/${name}-labels-idx1-ubyte`, labels);
    }
    await assert.rejects(
      loadMnist({ directory: dir }),
      (error: Error) =>
        error instanceof RangeError &&
        /it decompresses to more than \d+ bytes, the most this file may hold/
          .test(error.message),
    );
  });
  await assert.rejects(
    gunzipBounded(new Uint8Array([0x1f, 0x8b, 1, 2]), 10, "bad.gz"),
    RangeError,
  );
});

Deno.test("loadCheckpoint() refuses a directory and a FIFO before reading, instead of blocking", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      loadCheckpoint(dir),
      new RangeError(
        `Cannot load checkpoint "${dir}": it is not a regular file`,
      ),
    );
    const fifo = `${dir}/fifo`;
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(made.success, "mkfifo");
    await assert.rejects(loadCheckpoint(fifo), /it is not a regular file/);
  });
});
