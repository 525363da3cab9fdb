#!/usr/bin/env python3
"""PyTorch DDP (CPU, gloo) side of scripts/bench-peer.sh: dtrain's mlp, cnn and gpt rebuilt in
PyTorch, trained data-parallel with the same batch, optimizer and data, timed the way the script
times dtrain (after --warmup steps, for --steps steps, rank 0's clock). Prints one JSON line.

Ranks: one process per rank under `mpirun -np N` (RANK and WORLD_SIZE from Open MPI's
OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE; RANK/WORLD_SIZE from the environment otherwise,
else a world of one), rendezvous over env:// at MASTER_ADDR:MASTER_PORT (127.0.0.1:29533).

  mpirun -np 2 python3 bench/peer_pytorch.py --model gpt --threads 1 --steps 100
  mpirun -np 2 python3 bench/peer_pytorch.py --model gpt --learning 2000 --curve loss.jsonl

--learning STEPS: trains STEPS steps with the gpt schedule (warm-up 50, cosine to 0) and reports
the validation loss in nats per token (per byte for a byte corpus) on --eval-windows fixed windows
chosen as dtrain's data/token_windows.cpp chooses them, and the training wall time.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "cnn", "gpt"], required=True)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads per rank")
    p.add_argument("--warmup", type=int, default=50, help="untimed steps before the timed ones")
    p.add_argument("--steps", type=int, default=200, help="timed steps")
    p.add_argument("--batch", type=int, default=0, help="per rank (0: 64 for mlp/cnn, 16 for gpt)")
    p.add_argument("--data", default="", help="training data (default data/fmnist-train.h5 or data/kjv-train.h5)")
    p.add_argument("--val", default="data/kjv-val.h5", help="gpt --learning: validation tokens")
    p.add_argument("--eval-windows", type=int, default=640)
    p.add_argument("--learning", type=int, default=0, help="gpt: train this many steps and evaluate")
    p.add_argument("--curve", default="", help="--learning: write training-loss JSON lines here (rank 0)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--lr-warmup", type=int, default=50, help="gpt: learning-rate warm-up steps")
    p.add_argument("--seed", type=int, default=42)
    return p.parse_args()


# ---- models (core/model.cpp's build_mlp, build_cnn, build_gpt) -------------------------------

def build_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def build_cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


class Block(nn.Module):
    """x += proj(attention(qkv(LN(x)))); x += fc2(GELU_tanh(fc1(LN(x))))."""

    def __init__(self, width, heads, ctx):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.causal = torch.tril(torch.ones(ctx, ctx, dtype=torch.bool))  # no buffer: DDP would broadcast it

    def attention(self, x):
        n, t, c = x.shape
        hd = c // self.heads
        q, k, v = self.qkv(x).split(c, dim=2)  # q | k | v per position, head h in columns [h hd, (h+1) hd)
        q, k, v = (z.view(n, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(~self.causal[:t, :t], float("-inf")).softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(n, t, c))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """Token + learned position embeddings, pre-LN blocks, final LN, head tied to the token table."""

    def __init__(self, vocab=256, ctx=128, width=128, heads=4, layers=4):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(ctx, width)
        self.blocks = nn.ModuleList(Block(width, heads, ctx) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        std, residual_std = 0.02, 0.02 / math.sqrt(2.0 * layers)  # GPT-2's init, as dtrain's
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, residual_std if name.endswith(("proj", "fc2")) else std)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()


# ---- data ------------------------------------------------------------------------------------

def read_h5(path, name):
    try:
        import h5py
    except ImportError:
        return None
    if not os.path.exists(path):
        return None
    with h5py.File(path, "r") as f:
        return f[name][...], dict(f.attrs)


class ImageBatches:
    """This rank's share (every world-th sample) of Fashion-MNIST, reshuffled each epoch; synthetic
    data of the same shape when the file or h5py is missing (the speed does not depend on values)."""

    def __init__(self, path, rank, world, batch, seed, images):
        loaded = read_h5(path, "/x")
        if loaded is not None:
            x, attrs = loaded
            y = read_h5(path, "/y")[0]
            scale = float(attrs.get("x_scale", 1.0 / 255))
            self.source = path
        else:
            g = np.random.default_rng(seed)
            x, y, scale = g.integers(0, 256, (60000, 28, 28), dtype=np.uint8), g.integers(0, 10, 60000), 1.0 / 255
            self.source = "synthetic"
        self.x = torch.from_numpy(np.ascontiguousarray(x[rank::world]))
        self.y = torch.from_numpy(np.ascontiguousarray(y[rank::world]).astype(np.int64))
        self.scale, self.batch, self.images = scale, batch, images
        self.gen = torch.Generator().manual_seed(seed + rank)
        self.order, self.at = torch.randperm(len(self.y), generator=self.gen), 0

    def next(self):
        if self.at + self.batch > len(self.order):
            self.order, self.at = torch.randperm(len(self.y), generator=self.gen), 0
        idx = self.order[self.at:self.at + self.batch]
        self.at += self.batch
        x = self.x[idx].float().mul_(self.scale)
        return (x.unsqueeze(1) if self.images else x), self.y[idx]


def read_tokens(path):
    loaded = read_h5(path, "/tokens")
    if loaded is not None:
        return loaded[0].astype(np.int64), path
    text = os.path.join(os.path.dirname(path) or ".", "kjv.txt")  # scripts/get-text.sh leaves it
    if os.path.exists(text):
        data = np.frombuffer(open(text, "rb").read(), dtype=np.uint8).astype(np.int64)
        split = len(data) - int(len(data) * 0.05)  # the last 5 % is validation (get-text.sh's convert)
        return (data[split:] if "val" in os.path.basename(path) else data[:split]), text
    raise SystemExit(f"peer_pytorch: neither {path} (with h5py) nor {text}: run scripts/get-text.sh")


class TokenBatches:
    """Random windows of ctx + 1 tokens from this rank's contiguous shard, as dtrain's open_random."""

    def __init__(self, path, rank, world, batch, ctx, seed):
        tokens, self.source = read_tokens(path)
        n = len(tokens)
        self.tokens = torch.from_numpy(tokens[rank * n // world:(rank + 1) * n // world])
        self.batch, self.ctx = batch, ctx
        self.gen = torch.Generator().manual_seed(seed + rank)
        self.offsets = torch.arange(ctx + 1)

    def next(self):
        starts = torch.randint(0, len(self.tokens) - self.ctx, (self.batch,), generator=self.gen)
        w = self.tokens[starts.unsqueeze(1) + self.offsets]
        return w[:, :-1], w[:, 1:]


def validation_loss(model, path, ctx, max_windows, rank, world):
    """Mean loss per token over dtrain's fixed windows: all = (n - 1) // ctx, used = min(all, max),
    window i starts at (i * all // used) * ctx; rank r takes i = r, r + world, ..."""
    tokens = torch.from_numpy(read_tokens(path)[0])
    all_windows = (len(tokens) - 1) // ctx
    used = min(all_windows, max_windows) if max_windows > 0 else all_windows
    starts = torch.tensor([(i * all_windows // used) * ctx for i in range(rank, used, world)], dtype=torch.int64)
    sums = torch.zeros(2, dtype=torch.float64)
    offsets = torch.arange(ctx + 1)
    with torch.no_grad():
        for chunk in starts.split(16):
            w = tokens[chunk.unsqueeze(1) + offsets]
            logits = model(w[:, :-1])
            sums[0] += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                       reduction="sum").double()
            sums[1] += w[:, 1:].numel()
    dist.all_reduce(sums)
    return (sums[0] / sums[1]).item(), int(sums[1].item())


# ---- training --------------------------------------------------------------------------------

def make_optimizer(name, model):
    """mlp, cnn: Adam lr 1e-3. gpt: AdamW lr 3e-3, betas (0.9, 0.95), weight decay 0.1 on Linear
    weights only (dtrain leaves biases, LayerNorms and embeddings out of the decay), clipping 1.0."""
    if name != "gpt":
        return torch.optim.Adam(model.parameters(), lr=1e-3), 1e-3, 0.0
    decay = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    return opt, 3e-3, 1.0


def learning_rate(base, warmup, total, step):
    """optim/schedule.cpp's cosine with linear warm-up from 0 (0-based step), to min_lr 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * t))


def world_from_env():
    env = os.environ
    rank = int(env.get("OMPI_COMM_WORLD_RANK", env.get("RANK", "0")))
    world = int(env.get("OMPI_COMM_WORLD_SIZE", env.get("WORLD_SIZE", "1")))
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    return rank, world


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    rank, world = world_from_env()
    torch.manual_seed(a.seed)  # every rank starts from the same weights (DDP broadcasts rank 0's too)
    gpt = a.model == "gpt"
    batch = a.batch or (16 if gpt else 64)
    ctx = 128
    model = {"mlp": build_mlp, "cnn": build_cnn, "gpt": GPT}[a.model]()
    data_path = a.data or ("data/kjv-train.h5" if gpt else "data/fmnist-train.h5")
    data = (TokenBatches(data_path, rank, world, batch, ctx, a.seed) if gpt
            else ImageBatches(data_path, rank, world, batch, a.seed, a.model == "cnn"))
    ddp = DDP(model)
    opt, base_lr, clip = make_optimizer(a.model, model)
    total = a.learning if a.learning else a.warmup + a.steps
    first_timed = 0 if a.learning else a.warmup
    curve = open(a.curve, "w") if (a.curve and rank == 0) else None
    window_loss, window_steps = 0.0, 0
    t0 = time.perf_counter()
    for step in range(total):
        if step == first_timed:
            dist.barrier()
            t0 = time.perf_counter()
        x, y = data.next()
        lr = learning_rate(base_lr, a.lr_warmup, total, step) if gpt else base_lr
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        logits = ddp(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if a.learning:  # the training loss per log window averaged over ranks, as dtrain's metrics.jsonl
            window_loss, window_steps = window_loss + loss.item(), window_steps + 1
            if (step + 1) % a.log_every == 0 or step + 1 == total:
                mean = torch.tensor([window_loss / window_steps])
                dist.all_reduce(mean)
                if curve:
                    curve.write(json.dumps({"step": step + 1, "loss": mean.item() / world, "lr": lr,
                                            "time_s": time.perf_counter() - t0}) + "\n")
                window_loss, window_steps = 0.0, 0
    dist.barrier()
    seconds = time.perf_counter() - t0
    timed = total - first_timed
    per_step = batch * world * (ctx if gpt else 1)
    out = {"impl": "pytorch", "model": a.model, "ranks": world, "threads": a.threads, "batch": batch,
           "warmup_steps": first_timed, "timed_steps": timed, "seconds": round(seconds, 4),
           "rate": round(timed * per_step / seconds, 2), "unit": "tokens" if gpt else "samples",
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "data": data.source}
    if a.learning:
        val, tokens = validation_loss(model, a.val, ctx, a.eval_windows, rank, world)
        out.update({"val_loss": round(val, 5), "val_tokens": tokens, "train_s": round(seconds, 2)})
    if curve:
        curve.close()
    if rank == 0:
        print(json.dumps(out, separators=(",", ":")), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
