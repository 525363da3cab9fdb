// onnxruntime-node's single-request latency on an exported model, per batch size: the reference
// half of bench_engine (same zero input, batch sizes, thread count, warm-up and statistics).
// usage: node ort_latency.js NODE_PREFIX MODEL.onnx BATCHES(1,64) ITERS THREADS
'use strict';
const path = require('path');

const [nodePrefix, model, batchList, itersArg, threadsArg] = process.argv.slice(2);
const ort = require(path.join(path.resolve(nodePrefix), 'node_modules', 'onnxruntime-node'));
const ARRAYS = { uint8: Uint8Array, float32: Float32Array, int64: BigInt64Array };

async function main() {
  const iters = Number(itersArg);
  const threads = Number(threadsArg);
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const inputName = session.inputNames[0];
  const info = JSON.parse(require('fs').readFileSync(path.join(path.dirname(path.dirname(model)), 'config.json'), 'utf8'));
  const shape = info.inputs[0].shape;
  const type = { FP32: 'float32', UINT8: 'uint8', INT64: 'int64' }[info.inputs[0].datatype];
  for (const b of batchList.split(',').map(Number)) {
    const dims = shape.map((d) => (d < 0 ? b : d));
    const x = new ort.Tensor(type, new ARRAYS[type](dims.reduce((p, d) => p * d, 1)), dims);
    for (let i = 0; i < 10; ++i) await session.run({ [inputName]: x });
    const ms = [];
    for (let i = 0; i < iters; ++i) {
      const t0 = process.hrtime.bigint();
      await session.run({ [inputName]: x });
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    ms.sort((p, q) => p - q);
    console.log(JSON.stringify({ bench: 'engine', impl: 'onnxruntime', model, batch: b, threads, iters,
      median_ms: ms[Math.floor(ms.length / 2)], p90_ms: ms[Math.floor(ms.length * 9 / 10)] }));
  }
}

main().catch((e) => { console.error(`ort_latency: ${e.message}`); process.exit(1); });
