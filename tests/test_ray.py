"""`build-dataset --engine ray`: the same worker as Ray tasks on a real local Ray; the shard
contract holds (names, atomic writes, stats, manifest, resume, refusing changed settings)."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import psutil
import pytest

from fsbir.pipelines.build import BuildConfig, OutputFolderError, run_build
from fsbir.pipelines.catalog import CatalogSpec
from fsbir.pipelines.demo_catalog import write_demo_catalog
from fsbir.shardformat import shard_files
from tests.conftest import wait_until
from tests.test_build import make_bad_catalog

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


def frame(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(f) for f in shard_files(out)).reset_index(drop=True)


def test_ray_and_local_engines_write_the_same_shards(tmp_path):
    cases = make_bad_catalog(tmp_path / "cat")
    catalog = CatalogSpec(str(tmp_path / "cat" / "catalog.jsonl"))
    common = dict(catalog=catalog, shard_size=4, max_pixels=4_000_000, max_failure_ratio=1.0, workers=2,
                  image_size=96)
    local = run_build(BuildConfig(out_dir=str(tmp_path / "local"), engine="local", **common))
    on_ray = run_build(BuildConfig(out_dir=str(tmp_path / "ray"), engine="ray", **common))
    assert on_ray.inputs == local.inputs == len(cases) and on_ray.by_status == local.by_status
    a, b = frame(tmp_path / "local"), frame(tmp_path / "ray")
    cols = ["key", "product_id", "caption", "split", "status", "sketch_method", "sha256", "error_message"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    sketches_a = [s["bytes"] if s is not None else None for s in a["sketch"]]
    sketches_b = [s["bytes"] if s is not None else None for s in b["sketch"]]
    with_sketch = sum(status in ("ok", "empty_caption") for _, status in cases)
    assert sketches_a == sketches_b and sum(s is not None for s in sketches_a) == with_sketch
    assert sorted(p.name for p in (tmp_path / "ray").glob("shard-*")) == sorted(
        p.name for p in (tmp_path / "local").glob("shard-*"))
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["inputs"] == len(cases) and manifest["config"]["engine"] == "ray"
    # the same folder, re-run on the other engine: resumed, nothing rebuilt
    again = run_build(BuildConfig(out_dir=str(tmp_path / "ray"), engine="local", **common))
    assert again.shards_written == 0 and again.shards_skipped == 4
    with pytest.raises(OutputFolderError, match="image_size differ"):
        run_build(BuildConfig(out_dir=str(tmp_path / "ray"), engine="ray", **{**common, "image_size": 64}))


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def ray_build(catalog: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fsbir", "build-dataset", str(catalog), str(out), "--engine", "ray",
                             "--workers", "2", "--shard-size", "20", "--image-size", "192"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_ray_run_resumes(tmp_path):
    catalog = write_demo_catalog(tmp_path / "cat", n=400, seed=4, size=256)
    out = tmp_path / "out"
    proc = ray_build(catalog, out)
    helpers: list[psutil.Process] = []

    def first_shard() -> bool:
        helpers.extend(p for p in descendants(proc.pid) if p not in helpers)  # the local Ray it starts
        return any(out.glob("shard-*.stats.json"))

    wait_until(first_shard, "a first finished shard", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for p in helpers:  # the local Ray the killed driver started
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(helpers, timeout=30)
    finished = len(list(out.glob("shard-*.stats.json")))
    assert 0 < finished < 20
    named = list(out.glob("shard-*.parquet"))  # no half shard under a real name
    assert finished <= len(named) <= finished + 2 and all(pq.read_table(f).num_rows == 20 for f in named)
    rerun = ray_build(catalog, out)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    df = frame(out)
    assert len(df) == 400 and df["product_id"].is_unique and (df["status"] == "ok").all()
    assert json.loads((out / "manifest.json").read_text())["inputs"] == 400


def test_a_ray_worker_killed_mid_shard_loses_nothing(tmp_path):
    catalog = write_demo_catalog(tmp_path / "cat", n=400, seed=6, size=256)
    out = tmp_path / "out"
    proc = ray_build(catalog, out)

    def kill_a_running_task() -> bool:
        for p in descendants(proc.pid):
            try:
                if "build_shard" in " ".join(p.cmdline()):
                    p.send_signal(signal.SIGKILL)
                    return True
            except psutil.NoSuchProcess:
                continue
        return False

    wait_until(kill_a_running_task, "a Ray worker running build_shard", proc)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    df = frame(out)
    assert len(df) == 400 and df["product_id"].is_unique and (df["status"] == "ok").all()
    assert not list(out.glob(".shard-*"))


def test_hed_style_runs_in_the_ray_tasks_as_in_local_workers(tmp_path):
    """The contour detector is loaded inside each Ray worker, as in a local one, and draws the same."""
    from fsbir.sketchgen import ContourParams, SketchSettings

    make_bad_catalog(tmp_path / "cat")
    common = dict(catalog=CatalogSpec(str(tmp_path / "cat" / "catalog.jsonl")), shard_size=8, max_pixels=4_000_000,
                  max_failure_ratio=1.0, workers=2, image_size=64,
                  sketch=SketchSettings(style="hed", contour=ContourParams(detector_size=64)))
    local = run_build(BuildConfig(out_dir=str(tmp_path / "local"), engine="local", **common))
    on_ray = run_build(BuildConfig(out_dir=str(tmp_path / "ray"), engine="ray", **common))
    assert on_ray.by_status == local.by_status and on_ray.by_method == local.by_method
    assert set(on_ray.by_method) <= {"hed", "hed_light_item"}
    a, b = frame(tmp_path / "local"), frame(tmp_path / "ray")
    assert [s["bytes"] if s is not None else None for s in a["sketch"]] == [
        s["bytes"] if s is not None else None for s in b["sketch"]]
