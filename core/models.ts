/**
 * Model definitions: LeNet-5 and VGG-7 as in the Bayesian Bits paper's
 * small-model experiments (spec section 6), ResNet-18 and MobileNetV2 with
 * ImageNet shapes.
 *
 * @module
 */

import type { GraphNode, ModelGraph } from "./graph.ts";

/**
 * LeNet-5 as the authors' code defines it: conv 1->32 5x5, ReLU, maxpool 2;
 * conv 32->64 5x5, ReLU, maxpool 2; dense 1024->512, ReLU; dense 512->10.
 *
 * @returns The model graph (input `[1, 28, 28]`).
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { analyzeGraph } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(analyzeGraph(lenet5()).layers.length, 4);
 * ```
 */
export function lenet5(): ModelGraph {
  return {
    name: "lenet5",
    inputShape: [1, 28, 28],
    nodes: [
      {
        op: "conv",
        name: "conv1",
        input: "input",
        outChannels: 32,
        kernel: 5,
        activation: "relu",
      },
      { op: "maxpool", name: "pool1", input: "conv1", kernel: 2 },
      {
        op: "conv",
        name: "conv2",
        input: "pool1",
        outChannels: 64,
        kernel: 5,
        activation: "relu",
      },
      { op: "maxpool", name: "pool2", input: "conv2", kernel: 2 },
      { op: "flatten", name: "flatten", input: "pool2" },
      {
        op: "dense",
        name: "fc1",
        input: "flatten",
        outFeatures: 512,
        activation: "relu",
      },
      { op: "dense", name: "fc2", input: "fc1", outFeatures: 10 },
    ],
  };
}

/**
 * VGG-7 for CIFAR-10: 128-128-M-256-256-M-512-512-M (3x3 convs, padding 1,
 * batch norm, ReLU), then dense 8192->1024 (ReLU) -> 10.
 *
 * @returns The model graph (input `[3, 32, 32]`).
 *
 * @example
 * ```ts
 * import { vgg7 } from "@bbits/core";
 * import { analyzeGraph } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(analyzeGraph(vgg7()).layers[6].weightShape[1], 8192);
 * ```
 */
export function vgg7(): ModelGraph {
  const nodes: GraphNode[] = [];
  let input = "input";
  let index = 1;
  for (
    const [channels, pool] of [
      [128, false],
      [128, true],
      [256, false],
      [256, true],
      [512, false],
      [
        512,
        true,
      ],
    ] as const
  ) {
    const name = `conv${index++}`;
    nodes.push({
      op: "conv",
      name,
      input,
      outChannels: channels,
      kernel: 3,
      padding: 1,
      batchNorm: true,
      activation: "relu",
    });
    input = name;
    if (pool) {
      nodes.push({ op: "maxpool", name: `pool${index - 1}`, input, kernel: 2 });
      input = `pool${index - 1}`;
    }
  }
  nodes.push({ op: "flatten", name: "flatten", input });
  nodes.push({
    op: "dense",
    name: "fc1",
    input: "flatten",
    outFeatures: 1024,
    activation: "relu",
  });
  nodes.push({ op: "dense", name: "fc2", input: "fc1", outFeatures: 10 });
  return { name: "vgg7", inputShape: [3, 32, 32], nodes };
}

/**
 * ResNet-18 for ImageNet: 7x7/2 stem, 3x3/2 max-pool, four stages of two
 * basic blocks (64, 128, 256, 512 channels; 1x1/2 projection shortcuts),
 * global average pool, dense 512->1000. Convs carry batch norm.
 *
 * @returns The model graph (input `[3, 224, 224]`).
 *
 * @example
 * ```ts
 * import { resnet18 } from "@bbits/core";
 * import { analyzeGraph } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const total = analyzeGraph(resnet18()).layers.reduce((s, l) => s + l.macs, 0);
 * assert.equal(Math.round(total / 1e6), 1814); // about 1.8 GMACs
 * ```
 */
export function resnet18(): ModelGraph {
  const nodes: GraphNode[] = [
    {
      op: "conv",
      name: "conv1",
      input: "input",
      outChannels: 64,
      kernel: 7,
      stride: 2,
      padding: 3,
      batchNorm: true,
      activation: "relu",
    },
    {
      op: "maxpool",
      name: "maxpool",
      input: "conv1",
      kernel: 3,
      stride: 2,
      padding: 1,
    },
  ];
  let input = "maxpool";
  let inChannels = 64;
  [64, 128, 256, 512].forEach((channels, stage) => {
    for (let block = 0; block < 2; block++) {
      const prefix = `layer${stage + 1}.${block}`;
      const stride = stage > 0 && block === 0 ? 2 : 1;
      const conv = (
        name: string,
        src: string,
        s: number,
        activation: "relu" | "none",
      ) =>
        nodes.push({
          op: "conv",
          name,
          input: src,
          outChannels: channels,
          kernel: 3,
          stride: s,
          padding: 1,
          batchNorm: true,
          activation,
        });
      conv(`${prefix}.conv1`, input, stride, "relu");
      conv(`${prefix}.conv2`, `${prefix}.conv1`, 1, "none");
      let shortcut = input;
      if (stride !== 1 || inChannels !== channels) {
        nodes.push({
          op: "conv",
          name: `${prefix}.downsample`,
          input,
          outChannels: channels,
          kernel: 1,
          stride,
          batchNorm: true,
        });
        shortcut = `${prefix}.downsample`;
      }
      nodes.push({
        op: "add",
        name: `${prefix}.add`,
        inputs: [`${prefix}.conv2`, shortcut],
        activation: "relu",
      });
      input = `${prefix}.add`;
      inChannels = channels;
    }
  });
  nodes.push({ op: "avgpool", name: "avgpool", input });
  nodes.push({ op: "dense", name: "fc", input: "avgpool", outFeatures: 1000 });
  return { name: "resnet18", inputShape: [3, 224, 224], nodes };
}

