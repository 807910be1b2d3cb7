"""The built wheel installs one top-level name, `fsbir`, and works on its own: console script,
`python -m fsbir`, shipped model configs and the web page's static files."""
import os
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, cwd=out)
    (path,) = out.glob("fsbir-*.whl")
    return path


@pytest.fixture(scope="module")
def isolated(wheel, tmp_path_factory) -> tuple[Path, Path]:
    """(a fresh venv with the wheel installed, a working folder outside the repository).

    The venv sees the test venv's dependencies through a .pth line placed after its own
    site-packages. Python runs no .pth file of a folder reached that way, so the editable install's
    import hook stays out and only the wheel can answer `import fsbir`."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "zz_test_venv_deps.pth").write_text(deps + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    return env_dir, tmp_path_factory.mktemp("cwd")


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_holds_only_the_fsbir_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"fsbir"}
    for needed in ("fsbir/__init__.py", "fsbir/__main__.py", "fsbir/cli.py", "fsbir/sketchgen/decode.py",
                   "fsbir/shardformat/__init__.py", "fsbir/retrieval/training/loop.py",
                   "fsbir/retrieval/model_configs/fsbir-tiny.json", "fsbir/pipelines/static/index.html"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("fsbir/tests/", "fsbir/bench/"))]


def test_installed_wheel_runs(isolated):
    venv, cwd = isolated
    python, script = str(venv / "bin" / "python"), str(venv / "bin" / "fsbir")
    where = run(venv, python, "-c", "import fsbir; print(fsbir.__file__, fsbir.__version__)", cwd=cwd)
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout
    for cmd in ([script, "--help"], [python, "-m", "fsbir", "--help"]):
        result = run(venv, *cmd, cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert "build-dataset" in result.stdout and "serve" in result.stdout
    for generic in ("sketchgen", "pipelines", "retrieval", "cli", "shardformat"):
        result = run(venv, python, "-c", f"import {generic}", cwd=cwd)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, generic


def test_installed_wheel_loads_a_model_config_and_serves_the_page(isolated, demo_index):
    venv, cwd = isolated
    python = str(venv / "bin" / "python")
    loaded = run(venv, python, "-c",
                 "from fsbir.retrieval.factory import ModelSpec, create_model, CONFIG_DIR\n"
                 "m, pp, tok = create_model(ModelSpec(model='fsbir-tiny'))\n"
                 "print(CONFIG_DIR, pp.image_size, sum(p.numel() for p in m.parameters()))", cwd=cwd)
    assert loaded.returncode == 0, loaded.stderr
    assert str(venv) in loaded.stdout and " 96 " in loaded.stdout

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(venv / "bin" / "fsbir"), "serve", str(demo_index), "--port", str(port)], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pages: list[str] = []

        def page_served() -> bool:
            try:
                pages.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode())
                return True
            except OSError:
                return False

        wait_until(page_served, "the page from the installed wheel", server, poll=0.5)
        assert "<canvas" in pages[0]
    finally:
        server.terminate()
        server.wait(timeout=30)
