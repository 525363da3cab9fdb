// Load for dtrain-serve's generate_stream: STREAMS concurrent Server-Sent Events streams of the
// same request (each its own seed), after one 1-token warm-up request, timing each stream's first
// token (from sending the request to its first event) and its tokens. Prints one
// JSON line: tokens/s over the wall time of all streams, time to first token (p50, max) and the
// tokens/s one stream sees (p50).
// usage: node generate_load.js PORT MODEL STREAMS MAX_TOKENS PROMPT [TEMPERATURE=0.8] [TOP_K=40]
'use strict';
const http = require('http');

const [port, model, streamsArg, maxTokensArg, prompt, temperatureArg, topKArg] = process.argv.slice(2);
const streams = Number(streamsArg);
const maxTokens = Number(maxTokensArg);

// One stream: resolves {ttft_ms, tokens, seconds, finish} or rejects with the server's error.
function stream(seed, tokens = maxTokens) {
  const body = JSON.stringify({ text_input: prompt, parameters: { max_tokens: tokens, seed,
    temperature: Number(temperatureArg ?? 0.8), top_k: Number(topKArg ?? 40) } });
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', agent: false,
      path: `/v2/models/${model}/generate_stream`,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let buffer = '', tokens = 0, ttft = null, finish = null;
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buffer += chunk;
        for (let end; (end = buffer.indexOf('\n\n')) >= 0; buffer = buffer.slice(end + 2)) {
          const event = JSON.parse(buffer.slice(6, end));
          if (event.error) return reject(new Error(event.error));
          if (event.finish_reason) { finish = event.finish_reason; continue; }
          if (ttft === null) ttft = ms();
          ++tokens;
        }
      });
      res.on('end', () => (res.statusCode === 200 ? resolve({ ttft_ms: ttft, tokens, seconds: ms() / 1e3, finish })
        : reject(new Error(`HTTP ${res.statusCode}: ${buffer}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
const round = (x, d = 3) => Number(x.toFixed(d));

async function main() {
  await stream(0, 1);  // warm-up: this process's first connection and JSON parsing
  const t0 = process.hrtime.bigint();
  const results = await Promise.all(Array.from({ length: streams }, (_, i) => stream(1 + i)));
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const tokens = results.reduce((n, r) => n + r.tokens, 0);
  console.log(JSON.stringify({ streams, max_tokens: maxTokens, tokens, wall_s: round(wall),
    tokens_per_s: round(tokens / wall, 1), ttft_ms_p50: round(median(results.map((r) => r.ttft_ms))),
    ttft_ms_max: round(Math.max(...results.map((r) => r.ttft_ms))),
    stream_tokens_per_s_p50: round(median(results.map((r) => r.tokens / r.seconds)), 1),
    finish: [...new Set(results.map((r) => r.finish))].join(',') }));
}

main().catch((e) => { console.error(`generate_load: ${e.message}`); process.exit(1); });
