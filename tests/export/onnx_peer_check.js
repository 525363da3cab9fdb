// The onnxruntime half of the peer check (onnx_peer_check.sh): runs every model onnx_peer_dump
// wrote with onnxruntime-node on the same inputs and batch sizes and compares with dtrain's
// outputs: f32 models need max |probability difference| <= 1e-4 and identical argmax; int8
// models need identical argmax on >= 99% of the images. The gpt (gpt_cases.json): max |logit
// difference| <= 1e-4 between onnxruntime, dtrain's engine and dtrain's training forward for
// model.onnx and a left-padded model_with_past.onnx chain (real positions), the same caches, and
// the same greedy continuation with and without the cache in both runtimes.
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

function maxDiff(a, b, keep = () => true) {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) if (keep(i)) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function report(results, name, ok, detail) {
  results.push(ok);
  console.log(`${ok ? 'PASS' : 'FAIL'} gpt ${name}: ${detail}`);
}

function lastArgmax(logits, vocab) {
  const data = logits.data;
  let best = data.length - vocab;
  for (let i = best + 1; i < data.length; i++) if (data[i] > data[best]) best = i;
  return BigInt(best - (data.length - vocab));
}

const ids = (values, rows) => new ort.Tensor('int64', BigInt64Array.from(values, BigInt), [rows, values.length / rows]);

// model.onnx on the dumped ids: onnxruntime vs dtrain's engine and training forward.
async function checkGptFull(c, dir, session, results) {
  for (const r of c.full_runs) {
    const input = typed(path.join(dir, `full_ids_${r.tag}.i64`), BigInt64Array);
    const out = await session.run({ input_ids: new ort.Tensor('int64', input, [r.batch, r.length]) });
    const got = out.logits;
    const engine = typed(path.join(dir, `full_engine_${r.tag}.f32`), Float32Array);
    const forward = typed(path.join(dir, `full_forward_${r.tag}.f32`), Float32Array);
    const shapeOk = got.dims.join() === [r.batch, r.length, c.vocab].join();
    const d = [maxDiff(got.data, engine), maxDiff(got.data, forward), maxDiff(engine, forward)];
    report(results, `model.onnx [${r.batch}, ${r.length}]`, shapeOk && d.every((x) => x <= F32_TOLERANCE),
           `max |ort - engine| = ${d[0].toExponential(3)}, |ort - forward| = ${d[1].toExponential(3)}, ` +
           `|engine - forward| = ${d[2].toExponential(3)} (need <= ${F32_TOLERANCE}; logits ${got.dims})`);
  }
}

function emptyCache(c, rows) {
  const feeds = {};
  for (let l = 0; l < c.n_layer; l++)
    for (const part of ['key', 'value'])
      feeds[`past_key_values.${l}.${part}`] = new ort.Tensor('float32', new Float32Array(0), [rows, c.n_head, 0, c.head_dim]);
  return feeds;
}

function presentAsPast(c, out) {
  const feeds = {};
  for (let l = 0; l < c.n_layer; l++)
    for (const part of ['key', 'value']) feeds[`past_key_values.${l}.${part}`] = out[`present.${l}.${part}`];
  return feeds;
}

