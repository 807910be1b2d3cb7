"""Training throughput of `fsbir train` (shards streamed, decoded, augmented, tokenised) against a
bare open_clip training loop on in-memory tensors (same config, same frozen parts, batch size and
loss), plus eval queries/s. With --freeze towers, fsbir caches the locked towers' features once
(reported as its own row) and steps run on the cache; the bare loop runs the towers every step.

    python bench/train_throughput.py SHARDS [--model fsbir-tiny] [--freeze none|towers] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from fsbir.retrieval.evaluate import catalog_metrics, embed_split 
from fsbir.retrieval.factory import ModelSpec, create_model 
from fsbir.retrieval.loss import info_nce 
from fsbir.retrieval.training import TrainConfig, train 


def bare_loop(model_name: str, batch: int, steps: int, warmup: int, device: str, freeze: str) -> float:
    """samples/s of the plainest loop: the open_clip model, tensors already in memory."""
    torch.manual_seed(0)
    model, pp, tok = create_model(ModelSpec(model=model_name), device)
    if freeze == "towers":
        model.lock_pretrained_towers()
    clip = model.clip
    opt = torch.optim.AdamW([p for p in clip.parameters() if p.requires_grad], lr=1e-4)
    images = torch.randn(batch, 3, pp.image_size, pp.image_size, device=device)
    sketches = torch.randn(batch, 3, pp.image_size, pp.image_size, device=device)
    tokens = tok([f"a white shirt {i}" for i in range(batch)]).to(device)
    for i in range(warmup + steps):
        if i == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        both = torch.nn.functional.normalize(clip.encode_image(torch.cat([images, sketches])), dim=-1)
        text = torch.nn.functional.normalize(clip.encode_text(tokens), dim=-1)
        query = torch.nn.functional.normalize(both[batch:] + text, dim=-1)
        loss = info_nce(query, both[:batch], clip.logit_scale)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def fsbir_train(shards: str, model_name: str, batch: int, steps: int, warmup: int, workers: int, device: str,
                freeze: str) -> tuple[float, float, int]:
    """(samples/s of retrieval.training.train (what `fsbir train` runs) between optimizer steps
    warmup and warmup+steps, seconds spent caching locked-tower features, rows cached)."""
    stamps: list[float] = []
    cached: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(shards=shards, out=out, model=model_name, batch_size=batch, epochs=1000, freeze=freeze,
                          max_steps=warmup + steps, workers=workers, device=device)
        start = time.perf_counter()
        train(cfg, on_step=lambda r: stamps.append(time.perf_counter()),
              on_features=lambda n, total: cached.append(n))
    cache_seconds = (stamps[0] - start) if cached else 0.0
    return steps * batch / (stamps[-1] - stamps[warmup - 1]), cache_seconds, sum(cached)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards")
    ap.add_argument("--model", default="fsbir-tiny")
    ap.add_argument("--freeze", default="none", choices=["none", "towers"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    bare = bare_loop(args.model, args.batch_size, args.steps, args.warmup, args.device, args.freeze)
    table = Table(title=f"training throughput — {args.model}, freeze {args.freeze}, batch {args.batch_size}, "
                        f"{args.steps} timed steps, {args.device}")
    for c in ("run", "samples/s", "× bare"):
        table.add_column(c, justify="right" if c != "run" else "left")
    table.add_row("bare open_clip loop (in-memory tensors)", f"{bare:.1f}", "1.00")
    for w in args.workers:
        rate, cache_seconds, rows = fsbir_train(args.shards, args.model, args.batch_size, args.steps, args.warmup, w,
                                                args.device, args.freeze)
        table.add_row(f"fsbir train (shards, DataLoader workers={w})", f"{rate:.1f}", f"{rate / bare:.2f}")
        if rows:
            table.add_row(f"  its one-time feature cache: {rows} rows in {cache_seconds:.0f} s", f"{rows / cache_seconds:.1f}", "")
    model, pp, tok = create_model(ModelSpec(model=args.model), args.device)
    t0 = time.perf_counter()
    emb = embed_split(model, args.shards, "all", pp, tok, 128, None, args.device)
    t1 = time.perf_counter()
    catalog_metrics(model, emb, 10)
    t2 = time.perf_counter()
    n = len(emb["product_id"])
    table.add_row(f"eval: embed {n} products (photo+sketch+text)", f"{n / (t1 - t0):.1f} items/s", "")
    table.add_row(f"eval: {3 * n} queries ranked against {n}", f"{3 * n / (t2 - t1):.0f} queries/s", "")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
