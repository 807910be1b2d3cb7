"""Hostile and careless input: nothing is lost silently, no number is flattered, the server stays up.
The bad files come from tests/hostile/corpus.py."""
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from PIL import Image
from typer.testing import CliRunner

from fsbir.cli import app, network_warning
from fsbir.pipelines.build import BuildConfig, FolderLock, OutputFolderError, run_build
from fsbir.pipelines.catalog import CatalogRow, CatalogSpec
from fsbir.pipelines.worker import WorkerSettings, process_row
from fsbir.pipelines.demo_catalog import write_demo_catalog
from fsbir.shardformat import shard_files
from fsbir.sketchgen.pair import PairSettings
from tests.hostile import corpus
from tests.test_errors import one_line_error

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


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
    deadline = time.time() + 120
    while not list(out.glob("shard-*.stats.json")):
        assert time.time() < deadline and proc.poll() is None, "the build did not start"
        time.sleep(0.05)
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


# --- training: a diverging run stops, and nothing NaN becomes best -------------------------------

def test_diverging_training_stops_with_one_line(demo_shards, tmp_path):
    out = tmp_path / "run"
    line = one_line_error(["train", str(demo_shards), "--out", str(out), "--lr", "1e30", "--epochs", "2",
                           "--batch-size", "8", "--workers", "0"], after_work=True)
    assert "lower --lr" in line
    assert not (out / "checkpoints" / "best.pt").exists()


def test_resume_refuses_changed_settings_in_one_line(demo_shards, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(demo_shards), "--out", str(out), "--epochs", "1", "--batch-size", "8",
                                 "--workers", "0", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    line = one_line_error(["train", str(demo_shards), "--out", str(out), "--resume", "--fusion", "gated"])
    assert "fusion='avg'" in line and "drop --fusion" in line


# --- foreign checkpoints, broken catalogs, odd options: one line each ----------------------------

@pytest.fixture(scope="module")
def foreign(demo_run, tmp_path_factory):
    from fsbir.retrieval.checkpoint import load_checkpoint

    return corpus.foreign_checkpoints(tmp_path_factory.mktemp("foreign"), load_checkpoint(demo_run)["model"])


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "bare_state_dict", "list"])
def test_foreign_checkpoints_everywhere(kind, foreign, demo_shards, demo_index, tmp_path):
    ckpt = str(foreign[kind])
    assert "checkpoint" in one_line_error(["eval", str(demo_shards), "--checkpoint", ckpt])
    assert "checkpoint" in one_line_error(["index", str(demo_shards), "--checkpoint", ckpt, "--out", str(tmp_path / "i")])
    assert "checkpoint" in one_line_error(["search", str(demo_index), "--checkpoint", ckpt, "--text", "a shoe"])
    assert "checkpoint" in one_line_error(["serve", str(demo_index), "--checkpoint", ckpt])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(foreign[kind].read_bytes())
    assert "checkpoint" in one_line_error(["train", str(demo_shards), "--out", str(run), "--resume"])


def test_output_paths_that_cannot_be_written(demo_catalog, demo_shards, demo_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert "output folder" in one_line_error(["build-dataset", str(demo_catalog), str(blocker)])
    assert str(blocker) in one_line_error(["train", str(demo_shards), "--out", str(blocker / "run"), "--workers", "0"])
    assert str(blocker) in one_line_error(["index", str(demo_shards), "--checkpoint", str(demo_run),
                                           "--out", str(blocker / "idx")])


def test_broken_parquet_catalogs(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet")
    assert "not a readable Parquet file" in one_line_error(["build-dataset", str(tmp_path / "junk.parquet"),
                                                            str(tmp_path / "o")])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [b"x" * 5000] * 50, "caption": ["a"] * 50}), tmp_path / "good.parquet")
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    assert "Parquet" in one_line_error(["build-dataset", str(tmp_path / "cut.parquet"), str(tmp_path / "o2")])


def test_index_options_and_folders(demo_shards, demo_run, demo_index, tmp_path):
    line = one_line_error(["index", str(demo_shards), "--checkpoint", str(demo_run), "--out", str(tmp_path / "i"),
                           "--index-type", "ivf", "--nlist", "100000"])
    assert "nlist 100000 is larger than the gallery" in line
    half = tmp_path / "half"
    half.mkdir()
    for name in ("index.json", "items.parquet"):
        (half / name).write_bytes((demo_index / name).read_bytes())
    assert "index.faiss missing" in one_line_error(["search", str(half), "--text", "a shoe"])


def test_bad_query_files(demo_shards, demo_run, tmp_path):
    base = ["eval", str(demo_shards), "--checkpoint", str(demo_run), "--split", "all", "--queries"]
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "notes.txt").write_text("hello")
    (tmp_path / "q" / "q.csv").write_text("sketch,product_id\nnotes.txt,x\n")
    assert "decode_error" in one_line_error(base + [str(tmp_path / "q" / "q.csv")])
    (tmp_path / "q" / "up.csv").write_text("sketch,product_id\n../secret.png,x\n")
    assert "leaves the queries folder" in one_line_error(base + [str(tmp_path / "q" / "up.csv")])
    (tmp_path / "q" / "abs.csv").write_text("sketch,product_id\n/etc/passwd,x\n")
    assert "leaves the queries folder" in one_line_error(base + [str(tmp_path / "q" / "abs.csv")])
    (tmp_path / "q" / "noid.csv").write_text("sketch,label\nnotes.txt,x\n")
    assert "product_id or category" in one_line_error(base + [str(tmp_path / "q" / "noid.csv")])
    (tmp_path / "q" / "arr.ndjson").write_text("[1, 2, 3]\n")
    assert "not a Quick, Draw! record" in one_line_error(base + [str(tmp_path / "q" / "arr.ndjson")])
    (tmp_path / "empty").mkdir()
    assert "no queries found" in one_line_error(base + [str(tmp_path / "empty")])


