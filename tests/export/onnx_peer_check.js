// The onnxruntime half of the peer check (onnx_peer_check.sh): runs every model onnx_peer_dump
// wrote with onnxruntime-node on the same inputs and batch sizes and compares with dtrain's
// outputs: f32 models need max |probability difference| <= 1e-4 and identical argmax; int8
// models need identical argmax on >= 99% of the images.
// usage: node onnx_peer_check.js NODE_PREFIX WORK_DIR   (NODE_PREFIX holds node_modules/)
'use strict';
const fs = require('fs');
const path = require('path');

const [nodePrefix, work] = process.argv.slice(2);
const ort = require(path.join(path.resolve(nodePrefix), 'node_modules', 'onnxruntime-node'));

const ARRAYS = { uint8: Uint8Array, float32: Float32Array, int64: BigInt64Array };
const F32_TOLERANCE = 1e-4;
const INT8_AGREEMENT = 0.99;

function typed(file, Type) {
  const b = fs.readFileSync(file);
  return new Type(b.buffer, b.byteOffset, b.byteLength / Type.BYTES_PER_ELEMENT);
}

async function main() {
  const cases = JSON.parse(fs.readFileSync(path.join(work, 'cases.json'), 'utf8'));
  let failures = 0;
  let checks = 0;
  for (const c of cases) {
    const dir = path.join(work, c.dir);
    const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), { intraOpNumThreads: 1 });
    for (const run of c.runs) {
      const input = typed(path.join(dir, run.input), ARRAYS[c.input_type]);
      const sample = c.sample_shape.reduce((a, b) => a * b, 1);
      const wantProbs = typed(path.join(dir, run.probabilities), Float32Array);
      const wantClass = typed(path.join(dir, run.class), BigInt64Array);
      const classes = wantProbs.length / run.count;
      let maxDiff = 0;
      let same = 0;
      for (let first = 0; first < run.count; first += run.batch) {
        const n = Math.min(run.batch, run.count - first);
        const x = new ort.Tensor(c.input_type, input.subarray(first * sample, (first + n) * sample), [n, ...c.sample_shape]);
        const out = await session.run({ input: x });
        const probs = out.probabilities.data;
        const cls = out.class.data;
        if (out.probabilities.dims.join() !== [n, classes].join() || out.class.dims.join() !== [n].join()) {
          throw new Error(`${c.name}: onnxruntime output shapes ${out.probabilities.dims} / ${out.class.dims} at batch ${n}`);
        }
        for (let i = 0; i < probs.length; i++) {
          maxDiff = Math.max(maxDiff, Math.abs(probs[i] - wantProbs[first * classes + i]));
        }
        for (let i = 0; i < n; i++) same += cls[i] === wantClass[first + i] ? 1 : 0;
      }
      const agreement = same / run.count;
      const ok = c.quantize === 'int8' ? agreement >= INT8_AGREEMENT
                                       : maxDiff <= F32_TOLERANCE && same === run.count;
      checks++;
      if (!ok) failures++;
      console.log(`${ok ? 'PASS' : 'FAIL'} ${c.name} batch ${run.batch}: ${run.count} images, ` +
                  `max |p_ort - p_dtrain| = ${maxDiff.toExponential(3)}, argmax agreement ${(agreement * 100).toFixed(2)}%` +
                  (c.quantize === 'int8' ? ` (need >= ${INT8_AGREEMENT * 100}%)` : ` (need <= ${F32_TOLERANCE} and 100%)`));
    }
  }
  console.log(`onnxruntime ${ort.env.versions ? ort.env.versions.common : ''}: ${checks - failures} passed, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.error(`onnx_peer_check: ${e.stack || e}`);
  process.exit(1);
});