// The dumped model_with_past.onnx calls, chained on onnxruntime's own caches.
async function checkGptPast(c, dir, session, results) {
  let cache = emptyCache(c, 2);
  let out = null;
  for (const call of c.past_runs) {
    const read = (what) => typed(path.join(dir, `past_${what}_${call.tag}.i64`), BigInt64Array);
    const mask = read('mask');
    const feeds = { input_ids: new ort.Tensor('int64', read('ids'), [2, call.new]),
                    position_ids: new ort.Tensor('int64', read('positions'), [2, call.new]),
                    attention_mask: new ort.Tensor('int64', mask, [2, call.total]), ...cache };
    out = await session.run(feeds);
    const engine = typed(path.join(dir, `past_engine_${call.tag}.f32`), Float32Array);
    const forward = typed(path.join(dir, `past_forward_${call.tag}.f32`), Float32Array);
    const real = (i) => {  // the logit's token is real (not padding)
      const row = Math.floor(i / (call.new * c.vocab)), s = Math.floor(i / c.vocab) % call.new;
      return mask[row * call.total + call.total - call.new + s] === 1n;
    };
    const d = [maxDiff(out.logits.data, engine), maxDiff(out.logits.data, forward, real), maxDiff(engine, forward, real)];
    report(results, `model_with_past call ${call.tag} (S ${call.new}, P+S ${call.total})`, d.every((x) => x <= F32_TOLERANCE),
           `max |ort - engine| = ${d[0].toExponential(3)}, real positions |ort - forward| = ${d[1].toExponential(3)}, ` +
           `|engine - forward| = ${d[2].toExponential(3)}`);
    cache = presentAsPast(c, out);
  }
  let worst = 0;
  for (let l = 0; l < c.n_layer; l++)
    ['key', 'value'].forEach((part, k) => {
      const want = typed(path.join(dir, `past_present_${2 * l + k}.f32`), Float32Array);
      worst = Math.max(worst, maxDiff(out[`present.${l}.${part}`].data, want));
    });
  report(results, 'model_with_past presents', worst <= F32_TOLERANCE, `max |ort - engine| = ${worst.toExponential(3)}`);
}

// Greedy continuations on onnxruntime, with the cache and without (the whole sequence each step).
async function greedyOrt(c, full, past) {
  const tokens = c.greedy.prompt.slice();
  const withPast = tokens.slice();
  let out = await past.run({ input_ids: ids(withPast, 1), position_ids: ids(withPast.map((_, i) => i), 1),
                             attention_mask: ids(withPast.map(() => 1), 1), ...emptyCache(c, 1) });
  for (let i = 0; i < c.greedy.steps; i++) {
    withPast.push(Number(lastArgmax(out.logits, c.vocab)));
    if (i + 1 === c.greedy.steps) break;
    out = await past.run({ input_ids: ids([withPast.at(-1)], 1), position_ids: ids([withPast.length - 1], 1),
                           attention_mask: ids(withPast.map(() => 1), 1), ...presentAsPast(c, out) });
  }
  for (let i = 0; i < c.greedy.steps; i++) {
    const window = tokens.slice(Math.max(0, tokens.length - c.ctx));
    tokens.push(Number(lastArgmax((await full.run({ input_ids: ids(window, 1) })).logits, c.vocab)));
  }
  return [withPast, tokens];
}

async function checkGpt(work) {
  const file = path.join(work, 'gpt_cases.json');
  if (!fs.existsSync(file)) return [];
  const c = JSON.parse(fs.readFileSync(file, 'utf8'));
  const dir = path.join(work, c.dir);
  const full = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), { intraOpNumThreads: 1 });
  const past = await ort.InferenceSession.create(path.join(dir, 'model_with_past.onnx'), { intraOpNumThreads: 1 });
  const results = [];
  await checkGptFull(c, dir, full, results);
  await checkGptPast(c, dir, past, results);
  const [ortPast, ortFull] = await greedyOrt(c, full, past);
  const runs = { 'dtrain with past': c.greedy.engine_with_past, 'dtrain without past': c.greedy.engine_without_past,
                 'onnxruntime with past': ortPast, 'onnxruntime without past': ortFull };
  const want = runs['dtrain with past'].join();
  const differ = Object.keys(runs).filter((k) => runs[k].join() !== want);
  report(results, `greedy continuation of ${c.greedy.steps} tokens`, differ.length === 0,
         differ.length ? `differs: ${differ.join(', ')}` : `identical in all four (${ortPast.slice(-c.greedy.steps).join(' ')})`);
  return results;
}

async function main() {
  const casesFile = path.join(work, 'cases.json');
  const cases = fs.existsSync(casesFile) ? JSON.parse(fs.readFileSync(casesFile, 'utf8')) : [];
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
  for (const ok of await checkGpt(work)) {
    checks++;
    if (!ok) failures++;
  }
  console.log(`onnxruntime ${ort.env.versions ? ort.env.versions.common : ''}: ${checks - failures} passed, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.error(`onnx_peer_check: ${e.stack || e}`);
  process.exit(1);
});
