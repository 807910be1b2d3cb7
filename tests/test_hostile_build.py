"""Hostile and careless input to build-dataset: nothing is lost silently. Odd files become row
statuses, a changed catalog never mixes with old shards, one build per folder, no orphaned
workers. The bad files come from tests/hostile/corpus.py."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest

from fsbir.pipelines.build import BuildConfig, FolderLock, OutputFolderError, run_build
from fsbir.pipelines.catalog import CatalogRow, CatalogSpec
from fsbir.pipelines.demo_catalog import write_demo_catalog
from fsbir.pipelines.worker import WorkerSettings, process_row, read_and_hash
from fsbir.shardformat import shard_files
from fsbir.sketchgen import SketchgenError
from fsbir.sketchgen.pair import PairSettings
from tests.conftest import wait_until
from tests.hostile import corpus


def shards_frame(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(f) for f in shard_files(out)).reset_index(drop=True)


# --- inputs that used to crash or hang a whole build become row statuses -----------------------

def test_hostile_catalog_rows_get_their_status(tmp_path):
    expected = corpus.catalog(tmp_path / "cat")
    out = tmp_path / "out"
    summary = run_build(BuildConfig(catalog=CatalogSpec(str(tmp_path / "cat" / "catalog.csv"), id_column="id"),
                                    out_dir=str(out), workers=1, image_size=64, max_failure_ratio=1.0))
    got = shards_frame(out).set_index("product_id")["status"].to_dict()
    assert got == expected
    assert summary.inputs == len(expected)
    df = shards_frame(out).set_index("product_id")
    assert len(df.loc["huge", "caption"]) == 200_000


def race_row(tmp_path: Path, image_path: Path, root: Path) -> dict:
    row = CatalogRow(index=0, product_id="p", caption="a red box", image_path=str(image_path), image_ref="x.jpg",
                     image_root=str(root))
    return process_row(row, "0000000000", WorkerSettings(pair=PairSettings(image_size=64), out_dir=str(tmp_path),
                                                         extra_columns=()))


def test_file_swapped_for_a_link_after_the_check_is_not_read(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(corpus.good_jpeg())
    checked = root / "x.jpg"
    checked.write_bytes(corpus.good_jpeg())
    assert race_row(tmp_path, checked, root)["status"] == "ok"
    checked.unlink()
    checked.symlink_to(outside)  # swapped after the catalog reader resolved the path
    record = race_row(tmp_path, checked, root)
    assert record["status"] == "unsafe_path" and record["image"] is None
    # a parent folder swapped for a link: O_NOFOLLOW does not see it, the opened descriptor does
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "y.jpg").write_bytes(corpus.good_jpeg())
    (root / "sub").rmdir()
    (root / "sub").symlink_to(tmp_path / "elsewhere")
    record = race_row(tmp_path, root / "sub" / "y.jpg", root)
    assert record["status"] == "unsafe_path"



def test_a_file_larger_than_its_stat_size_is_read_whole_up_to_the_cap(tmp_path):
    """The read asks for the size fstat gave plus one byte, then reads on up to the cap: a file that
    grew after fstat (here a /proc file, which stats as 0 bytes) is read whole, or refused."""
    status = Path("/proc/self/status")
    if not status.exists() or status.stat().st_size != 0:
        pytest.skip("needs Linux /proc, whose files stat as 0 bytes")
    row = CatalogRow(index=0, product_id="p", caption="c", image_path=str(status), image_root="/proc",
                     image_ref="self/status")
    data, _ = read_and_hash(row, 1 << 20)
    assert data.startswith(b"Name:") and b"VmRSS" in data and len(data) > 200
    with pytest.raises(SketchgenError) as err:
        read_and_hash(row, 100)
    assert err.value.reason == "too_large"

# --- resume only what was made from the same rows ------------------------------------------------

def write_csv(folder: Path, ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for pid in ids:
        if not (folder / f"{pid}.jpg").exists():
            (folder / f"{pid}.jpg").write_bytes(corpus.good_jpeg((int(pid[1:]) * 9 % 255, 40, 90)))
    (folder / "catalog.csv").write_text("id,image,caption\n" + "".join(f"{p},{p}.jpg,item {p}\n" for p in ids))
    return folder / "catalog.csv"


def test_rows_inserted_at_the_top_redo_the_shards_they_shift(tmp_path):
    ids = [f"p{i}" for i in range(20)]
    config = dict(out_dir=str(tmp_path / "out"), workers=1, image_size=64, shard_size=5)
    run_build(BuildConfig(catalog=CatalogSpec(str(write_csv(tmp_path / "cat", ids)), id_column="id"), **config))
    new_ids = [f"p{i}" for i in range(100, 105)] + ids
    summary = run_build(BuildConfig(catalog=CatalogSpec(str(write_csv(tmp_path / "cat", new_ids)), id_column="id"),
                                    **config))
    df = shards_frame(tmp_path / "out")
    assert sorted(df["product_id"]) == sorted(new_ids) and df["product_id"].is_unique
    assert summary.inputs == 25 and summary.ok == 25 and summary.shards_redone == 4
    # a shorter catalog leaves no stale shard behind
    summary = run_build(BuildConfig(catalog=CatalogSpec(str(write_csv(tmp_path / "cat", ids[:7])), id_column="id"),
                                    **config))
    assert sorted(shards_frame(tmp_path / "out")["product_id"]) == sorted(ids[:7]) and summary.inputs == 7
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["inputs"] == 7 and len(manifest["shards"]) == 2


# --- one build per output folder -----------------------------------------------------------------

def test_second_build_into_a_busy_folder_is_refused_and_a_dead_lock_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from pathlib import Path; from fsbir.pipelines.build import FolderLock;"
                               "FolderLock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
                               str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        csv = write_csv(tmp_path / "cat", ["p1", "p2"])
        with pytest.raises(OutputFolderError, match=f"another fsbir process \\(pid {holder.pid}\\)"):
            run_build(BuildConfig(catalog=CatalogSpec(str(csv), id_column="id"), out_dir=str(out), workers=1))
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock file stays, the lock does not
    assert (out / FolderLock.NAME).read_text().strip() == str(holder.pid)
    summary = run_build(BuildConfig(catalog=CatalogSpec(str(csv), id_column="id"), out_dir=str(out), workers=1))
    assert summary.ok == 2


# --- workers: a dead one is named, orphans do not linger -----------------------------------------

def start_build(tmp_path: Path, workers: int = 2) -> tuple[subprocess.Popen, Path]:
    catalog = write_demo_catalog(tmp_path / "cat", n=600, seed=2, size=256)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "fsbir", "build-dataset", str(catalog), str(out), "--shard-size",
                             "10", "--workers", str(workers), "--image-size", "192"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: any(out.glob("shard-*.stats.json")), "a first finished shard", proc)
    return proc, out


def workers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    """The pool's workers: the processes the forkserver (a child of the build) forked."""
    servers = [k for k in psutil.Process(proc.pid).children() if "forkserver" in " ".join(k.cmdline())]
    return [w for server in servers for w in server.children()]


@pytest.mark.slow
def test_a_killed_worker_is_reported_with_its_shard(tmp_path):
    proc, out = start_build(tmp_path)
    victims = workers_of(proc)
    assert victims
    victims[0].send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert lines and "a worker process died while building shard" in lines[0] and "Traceback" not in stderr


@pytest.mark.slow
def test_workers_exit_when_the_build_is_killed(tmp_path):
    proc, out = start_build(tmp_path)
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers_of(proc)) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(kids, timeout=20)
    assert not alive, [p.cmdline() for p in alive]
