"""`fsbir eval`: Recall@K, MRR and median rank for sketch, text and sketch+text queries,
on the catalog's own edge-map sketches or on human drawings."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fsbir import FsbirError
from fsbir.shardformat import atomic_write_json
from fsbir.sketchgen import SketchgenError, decode_sketch
from fsbir.sketchgen.strokes import render_strokes

from .data import LoaderConfig, check_option_columns, make_loader
from .configs import CatalogWeights, EvalConfig, ModelSpec
from .factory import Preprocess
from .metrics import category_chance, category_precision_at_k, ranks_of_targets, summarize_ranks
from .transforms import sketch_tensor

MODES = ("sketch", "text", "sketch+text")


def pick_device(device: str) -> str:
    """`auto` → cuda when available, else cpu; a device that is not there is a one-line error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise FsbirError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise FsbirError(f"device {device!r} is not available on this machine; use --device cpu or auto")
    return device


@torch.no_grad()
def embed_split(model, shards: str, split: str, pp: Preprocess, tokenizer: Callable, batch_size: int = 128,
                category_column: str | None = None, device: str = "cpu", workers: int = 0,
                on_batch: Callable[[int], None] | None = None, colour_column: str | None = None) -> dict:
    """Photo, sketch and text embeddings of the `ok` rows of a split, one row per product, with
    their category and colour columns' values."""
    extra = tuple(c for c in (category_column, colour_column) if c)
    cfg = LoaderConfig(batch_size=batch_size, split=split, workers=workers, drop_last=False, extra_columns=extra)
    loader, _ = make_loader(shards, cfg, pp, tokenizer, shuffle=False)
    out: dict[str, list] = {"photo": [], "sketch": [], "text": [], "product_id": [], "caption": [], "category": [],
                            "colour": []}
    seen: set[str] = set()
    model.eval()
    for batch in loader:
        keep = [i for i, p in enumerate(batch["product_id"]) if p not in seen]
        seen.update(batch["product_id"])
        idx = torch.tensor(keep)
        out["photo"].append(model.encode_image(batch["images"][idx].to(device)).float().cpu())
        out["sketch"].append(model.encode_sketch(batch["sketches"][idx].to(device)).float().cpu())
        out["text"].append(model.encode_text(batch["tokens"][idx].to(device), [batch["texts"][i] for i in keep]).float().cpu())
        out["product_id"] += [batch["product_id"][i] for i in keep]
        out["caption"] += [batch["caption"][i] for i in keep]
        for key, column in (("category", category_column), ("colour", colour_column)):
            out[key] += [batch[column][i] for i in keep] if column else [None] * len(keep)
        if on_batch:
            on_batch(len(keep))
    if not out["product_id"]:
        raise FsbirError(f"no ok rows in split {split!r} of {shards}")
    for key in ("photo", "sketch", "text"):
        out[key] = torch.cat(out[key])
    return out


def use_catalog_attributes(model, emb: dict, colour_column: str | None, category_column: str | None,
                           weights: CatalogWeights) -> dict[str, int]:
    """The gallery photos' head blocks from the catalog's columns, as `fsbir index` writes them
    when given the columns (`FsbirModel.with_catalog_attributes`); how many rows took each."""
    emb["photo"], taken = model.with_catalog_attributes(emb["photo"], emb["colour"] if colour_column else None,
                                                        emb["category"] if category_column else None, weights)
    return taken


@torch.no_grad()
def fuse(model, sketch: torch.Tensor | None, text: torch.Tensor | None,
         has_sketch: torch.Tensor | None = None, has_text: torch.Tensor | None = None) -> torch.Tensor:
    """The model's fused query (its query fusion, and the words' colour block), in eval mode; the
    masks say which rows lack a modality."""
    model.query_fusion.eval()
    dev = next(model.parameters()).device
    s = sketch.to(dev) if sketch is not None else None
    t = text.to(dev) if text is not None else None
    masks = [m.to(dev) if m is not None else None for m in (has_sketch, has_text)]
    return model.fuse_queries(s, t, *masks).float().cpu()


def catalog_metrics(model, emb: dict, k: int) -> dict:
    """Each product's own (sketch, caption) queries the gallery of all products' photos."""
    gallery = emb["photo"].numpy()
    targets = np.arange(len(gallery))
    queries = {
        "sketch": fuse(model, emb["sketch"], None),
        "text": fuse(model, None, emb["text"]),
        "sketch+text": fuse(model, emb["sketch"], emb["text"]),
    }
    modes = {}
    has_category = any(c is not None for c in emb["category"])
    for mode, q in queries.items():
        sim = q.numpy() @ gallery.T
        modes[mode] = summarize_ranks(ranks_of_targets(sim, targets), k)
        if has_category:
            cats = [{c} for c in emb["category"]]
            modes[mode][f"P@{k}_category"] = category_precision_at_k(sim, cats, emb["category"], k)
            modes[mode]["category_chance"] = category_chance(cats, emb["category"])
    return {"gallery_size": len(gallery), "queries": len(gallery), "k": k, "modes": modes}