def test_search_sketch_pixel_and_shape_caps(demo_index, tmp_path):
    (tmp_path / "big.png").write_bytes(corpus.png_header_only(2500, 2500))  # 6.25 MP, a few KB
    assert "too_large" in one_line_error(["search", str(demo_index), "--sketch", str(tmp_path / "big.png")])
    (tmp_path / "tall.png").write_bytes(corpus.png_header_only(8, 499_999))
    assert "bad_aspect" in one_line_error(["search", str(demo_index), "--sketch", str(tmp_path / "tall.png")])


# --- the server ------------------------------------------------------------------------------------

def test_tall_strip_is_refused_from_the_header(demo_index):
    from fastapi.testclient import TestClient

    from fsbir.pipelines.web import WebConfig, create_app

    client = TestClient(create_app(WebConfig(index_dir=str(demo_index))))
    for w, h in ((8, 499_999), (100, 40_000)):
        data = corpus.png_header_only(w, h)
        assert len(data) < 1_000_000
        resp = client.post("/api/search", files={"sketch": ("s.png", data, "image/png")}, data={"k": "3"})
        assert resp.status_code == 400 and "bad_aspect" in resp.json()["detail"]
    assert client.get("/healthz").status_code == 200


def asgi_call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, int]:
    """(status, chunks the app pulled) of one raw ASGI POST."""
    pulled = {"n": 0}
    sent: list[dict] = []

    async def receive():
        if pulled["n"] < len(chunks):
            pulled["n"] += 1
            return {"type": "http.request", "body": chunks[pulled["n"] - 1], "more_body": pulled["n"] < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/search", "raw_path": b"/api/search", "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), pulled["n"]


def test_body_limit_before_reading(demo_index):
    from fsbir.pipelines.web import WebConfig, create_app

    app_ = create_app(WebConfig(index_dir=str(demo_index), max_upload_bytes=10_000))
    head = (b'--b\r\nContent-Disposition: form-data; name="sketch"; filename="s.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    chunks = [head] + [b"x" * 65536] * 800  # a 50 MB upload, well formed as far as it goes
    form = (b"content-type", b"multipart/form-data; boundary=b")
    status, pulled = asgi_call(app_, [(b"content-length", b"52428800"), form], chunks)
    assert status == 413 and pulled == 0  # refused by Content-Length, nothing read
    status, pulled = asgi_call(app_, [form], chunks)
    assert status == 413 and pulled <= 4  # no Content-Length: cut off just past the limit


def test_ids_with_slashes_and_dots_round_trip(demo_run, tmp_path):
    from fastapi.testclient import TestClient

    from fsbir.pipelines.web import WebConfig, create_app
    from fsbir.retrieval.index import IndexConfig, build_index

    odd = ["a/b", "c?d", "%2e%2e", "e#f"]
    for i, _ in enumerate(odd):
        Image.new("RGB", (64, 64), (60 * i, 20, 200)).save(tmp_path / f"{i}.png")
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"id": pid, "image": f"{i}.png", "caption": f"item {i}"}) + "\n"
                                                  for i, pid in enumerate(odd)))
    run_build(BuildConfig(catalog=CatalogSpec(str(tmp_path / "items.jsonl"), id_column="id"),
                          out_dir=str(tmp_path / "shards"), workers=1, image_size=64))
    build_index(IndexConfig(shards=str(tmp_path / "shards"), checkpoint=str(demo_run), out=str(tmp_path / "idx")))
    client = TestClient(create_app(WebConfig(index_dir=str(tmp_path / "idx"))))
    results = client.post("/api/search", data={"text": "item", "k": "4"}).json()["results"]
    assert sorted(r["product_id"] for r in results) == sorted(odd)
    images = {}
    for r in results:
        resp = client.get(r["image_url"])
        assert resp.status_code == 200, r["image_url"]
        images[r["product_id"]] = resp.content
    assert len(set(images.values())) == 4  # every id reached its own photo, none aliased


def test_network_warning():
    assert network_warning("127.0.0.1") is None and network_warning("localhost") is None
    assert "open to the network" in network_warning("0.0.0.0")


class SlowEngine:
    """A real engine whose searches take a while, to fill the queue."""

    def __init__(self, engine, seconds: float):
        self.engine, self.seconds = engine, seconds

    def __len__(self):
        return len(self.engine)

    def search(self, *args):
        time.sleep(self.seconds)
        return self.engine.search(*args)

    def __getattr__(self, name):
        return getattr(self.engine, name)


@pytest.mark.slow
def test_busy_server_answers_503_past_its_queue_and_healthz_stays_up(demo_index):
    import httpx
    import uvicorn

    from fsbir.pipelines.web import WebConfig, create_app
    from fsbir.retrieval.index import SearchEngine

    app_ = create_app(WebConfig(index_dir=str(demo_index), max_queue=3), engine=SlowEngine(SearchEngine(demo_index), 0.5))
    server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    codes: list[int] = []

    def one_search():
        with httpx.Client(timeout=60) as c:
            codes.append(c.post(f"{base}/api/search", data={"text": "a white t-shirt", "k": "3"}).status_code)

    try:
        searches = [threading.Thread(target=one_search) for _ in range(8)]
        for t in searches:
            t.start()
        time.sleep(0.2)
        with httpx.Client(timeout=5) as c:
            health = [c.get(f"{base}/healthz") for _ in range(5)]  # while the model thread is busy
        for t in searches:
            t.join()
        assert all(h.status_code == 200 for h in health)
        assert codes.count(200) >= 3 and codes.count(503) >= 1 and set(codes) <= {200, 503}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
