"""Training throughput of `fsbir train` (shards streamed, decoded, augmented, tokenised) against a
bare open_clip training loop on in-memory tensors (same config, batch size and loss), plus eval
queries/s.

    python bench/train_throughput.py SHARDS [--model fsbir-tiny] [--batch-size 64] [--steps 30]
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


def bare_loop(model_name: str, batch: int, steps: int, warmup: int, device: str) -> float:
    """samples/s of the plainest loop: the open_clip model, tensors already in memory."""
    torch.manual_seed(0)
    model, pp, tok = create_model(ModelSpec(model=model_name), device)
    clip = model.clip
    opt = torch.optim.AdamW(clip.parameters(), lr=1e-4)
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


def fsbir_train(shards: str, model_name: str, batch: int, steps: int, warmup: int, workers: int, device: str) -> float:
    """samples/s of retrieval.training.train (what `fsbir train` runs), between optimizer steps
    warmup and warmup+steps (start-up, first batches and validation excluded)."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(shards=shards, out=out, model=model_name, batch_size=batch, epochs=1000,
                          max_steps=warmup + steps, workers=workers, device=device)
        train(cfg, on_step=lambda r: stamps.append(time.perf_counter()))
    return steps * batch / (stamps[-1] - stamps[warmup - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards")
    ap.add_argument("--model", default="fsbir-tiny")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    bare = bare_loop(args.model, args.batch_size, args.steps, args.warmup, args.device)
    table = Table(title=f"training throughput — {args.model}, batch {args.batch_size}, {args.steps} timed steps, {args.device}")
    for c in ("run", "samples/s", "× bare"):
        table.add_column(c, justify="right" if c != "run" else "left")
    table.add_row("bare open_clip loop (in-memory tensors)", f"{bare:.1f}", "1.00")
    for w in args.workers:
        rate = fsbir_train(args.shards, args.model, args.batch_size, args.steps, args.warmup, w, args.device)
        table.add_row(f"fsbir train (shards, DataLoader workers={w})", f"{rate:.1f}", f"{rate / bare:.2f}")
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