def load_human_queries(path: str, pp: Preprocess, query_text: str | None,
                       category_map: dict[str, list[str]] | None) -> dict:
    """Human drawings → sketch tensors plus what each must retrieve: a product id (fine-grained)
    or a set of accepted gallery categories. CSV (sketch + product_id|category [+ text]) or
    Quick, Draw! .ndjson (file or folder; category = the drawing's word). In `query_text`,
    {word} stands for a Quick, Draw! drawing's word."""
    p = Path(path)
    if not p.exists():
        raise FsbirError(f"no queries at {path}")
    sketches, product_ids, categories, texts = [], [], [], []
    if p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if "sketch" not in (reader.fieldnames or []) or not {"product_id", "category"} & set(reader.fieldnames):
                raise FsbirError(f"{path}: a queries CSV needs a sketch column and a product_id or category "
                                 f"column; it has {', '.join(reader.fieldnames or [])}")
            for line, row in enumerate(reader, start=2):
                sketches.append(sketch_tensor(_read_query_sketch(p.parent, row["sketch"], f"{p.name}:{line}"), pp))
                product_ids.append(row.get("product_id"))
                categories.append(row.get("category"))
                texts.append(row.get("text") or query_text)
    else:
        files = sorted(p.glob("*.ndjson")) if p.is_dir() else [p]
        stroke_width = max(1, round(2 * 256 / pp.image_size))
        for f in files:
            for number, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    drawing, word = d["drawing"], d["word"]
                except (json.JSONDecodeError, TypeError, KeyError):
                    raise FsbirError(f"{f.name}:{number} is not a Quick, Draw! record "
                                     "(a JSON object with 'word' and 'drawing')") from None
                sketches.append(sketch_tensor(render_strokes(drawing, 256, stroke_width), pp))
                product_ids.append(None)
                categories.append(word)
                texts.append(query_text.replace("{word}", word) if query_text else None)
    if not sketches:
        raise FsbirError(f"no queries found in {path}")
    accepted = [None if c is None else set((category_map or {}).get(c, [c])) for c in categories]
    return {"sketches": torch.stack(sketches), "product_id": product_ids, "category": categories,
            "accepted": accepted, "text": texts}


def _read_query_sketch(root: Path, ref: str, where: str):
    """A drawing named in a queries CSV, confined to the CSV's folder, decoded like every sketch."""
    base = root.resolve()
    path = (base / ref).resolve()
    if not path.is_relative_to(base):
        raise FsbirError(f"{where}: sketch path {ref!r} leaves the queries folder {base}")
    if not path.is_file():
        raise FsbirError(f"{where}: no sketch file at {ref!r}")
    try:
        return decode_sketch(path.read_bytes())
    except SketchgenError as exc:
        raise FsbirError(f"{where}: sketch {ref!r}: {exc.reason}: {exc}") from None


@torch.no_grad()
def human_query_metrics(model, emb: dict, queries: dict, tokenizer: Callable, k: int, device: str) -> dict:
    gallery = emb["photo"].numpy()
    s = torch.cat([model.encode_sketch(chunk.to(device)).float().cpu() for chunk in queries["sketches"].split(128)])
    query_sets = {"sketch": fuse(model, s, None)}
    if all(t for t in queries["text"]):  # the words alone beside the drawing: does drawing add to them?
        t = model.encode_text(tokenizer(queries["text"]).to(device), queries["text"]).float().cpu()
        query_sets["text"] = fuse(model, None, t)
        query_sets["sketch+text"] = fuse(model, s, t)
    index = {pid: i for i, pid in enumerate(emb["product_id"])}
    product_rows = [i for i, pid in enumerate(queries["product_id"]) if pid is not None]
    category_rows = [i for i, pid in enumerate(queries["product_id"]) if pid is None]
    missing = [queries["product_id"][i] for i in product_rows if queries["product_id"][i] not in index]
    if missing:
        raise FsbirError(f"{len(missing)} query product ids are not in the gallery (e.g. {missing[:3]})")
    words = sorted({queries["category"][i] for i in category_rows})
    modes, by_category = {}, {}
    for mode, q in query_sets.items():
        sim = q.numpy() @ gallery.T
        m: dict = {}
        if product_rows:
            targets = np.array([index[queries["product_id"][i]] for i in product_rows])
            m.update(summarize_ranks(ranks_of_targets(sim[product_rows], targets), k))
        if category_rows:
            accepted = [queries["accepted"][i] for i in category_rows]
            m[f"P@{k}_category"] = category_precision_at_k(sim[category_rows], accepted, emb["category"], k)
            m["category_chance"] = category_chance(accepted, emb["category"])
            by_category[mode] = {}
            for word in words:  # each drawn category on its own: where the model sees doodles, and where not
                rows = [i for i in category_rows if queries["category"][i] == word]
                acc = [queries["accepted"][i] for i in rows]
                by_category[mode][word] = {
                    f"P@{k}": category_precision_at_k(sim[rows], acc, emb["category"], k),
                    "chance": category_chance(acc, emb["category"]), "queries": len(rows)}
        modes[mode] = m
    result = {"gallery_size": len(gallery), "queries": len(queries["product_id"]), "k": k, "modes": modes}
    if by_category:
        result["by_category"] = by_category
    return result


