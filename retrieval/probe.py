"""`fsbir probe`: does the text steer what the sketch finds?

- colour swap: each item's own sketch with "a {colour} {category}" for the gallery's most common
  colours; the share of the top-k in the asked colour (against the share of the gallery in it), of
  the sketched item's type, and of both at once, with the ceiling of that last share: a gallery
  holds only so many items of one type in one colour, and no ranking can show more;
- text colour: the same "a {colour} {category}" texts alone, no sketch: the share of the top-k in the
  asked colour and of the named type. It bounds the swap: what the words alone cannot find, the words
  cannot steer the sketch to;
- caption ablation: the sketch alone against the sketch + "a {category}", by type precision;
- brand words: the sketch + the caption's first word (the brand, in Myntra captions) against the
  sketch alone, by the share of the top-k from that brand.

With `catalog_attributes`, the gallery's colour and type blocks are the catalog's own (the two
columns), as `fsbir index` writes them when given the columns: the shares then measure the search
following the catalog, not what the model read from pixels.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from fsbir import FsbirError

from .checkpoint import model_from_checkpoint
from .configs import ProbeConfig
from .data import check_option_columns
from .evaluate import embed_split, fuse, pick_device, use_catalog_attributes
from .metrics import top_k


def _share(best: np.ndarray, labels: np.ndarray, wanted: np.ndarray) -> float:
    """Mean share of each query's top-k whose label equals that query's wanted label."""
    return float((labels[best] == wanted[:, None]).mean())


@torch.no_grad()
def run_probe(cfg: ProbeConfig) -> dict:
    device = pick_device(cfg.device)
    check_option_columns(cfg.shards, {"--colour-column": cfg.colour_column, "--category-column": cfg.category_column})
    model, pp, tokenizer, _ = model_from_checkpoint(cfg.checkpoint, device)
    emb = embed_split(model, cfg.shards, cfg.split, pp, tokenizer, 128, cfg.category_column, device,
                      colour_column=cfg.colour_column)
    taken = (use_catalog_attributes(model, emb, cfg.colour_column, cfg.category_column, cfg.catalog_weights)
             if cfg.catalog_attributes else None)
    gallery = emb["photo"].numpy()
    types = np.array([str(c) for c in emb["category"]], dtype=object)
    colours = np.array([str(c) for c in emb["colour"]], dtype=object)
    if all(c == "None" for c in colours):
        raise FsbirError(f"no values in the colour column {cfg.colour_column!r} for the {cfg.split} split")

    def encode(texts: list[str]) -> torch.Tensor:
        return torch.cat([model.encode_text(tokenizer(texts[i:i + 256]).to(device), texts[i:i + 256]).float().cpu()
                          for i in range(0, len(texts), 256)])

    def top(sketch: torch.Tensor, text: torch.Tensor | None) -> np.ndarray:
        return top_k(fuse(model, sketch, text).numpy() @ gallery.T, cfg.k)

    sketches = emb["sketch"]
    asked = [c for c, _ in Counter(colours).most_common(cfg.colours)]
    pairs = Counter(zip(types, colours))
    colour_hits, type_hits, both_hits, base, both_base, both_ceiling = [], [], [], [], [], []
    text_colour_hits, text_type_hits = [], []
    for colour in asked:
        texts = encode([cfg.template.format(colour=colour.lower(), category=t.lower()) for t in types])
        best, best_text = top(sketches, texts), top(None, texts)
        in_colour, of_type = colours[best] == colour, types[best] == types[:, None]
        colour_hits.append(float(in_colour.mean()))
        type_hits.append(float(of_type.mean()))
        text_colour_hits.append(float((colours[best_text] == colour).mean()))
        text_type_hits.append(float((types[best_text] == types[:, None]).mean()))
        both_hits.append(float((in_colour & of_type).mean()))
        base.append(float((colours == colour).mean()))
        both_count = np.array([pairs[t, colour] for t in types])
        both_base.append(float(both_count.mean() / len(types)))
        both_ceiling.append(float(np.minimum(both_count, cfg.k).mean() / cfg.k))
    type_base = float(np.mean([(types == t).mean() for t in types]))
    sketch_only = top(sketches, None)
    with_category = top(sketches, encode([f"a {t.lower()}" for t in types]))
    brands = np.array([(c or "").split()[0] if (c or "").split() else "" for c in emb["caption"]], dtype=object)
    with_brand = top(sketches, encode([b or "a" for b in brands]))
    return {
        "gallery_size": len(gallery), "queries": len(types), "k": cfg.k, "split": cfg.split,
        **({"catalog_attributes": taken} if taken is not None else {}),
        "colour_swap": {"colours": asked, "template": cfg.template,
                        f"colour_P@{cfg.k}": float(np.mean(colour_hits)), "colour_base_rate": float(np.mean(base)),
                        f"type_P@{cfg.k}": float(np.mean(type_hits)), "type_base_rate": type_base,
                        f"type+colour_P@{cfg.k}": float(np.mean(both_hits)),
                        "type+colour_base_rate": float(np.mean(both_base)),
                        "type+colour_ceiling": float(np.mean(both_ceiling))},
        "text_colour": {f"colour_P@{cfg.k}": float(np.mean(text_colour_hits)), "colour_base_rate": float(np.mean(base)),
                        f"type_P@{cfg.k}": float(np.mean(text_type_hits)), "type_base_rate": type_base},
        "caption_ablation": {f"type_P@{cfg.k}_sketch": _share(sketch_only, types, types),
                             f"type_P@{cfg.k}_sketch+category": _share(with_category, types, types),
                             "type_base_rate": type_base},
        "brand_words": {f"brand_P@{cfg.k}_sketch": _share(sketch_only, brands, brands),
                        f"brand_P@{cfg.k}_sketch+brand": _share(with_brand, brands, brands),
                        "brand_base_rate": float(np.mean([(brands == b).mean() for b in brands]))},
    }