/** One MobileNetV2 block as {@link mobilenetV2} lays it out. */
interface InvertedResidual {
  /** Node-name prefix, e.g. `"block3"`. */
  readonly prefix: string;
  /** The node the block reads. */
  readonly input: string;
  /** Channels of `input`. */
  readonly inChannels: number;
  /** Expansion factor `t` (1: no expansion conv). */
  readonly expansion: number;
  /** Output channels `c`. */
  readonly outChannels: number;
  /** Stride of the depthwise conv. */
  readonly stride: number;
}

/**
 * Appends an inverted residual block (1x1 expansion unless `t` is 1, 3x3
 * depthwise, linear 1x1 projection, identity shortcut when the shapes
 * match) to `nodes`.
 *
 * @returns The name of the block's output node.
 */
function pushInvertedResidual(
  nodes: GraphNode[],
  block: InvertedResidual,
): string {
  const { prefix, input, inChannels, stride } = block;
  const t = block.expansion;
  const c = block.outChannels;
  const hidden = inChannels * t;
  let src = input;
  if (t !== 1) {
    nodes.push({
      op: "conv",
      name: `${prefix}.expand`,
      input: src,
      outChannels: hidden,
      kernel: 1,
      batchNorm: true,
      activation: "relu6",
    });
    src = `${prefix}.expand`;
  }
  nodes.push({
    op: "conv",
    name: `${prefix}.depthwise`,
    input: src,
    outChannels: hidden,
    kernel: 3,
    stride,
    padding: 1,
    groups: hidden,
    batchNorm: true,
    activation: "relu6",
  });
  nodes.push({
    op: "conv",
    name: `${prefix}.project`,
    input: `${prefix}.depthwise`,
    outChannels: c,
    kernel: 1,
    batchNorm: true,
  });
  if (stride === 1 && inChannels === c) {
    nodes.push({
      op: "add",
      name: `${prefix}.add`,
      inputs: [`${prefix}.project`, input],
    });
    return `${prefix}.add`;
  }
  return `${prefix}.project`;
}

/**
 * MobileNetV2 (width 1.0) for ImageNet: 3x3/2 stem of 32 channels, inverted
 * residual blocks (expansion t, channels c, repeats n, stride s) of
 * (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2)
 * (6,320,1,1), a 1x1 conv to 1280, global average pool, dense 1280->1000.
 * ReLU6 after expansions and depthwise convs; linear bottlenecks.
 *
 * @returns The model graph (input `[3, 224, 224]`).
 *
 * @example
 * ```ts
 * import { mobilenetV2 } from "@bbits/core";
 * import { analyzeGraph } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const total = analyzeGraph(mobilenetV2()).layers.reduce((s, l) => s + l.macs, 0);
 * assert.equal(Math.round(total / 1e6), 301); // about 300 MMACs
 * ```
 */
export function mobilenetV2(): ModelGraph {
  const nodes: GraphNode[] = [
    {
      op: "conv",
      name: "stem",
      input: "input",
      outChannels: 32,
      kernel: 3,
      stride: 2,
      padding: 1,
      batchNorm: true,
      activation: "relu6",
    },
  ];
  let input = "stem";
  let inChannels = 32;
  let index = 0;
  const settings = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
  ];
  for (const [t, c, n, s] of settings) {
    for (let i = 0; i < n; i++) {
      input = pushInvertedResidual(nodes, {
        prefix: `block${index++}`,
        input,
        inChannels,
        expansion: t,
        outChannels: c,
        stride: i === 0 ? s : 1,
      });
      inChannels = c;
    }
  }
  nodes.push({
    op: "conv",
    name: "head",
    input,
    outChannels: 1280,
    kernel: 1,
    batchNorm: true,
    activation: "relu6",
  });
  nodes.push({ op: "avgpool", name: "avgpool", input: "head" });
  nodes.push({
    op: "dense",
    name: "classifier",
    input: "avgpool",
    outFeatures: 1000,
  });
  return { name: "mobilenetv2", inputShape: [3, 224, 224], nodes };
}