def run_eval(cfg: EvalConfig, on_batch: Callable[[int], None] | None = None) -> dict:
    from .checkpoint import model_from_checkpoint
    from .factory import create_model

    device = pick_device(cfg.device)
    if cfg.category_map and not cfg.category_column:
        raise FsbirError("--category-map needs --category-column (the gallery column it maps to)")
    if cfg.checkpoint:
        model, pp, tok, _ = model_from_checkpoint(cfg.checkpoint, device)
    else:
        model, pp, tok = create_model(ModelSpec(model=cfg.model, pretrained=cfg.pretrained), device)
    model.eval()
    queries = None
    if cfg.queries:  # read the drawings first: a bad query file fails before the gallery is embedded
        cmap = read_category_map(cfg.category_map) if cfg.category_map else None
        queries = load_human_queries(cfg.queries, pp, cfg.query_text, cmap)
    check_option_columns(cfg.shards, {"--category-column": cfg.category_column, "--colour-column": cfg.colour_column})
    emb = embed_split(model, cfg.shards, cfg.split, pp, tok, cfg.batch_size, cfg.category_column, device,
                      on_batch=on_batch, colour_column=cfg.colour_column)
    taken = (use_catalog_attributes(model, emb, cfg.colour_column, cfg.category_column, cfg.catalog_weights)
             if cfg.catalog_attributes else None)
    if queries is not None:
        result = human_query_metrics(model, emb, queries, tok, cfg.k, device)
    else:
        result = catalog_metrics(model, emb, cfg.k)
    result.update(split=cfg.split, checkpoint=cfg.checkpoint, model=cfg.model if not cfg.checkpoint else None)
    if taken is not None:
        result["catalog_attributes"] = taken
    if cfg.json_path:
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg.json_path, result)
    return result


def read_category_map(path: str) -> dict[str, list[str]]:
    try:
        cmap = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FsbirError(f"cannot read the category map {path}: {exc}") from None
    if not isinstance(cmap, dict) or not all(isinstance(v, list) for v in cmap.values()):
        raise FsbirError(f"{path}: a category map is a JSON object of lists, e.g. {{\"shoe\": [\"Casual Shoes\"]}}")
    return cmap


def by_category_table(result: dict):
    """P@k of each drawn category beside its chance, per query mode (Quick, Draw! style queries)."""
    from rich.table import Table

    k = result["k"]
    per_mode = result["by_category"]
    table = Table(title=f"drawings by category — P@{k} (chance)")
    table.add_column("category", no_wrap=True)
    table.add_column("queries", justify="right")
    for mode in per_mode:
        table.add_column(mode, justify="right")
    for word in next(iter(per_mode.values())):
        first = next(iter(per_mode.values()))[word]
        table.add_row(word, str(first["queries"]), *(f"{per_mode[m][word][f'P@{k}']:.3f} ({per_mode[m][word]['chance']:.3f})"
                                                    for m in per_mode))
    return table


def results_table(result: dict):
    from rich.table import Table

    metrics = list(dict.fromkeys(m for mode in result["modes"].values() for m in mode))
    table = Table(title=f"{result.get('split', '')} split — gallery {result['gallery_size']}, queries {result['queries']}")
    table.add_column("mode", no_wrap=True, min_width=len("sketch+text"))
    short = {"median_rank": "median rank", "category_chance": "chance"}
    for m in metrics:
        table.add_column(short.get(m, m.replace("_category", " cat")), justify="right")
    def cell(values: dict, m: str) -> str:
        if m not in values:
            return "-"
        return f"{values[m]:.1f}" if m == "median_rank" else f"{values[m]:.3f}"

    for mode, values in result["modes"].items():
        table.add_row(mode, *[cell(values, m) for m in metrics])
    return table
