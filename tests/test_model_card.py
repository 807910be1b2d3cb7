"""RUN/MODEL_CARD.md: written when training ends, with base weights and licences, data, budget and
the run's own test-split numbers (the same as `fsbir eval` of the run)."""
import re

import pytest

from fsbir.retrieval.evaluate import EvalConfig, run_eval
from fsbir.retrieval.model_card import base_weights
from fsbir.retrieval.training import TrainConfig, train


def test_a_finished_run_has_a_model_card_with_its_test_numbers(demo_run, demo_shards):
    card = (demo_run / "MODEL_CARD.md").read_text()
    for heading in ("## Base weights and licences", "## Data", "## Training budget",
                    "## Evaluation on the run's own test split", "## Known limits"):
        assert heading in card
    assert "fsbir-tiny" in card and "trained from scratch" in card
    assert re.search(r"1 epochs, \d+ steps, batch 8", card)
    result = run_eval(EvalConfig(shards=str(demo_shards), checkpoint=str(demo_run), split="test"))
    for mode, m in result["modes"].items():  # the card's table row is `fsbir eval`'s numbers
        assert f"| {mode} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['R@10']:.3f} | {m['MRR']:.3f} |" in card
    assert f"gallery of all {result['gallery_size']} test photos" in card


def test_an_interrupted_run_writes_no_card_until_it_finishes(demo_shards, tmp_path):
    cfg = dict(shards=str(demo_shards), out=str(tmp_path / "r"), model="fsbir-tiny", batch_size=8, workers=0,
               warmup_steps=2, epochs=2)
    train(TrainConfig(**cfg, max_steps=1))  # stopped one step into the first epoch
    assert (tmp_path / "r" / "checkpoints" / "last.pt").exists() and not (tmp_path / "r" / "MODEL_CARD.md").exists()
    record = train(TrainConfig(**cfg), resume=True)
    assert record["epoch"] == 2 and "2 epochs" in (tmp_path / "r" / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("model, pretrained, expected", [
    ("fsbir-effnet-lite0-minilm", None, ["EfficientNet-Lite0", "Apache-2.0", "all-MiniLM-L6-v2"]),
    ("fsbir-tiny", "none", ["from scratch"]),
    ("ViT-B-32", "laion2b_s34b_b79k", ["laion2b_s34b_b79k", "open_clip"]),
])
def test_base_weights_name_their_source_and_licence(model, pretrained, expected):
    text = " ".join(base_weights(model, pretrained))
    assert all(word in text for word in expected)
