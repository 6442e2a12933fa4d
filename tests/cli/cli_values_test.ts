import assert from "node:assert/strict";
import { parseTrainArgs } from "../../cli/config.ts";
import { exportCommand } from "../../cli/export.ts";
import { main } from "../../cli/main.ts";
import { trainCommand } from "../../cli/train.ts";
import { configNumber, parseNumber } from "../../cli/values.ts";
import { withTempDir } from "../_io_fixtures.ts";

/** The `train` flags that take a number, with a value each accepts. */
const TRAIN_NUMERIC: Readonly<Record<string, string>> = {
  epochs: "3",
  "fine-tune-epochs": "0",
  "batch-size": "16",
  mu: "0.5",
  "lr-weights": "1e-2",
  "lr-logits": ".5",
  "lr-ranges": "0",
  seed: "7",
  limit: "100",
  threads: "64",
  "progress-every": "10",
};

/** Texts no numeric flag accepts. */
const NOT_NUMBERS = [
  "",
  " ",
  "abc",
  " 1",
  "1 ",
  "0x10",
  "Infinity",
  "NaN",
  "1,5",
  "1e",
];

Deno.test("parseNumber() takes plain decimal numbers only, within the rule", () => {
  assert.equal(parseNumber("--x", "1e-2", "non-negative"), 0.01);
  assert.equal(parseNumber("--x", "-2.5", "finite"), -2.5);
  assert.equal(parseNumber("--x", "+3", "positive-integer"), 3);
  assert.equal(parseNumber("--x", "1e3", "positive-integer"), 1000);
  assert.equal(parseNumber("--x", 64, "positive-integer", { max: 64 }), 64);
  for (const text of NOT_NUMBERS) {
    assert.throws(
      () => parseNumber("--x", text, "finite"),
      new RegExp(
        `^RangeError: --x must be a finite number, got ${
          JSON.stringify(text)
        }$`,
      ),
      JSON.stringify(text),
    );
  }
  assert.throws(
    () => parseNumber("--x", "0", "positive"),
    /--x must be a positive number, got "0"/,
  );
  assert.throws(
    () => parseNumber("--x", "1.5", "non-negative-integer"),
    /--x must be a non-negative integer/,
  );
  assert.throws(
    () => parseNumber("--x", "1e16", "positive-integer"),
    /--x must be a positive integer/,
  );
  assert.throws(
    () => parseNumber("--x", "1e400", "non-negative"),
    /--x must be a finite number >= 0/,
  );
  assert.throws(
    () => parseNumber("--x", 65, "positive-integer", { max: 64 }),
    /--x must be a positive integer <= 64, got 65/,
  );
  assert.throws(
    () => parseNumber("--x", null, "finite"),
    /--x must be a finite number, got null/,
  );
  assert.throws(
    () => parseNumber("--x", true, "finite"),
    /--x must be a finite number, got true/,
  );
  // A config value must be a JSON number, not a numeric string.
  assert.equal(configNumber("k", 2, "positive-integer"), 2);
  assert.throws(
    () => configNumber("k", "2", "positive-integer"),
    /k must be a positive integer, got the string "2" \(write a JSON number, without quotes\)/,
  );
});

Deno.test("every numeric train flag refuses empty and non-numeric text, naming the flag", async () => {
  for (const [flag, good] of Object.entries(TRAIN_NUMERIC)) {
    await parseTrainArgs([`--${flag}`, good]);
    for (const text of NOT_NUMBERS) {
      await assert.rejects(
        parseTrainArgs([`--${flag}`, text]),
        (e: Error) =>
          e instanceof RangeError &&
          e.message.startsWith(`--${flag} must be `) &&
          e.message.endsWith(`, got ${JSON.stringify(text)}`),
        `--${flag} ${JSON.stringify(text)}`,
      );
    }
  }
  // Non-integers where integers are expected; out of range.
  for (
    const flag of [
      "epochs",
      "batch-size",
      "seed",
      "limit",
      "threads",
      "progress-every",
      "fine-tune-epochs",
    ]
  ) {
    await assert.rejects(
      parseTrainArgs([`--${flag}`, "2.5"]),
      new RegExp(`--${flag} must be a (positive|non-negative) integer`),
    );
  }
  await assert.rejects(
    parseTrainArgs(["--epochs", "0"]),
    /--epochs must be a positive integer, got "0"/,
  );
  await assert.rejects(
    parseTrainArgs(["--mu=-0.1"]),
    /--mu must be a finite number >= 0/,
  );
  await assert.rejects(
    parseTrainArgs(["--seed", "9007199254740992"]),
    /--seed must be a non-negative integer/,
  );
  await assert.rejects(
    parseTrainArgs(["--threads", "65"]),
    /--threads must be a positive integer <= 64, got "65"/,
  );
  assert.equal((await parseTrainArgs(["--threads", "64"])).threads, 64);
  await assert.rejects(
    parseTrainArgs(["--from", ""]),
    /--from must name a file, got ""/,
  );
  await assert.rejects(
    parseTrainArgs(["--out", ""]),
    /--out must name a directory, got ""/,
  );
});

