"""`torchrun ... -m fsbir train`: two gloo processes train exactly as one process with the same
global batch, and only rank 0 writes."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DETERMINISTIC = """
model = "fsbir-tiny"
batch_size = 16
category_column = "category"
category_weight = 0.5
workers = 0
shuffle_buffer = 0
query_dropout_sketch = 0.0
query_dropout_text = 0.0
epochs = 2
warmup_steps = 1
[augment]
max_stroke_width = 1
rotate_deg = 0.0
scale = 0.0
translate = 0.0
elastic_alpha = 0.0
stroke_dropout = 0.0
"""


def fsbir(processes: int, *args: str) -> subprocess.CompletedProcess:
    if processes == 1:
        cmd = [sys.executable, "-m", "fsbir", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "fsbir", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "deterministic.toml"
    path.write_text(DETERMINISTIC)
    return path


def test_two_processes_match_one(demo_shards, config, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for processes, out in ((1, one), (2, two)):
        result = fsbir(processes, "train", str(demo_shards), "--out", str(out), "--config", str(config))
        assert result.returncode == 0, result.stderr[-3000:]
    steps_one, steps_two = lines(one / "steps.jsonl"), lines(two / "steps.jsonl")
    assert [s["step"] for s in steps_two] == [s["step"] for s in steps_one] and len(steps_one) == 4
    for a, b in zip(steps_one, steps_two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5), (steps_one, steps_two)
    epochs_one, epochs_two = lines(one / "metrics.jsonl"), lines(two / "metrics.jsonl")
    assert len(epochs_two) == 2  # written once, by rank 0
    assert epochs_two[-1]["val"]["modes"]["sketch+text"]["MRR"] == pytest.approx(
        epochs_one[-1]["val"]["modes"]["sketch+text"]["MRR"], abs=1e-3)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_resume_under_ddp_and_a_changed_world_is_refused(demo_shards, config, tmp_path):
    out = tmp_path / "run"
    first = fsbir(2, "train", str(demo_shards), "--out", str(out), "--config", str(config), "--max-steps", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    refused = fsbir(1, "train", str(demo_shards), "--out", str(out), "--resume")
    assert refused.returncode == 2 and "trained by 2 processes" in refused.stderr
    assert "Traceback" not in refused.stderr
    resumed = fsbir(2, "train", str(demo_shards), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [s["step"] for s in lines(out / "steps.jsonl")] == [1, 2, 3, 4]
    assert len(lines(out / "metrics.jsonl")) == 2


def test_two_processes_train_on_cached_locked_towers(demo_shards, tmp_path):
    """The default model on a CPU: towers locked, each rank caches the features of its own part of
    the rows, the heads train under DDP, rank 0 alone validates and writes."""
    out = tmp_path / "cached"
    result = fsbir(2, "train", str(demo_shards), "--out", str(out), "--epochs", "2", "--batch-size", "8",
                   "--workers", "0", "--cache-views", "2", "--category-column", "category", "--category-weight", "0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = lines(out / "metrics.jsonl")
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[-1]["val"]["modes"]["sketch"]["R@10"] > 0
    steps = lines(out / "steps.jsonl")
    assert len(steps) == epochs[-1]["step"] and all(math.isfinite(s["loss"]) for s in steps)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
