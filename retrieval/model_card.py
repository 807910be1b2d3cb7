"""RUN/MODEL_CARD.md: what a trained run is, written beside its checkpoints when training ends, so a
run folder handed to someone else says what it was built from, on what, with what budget, how good it
is on its own test split, and where it is known to fail."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from fsbir import __version__
from fsbir.shardformat import count_ok_rows

from .configs import EvalConfig
from .factory import FSBIR_SECTION, ModelLoadError, model_config

KNOWN_LIMITS = [
    "Trained on edge-map sketches of the catalog's own photos. Edge-map queries of the gallery's own photos "
    "flatter a model several times over: people's drawings score far lower than the test split below.",
    "People's doodles of garments photographed worn by a model score near or below chance: the edge map the "
    "model learned from is a whole person, a doodle is the item's outline (docs/experiments.md).",
    "A drawing carries no colour and no category block: both come from the words. A colour the words name "
    "adds colour_weight × the agreement of the words' and the photo's colour distributions to every photo's "
    "score, and the category they name category_head_weight × the same for categories, so items of the asked "
    "colour but another type compete with items of the asked type in another colour: more colour weight, "
    "more of the asked colour and less of the asked type (`fsbir probe` measures both on this run).",
    "The category head knows the categories of the training split only: words that name another kind of "
    "item are read as the nearest category it knows.",
    "The colour head reads a photo's colour from its pixels and misses near colours (navy as black, black as "
    "brown): where the catalog lists colours and types, `fsbir index --colour-column --category-column` "
    "indexes the catalog's instead of the heads' guesses, and weighs them more than a guess: "
    "words that name a colour then find more of it, and their other results share the type less often.",
]


def base_weights(model: str, pretrained: str | None) -> list[str]:
    """What a model's weights started from, with licences, from its config's `fsbir.weights`."""
    if pretrained and pretrained != "none":
        return [f"open_clip weights `{pretrained}` for `{model}`: see open_clip's pretrained model list for their "
                "data and licence"]
    try:
        _, cfg = model_config(model)
    except ModelLoadError:
        return ["unknown: the model config could not be read"]
    return list(cfg.get(FSBIR_SECTION, {}).get("weights") or ["not stated in the model config"])


def _catalog(shards: str) -> str:
    manifest = Path(shards) / "manifest.json"
    if not manifest.is_file():
        return "unknown (no manifest.json)"
    config = json.loads(manifest.read_text()).get("config", {})
    catalog = config.get("catalog")
    return str(catalog.get("source") if isinstance(catalog, dict) else catalog)


def _metrics_table(result: dict) -> list[str]:
    k = result["k"]
    cols = ["R@1", "R@5", f"R@{k}", "MRR", "median_rank", f"P@{k}_category"]
    cols = list(dict.fromkeys(c for c in cols if any(c in m for m in result["modes"].values())))
    lines = ["| mode | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|---|" + "--:|" * len(cols)]
    for mode, m in result["modes"].items():
        lines.append(f"| {mode} | " + " | ".join(f"{m[c]:.3f}" if c in m else "-" for c in cols) + " |")
    return lines


def write_model_card(cfg, record: dict, seconds: float, device: str) -> Path:
    """Evaluate the run's best checkpoint on its shards' test split (when there is one) and write
    RUN/MODEL_CARD.md; returns its path."""
    from fsbir.shardformat import atomic_path

    from .evaluate import run_eval

    out = Path(cfg.out)
    spec = cfg.spec()
    counts = {split: count_ok_rows(cfg.shards, split) for split in ("train", "val", "test")}
    lines = [f"# Model card: {out.name}", "",
             f"Trained by fsbir {__version__} with `fsbir train` (settings in `config.json`; checkpoints in "
             "`checkpoints/`, `best.pt` chosen on the val split).", "",
             "## Model", "",
             f"- config: `{spec.model}`, fusion `{spec.fusion}`"
             + (f" (queries fused by `{spec.query_fusion}`)" if spec.query_fusion else "")
             + f", sketch tower `{spec.sketch_tower}`",
             f"- colour head: weight {cfg.colour_weight}" if cfg.colour_weight else "- colour head: none",
             (f"- category head: the `{cfg.category_column}` column, weight {cfg.category_head_weight}"
              if cfg.category_head else "- category head: none (it needs --category-column)"),
             "- pretrained towers: " + ("locked (only their projections, the fusion and the temperature trained)"
                                        if cfg.freeze_on(device) else "fine-tuned"), "",
             "## Base weights and licences", ""]
    lines += [f"- {w}" for w in base_weights(spec.model, spec.pretrained)]
    lines += ["", "## Data", "",
              f"- shards: `{cfg.shards}` (catalog: `{_catalog(cfg.shards)}`)",
              f"- ok products: {counts['train']} train, {counts['val']} val, {counts['test']} test "
              "(split by a hash of the product id)", "",
              "## Training budget", "",
              f"- {record.get('epoch', 0)} epochs, {record.get('step', 0)} steps, batch {cfg.batch_size}, "
              f"lr {cfg.lr}, seed {cfg.seed}",
              f"- {seconds / 60:.1f} min wall time on {device} ({platform.machine()}, {os.cpu_count()} CPU cores)", "",
              "## Evaluation on the run's own test split", ""]
    if counts["test"]:
        result = run_eval(EvalConfig(shards=cfg.shards, checkpoint=str(out), split="test", k=cfg.eval_k,
                                     category_column=cfg.category_column, device=device))
        lines += [f"Each of the {result['queries']} test products queries a gallery of all {result['gallery_size']} "
                  "test photos with its own edge-map sketch and caption; its one relevant item is its own photo "
                  f"(a random ranking scores R@{result['k']} = {min(1.0, result['k'] / result['gallery_size']):.3f}).", ""]
        lines += _metrics_table(result)
    else:
        lines += ["No test split in these shards: nothing was evaluated."]
    lines += ["", "## Known limits", ""] + [f"- {limit}" for limit in KNOWN_LIMITS] + [""]
    path = out / "MODEL_CARD.md"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    return path