Deno.test("--init-logits refuses an empty or bad logit and an unknown bit width", async () => {
  assert.deepEqual(
    (await parseTrainArgs(["--init-logits", "2=5, 32=-1.5"])).config
      .initialLogits,
    {
      2: 5,
      4: 6,
      8: 6,
      16: -6,
      32: -1.5,
    },
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "2=6,4="]),
    /--init-logits \(the logit for 4 bits\) must be a finite number, got ""/,
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "2=x"]),
    /--init-logits \(the logit for 2 bits\) must be a finite number, got "x"/,
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "2=6,"]),
    /--init-logits must look like/,
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "2=6=1"]),
    /--init-logits must look like/,
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "2=6,4=1,2=5"]),
    /--init-logits gives the logit for 2 bits twice, in "2=6,4=1,2=5"/,
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "3=6"]),
    /--init-logits: unknown bit width "3" \(gates exist for 2, 4, 8, 16, 32\)/,
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "constructor=1"]),
    /unknown bit width "constructor"/,
  );
});

Deno.test("a config file: own keys only, JSON numbers only (no numeric strings), integers and ranges checked, naming the key", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/c.json`;
    const parse = async (json: string) => {
      await Deno.writeTextFile(path, json);
      return await parseTrainArgs(["--config", path]);
    };
    for (
      const key of [
        "constructor",
        "__proto__",
        "toString",
        "hasOwnProperty",
        "valueOf",
      ]
    ) {
      await assert.rejects(
        parse(`{"${key}": 1}`),
        new RegExp(`unknown option "${key}"`),
        key,
      );
    }
    const at = `config "${dir}/c.json": `.replace(
      /[.*+?^${}()|[\]\\]/g,
      "\\$&",
    );
    const cases: [string, string][] = [
      [
        '{"mu": "0.1"}',
        'mu must be a finite number >= 0, got the string "0.1" \\(write a JSON number',
      ],
      [
        '{"epochs": "3"}',
        'epochs must be a positive integer, got the string "3"',
      ],
      ['{"mu": ""}', 'mu must be a finite number >= 0, got the string ""'],
      ['{"epochs": 1.5}', "epochs must be a positive integer, got 1.5"],
      ['{"seed": -1}', "seed must be a non-negative integer, got -1"],
      ['{"batchSize": 0}', "batchSize must be a positive integer, got 0"],
      [
        '{"limit": "100"}',
        'limit must be a positive integer, got the string "100"',
      ],
      [
        '{"lrWeights": null}',
        "lrWeights must be a finite number >= 0, got null",
      ],
      [
        '{"initialLogits": {"2": "6"}}',
        'initialLogits\\["2"\\] must be a finite number, got the string "6"',
      ],
      ['{"initialLogits": {"5": 6}}', 'initialLogits: unknown bit width "5"'],
      [
        '{"initialLogits": [6]}',
        "initialLogits must be an object of logits by bit width",
      ],
      ['{"fullPrecision": [1]}', "fullPrecision must be a list of layer names"],
      [
        '{"from": 3}',
        "from must be the path of a float checkpoint or null, got 3",
      ],
    ];
    for (const [json, message] of cases) {
      await assert.rejects(
        parse(json),
        new RegExp(`^\\w+Error: ${at}${message}`),
        json,
      );
    }
    const ok = await parse(
      '{"mu": 0.5, "limit": null, "initialLogits": {"16": -2}}',
    );
    assert.equal(ok.config.mu, 0.5);
    assert.equal(ok.config.limit, null);
    assert.deepEqual(ok.config.initialLogits, { 16: -2 });
  });
});

Deno.test("float and export refuse bad numbers at parse time, naming the flag", async () => {
  const cases: [string[], RegExp][] = [
    [["float", "--lr", ""], /--lr must be a positive number, got ""/],
    [["float", "--epochs", ""], /--epochs must be a positive integer, got ""/],
    [["float", "--seed", ""], /--seed must be a non-negative integer, got ""/],
    [
      ["float", "--seed", "1.5"],
      /--seed must be a non-negative integer, got "1.5"/,
    ],
    [
      ["float", "--batch-size", "0x10"],
      /--batch-size must be a positive integer, got "0x10"/,
    ],
    // Refused before MNIST is loaded or a device made.
    [
      ["float", "--threads", "65"],
      /--threads must be a positive integer <= 64, got "65"/,
    ],
    [["float", "--out", ""], /--out must name a directory, got ""/],
    [
      ["export", "--from", "x", "--threads", ""],
      /--threads must be a positive integer, got ""/,
    ],
    [
      ["export", "--from", "x", "--threads", "65"],
      /--threads must be a positive integer <= 64/,
    ],
    [["export", "--from", ""], /--from must name a file, got ""/],
  ];
  for (const [args, message] of cases) {
    await assert.rejects(main(args), message, args.join(" "));
  }
});

/** Rejects after `ms` (a read that blocks would otherwise hang the test). */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still running after ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Whether `mkfifo` made a FIFO at `path`. */
async function makeFifo(path: string): Promise<boolean> {
  const made = await new Deno.Command("mkfifo", { args: [path] }).output()
    .catch(() => null);
  return made !== null && made.success &&
    (await Deno.stat(path)).isFifo === true;
}

Deno.test("--from must be a regular file: a missing file, a directory or a FIFO is refused before --out is created", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/adir`);
    const fifo = `${dir}/fifo`;
    const haveFifo = await makeFifo(fifo);
    const cases: [string, RegExp][] = [
      [
        `${dir}/missing.safetensors`,
        /--from .*missing\.safetensors: no such file/,
      ],
      [`${dir}/adir`, /--from .*adir is a directory, not a regular file/],
    ];
    if (haveFifo) {
      cases.push([fifo, /--from .*fifo is a FIFO, not a regular file/]);
    } else {console.error(
        "mkfifo is unavailable: the FIFO case of --from is not run",
      );}
    for (const [from, message] of cases) {
      const out = `${dir}/run`;
      await assert.rejects(
        within(
          trainCommand([
            ...["--post-training", "logits", "--from", from],
            ...[
              "--epochs",
              "1",
              "--limit",
              "16",
              "--threads",
              "1",
              "--out",
              out,
            ],
          ]),
          20_000,
        ),
        message,
        from,
      );
      await assert.rejects(
        Deno.stat(out),
        Deno.errors.NotFound,
        `${from}: --out was created`,
      );
    }
    // export: a directory is a run directory, a FIFO is refused without blocking.
    if (haveFifo) {
      await assert.rejects(
        within(
          exportCommand(["--from", fifo, "--out", `${dir}/q.safetensors`]),
          20_000,
        ),
        /--from .*fifo is a FIFO, not a regular file/,
      );
    }
    await assert.rejects(
      exportCommand(["--from", `${dir}/adir`]),
      /--from .*adir\/checkpoint\.safetensors: no such file/,
    );
  });
});

Deno.test("cheap checks come first: --resume of a missing run and an unknown --full-precision layer are refused before any data is loaded or --out created", async () => {
  await withTempDir(async (dir) => {
    const cases: [string[], RegExp][] = [
      [
        ["--resume"],
        /--resume: .*\/new holds no run to continue$/,
      ],
      [["--full-precision", "conv1,nosuch"], /nosuch/],
    ];
    for (const [flags, message] of cases) {
      const log = console.error;
      let err = "";
      console.error = (...a: unknown[]) => (err += a.join(" ") + "\n");
      try {
        await assert.rejects(
          trainCommand([...flags, "--threads", "1", "--out", `${dir}/new`]),
          message,
        );
      } finally {
        console.error = log;
      }
      assert.equal(err, "", flags.join(" "));
      await assert.rejects(Deno.stat(`${dir}/new`), Deno.errors.NotFound);
    }
    // A directory without a run: refused once locked, left as it was.
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(
      trainCommand(["--resume", "--threads", "1", "--out", `${dir}/empty`]),
      /--resume .*\/empty\/checkpoint\.safetensors: no such file/,
    );
    assert.deepEqual([...Deno.readDirSync(`${dir}/empty`)], []);
  });
});
