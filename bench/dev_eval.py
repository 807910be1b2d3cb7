"""One row of the before/after table for a trained run: in-domain R@1/R@10 per mode on a held-out
split, the same on a second catalog, Quick, Draw! category P@10 (with chance) for the doodle alone,
the words "a {word}" alone and both, and fine-grained shoe acc@1/acc@10, each through `fsbir eval`
(its JSON kept beside the run).

    python bench/dev_eval.py RUN --test-shards runs/myntra-2900 --dev-shards runs/myntra-dev-shards \
        --quickdraw ../shared/data/human-sketches/quickdraw --shoe-shards runs/shoes-shards \
        --shoe-pairs ../shared/data/human-sketches/shoes/pairs.csv \
        [--wide-shards runs/myntra-train-shards]

--catalog-attributes: the galleries' colour and type from the catalog's columns (not the shoes':
their shards have no such columns).

--wide-shards: a second gallery for the doodles, its test split: products the run never trained
on, from a catalog that holds more of the Quick, Draw! categories (myntra-train's test split has 17
of the 19; myntra-dev lacks 7, whose doodles score 0 there by construction, and has 1–5 items of
several more, which caps P@10).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from fsbir.retrieval.evaluate import EvalConfig, run_eval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--test-shards", required=True)
    ap.add_argument("--dev-shards", required=True)
    ap.add_argument("--quickdraw", required=True, help="Quick, Draw! folder with categories.json")
    ap.add_argument("--shoe-shards", required=True)
    ap.add_argument("--shoe-pairs", required=True)
    ap.add_argument("--wide-shards", help="shards of a larger catalog: its test split is a second doodle gallery")
    ap.add_argument("--category-column", default="articleType")
    ap.add_argument("--colour-column", default="baseColour")
    ap.add_argument("--catalog-attributes", action="store_true",
                    help="score the galleries as `fsbir index --colour-column --category-column` indexes them "
                         "(the JSON files then end in .attrs.json)")
    args = ap.parse_args()
    run = Path(args.run)
    common = dict(checkpoint=str(run), category_column=args.category_column)
    if args.catalog_attributes:
        common.update(colour_column=args.colour_column, catalog_attributes=True)
    suffix = ".attrs.json" if args.catalog_attributes else ".json"
    evals = {
        "test": EvalConfig(shards=args.test_shards, split="test", **common),
        "dev": EvalConfig(shards=args.dev_shards, split="all", **common),
        "quickdraw": EvalConfig(shards=args.dev_shards, split="all", queries=args.quickdraw, query_text="a {word}",
                                category_map=str(Path(args.quickdraw) / "categories.json"), **common),
        "shoes": EvalConfig(shards=args.shoe_shards, split="all", checkpoint=str(run), queries=args.shoe_pairs),
    }
    if args.wide_shards:
        evals["quickdraw-wide"] = replace(evals["quickdraw"], shards=args.wide_shards, split="test")
    results = {}
    for name, cfg in evals.items():
        results[name] = run_eval(cfg)
        (run.parent / f"{run.name}.{name}{suffix}").write_text(json.dumps(results[name], indent=1))
    cells = {"run": run.name}
    for name in ("test", "dev"):
        for mode, m in results[name]["modes"].items():
            cells[f"{name} {mode} R@1/R@10"] = f"{m['R@1']:.3f} / {m['R@10']:.3f}"
    for name in ("quickdraw", "quickdraw-wide"):
        if name in results:
            for mode, qd in results[name]["modes"].items():  # the doodle, "a {word}", both
                cells[f"{name} {mode} P@10 (chance)"] = f"{qd['P@10_category']:.3f} ({qd['category_chance']:.3f})"
            present = [c for c in results[name]["by_category"]["sketch"].values() if c["chance"] > 0]
            n = sum(c["queries"] for c in present)
            cells[f"{name} P@10 where the category is in the gallery (chance)"] = (
                f"{sum(c['P@10'] * c['queries'] for c in present) / n:.3f} "
                f"({sum(c['chance'] * c['queries'] for c in present) / n:.3f}), {len(present)} categories")
    shoes = results["shoes"]["modes"]["sketch"]
    cells["shoes acc@1/acc@10"] = f"{shoes['R@1']:.3f} / {shoes['R@10']:.3f}"
    width = max(map(len, cells))
    for key, value in cells.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
