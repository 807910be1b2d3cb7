"""What a user meets when something is wrong: one line on stderr, exit status 2, no traceback."""
import pytest
from typer.testing import CliRunner

from fsbir.cli import app

runner = CliRunner()


def one_line_error(args: list[str], after_work: bool = False) -> str:
    """The error line of a command that must fail with exit 2 and no traceback. Unless the failure
    comes `after_work` (progress already shown), that line is all stderr holds."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert after_work or len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return errors[0]


@pytest.fixture(scope="module")
def junk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("junk")
    (folder / "junk.pt").write_bytes(b"not a checkpoint at all")
    (folder / "header.csv").write_text("image,caption\n")
    (folder / "drawing.png").write_bytes(b"")
    return folder


def test_missing_catalog(tmp_path):
    assert "no such file" in one_line_error(["build-dataset", str(tmp_path / "missing.csv"), str(tmp_path / "o")])


def test_header_only_catalog(junk, tmp_path):
    assert "has no rows" in one_line_error(["build-dataset", str(junk / "header.csv"), str(tmp_path / "o")])


@pytest.mark.parametrize("command", ["train", "eval"])
def test_unknown_model(command, demo_shards, tmp_path):
    extra = ["--out", str(tmp_path / "run")] if command == "train" else []
    line = one_line_error([command, str(demo_shards), "--model", "no-such-model", *extra])
    assert "unknown model 'no-such-model'" in line and "fsbir-tiny" in line


def test_missing_shards_folder(tmp_path):
    assert "no shards folder" in one_line_error(["eval", str(tmp_path / "nope"), "--model", "fsbir-tiny"])


@pytest.mark.parametrize("command", ["eval", "index"])
def test_junk_checkpoint(command, junk, demo_shards, tmp_path):
    extra = ["--out", str(tmp_path / "idx")] if command == "index" else []
    line = one_line_error([command, str(demo_shards), "--checkpoint", str(junk / "junk.pt"), *extra])
    assert "not a readable checkpoint" in line


def test_resume_with_nothing_to_resume(demo_shards, tmp_path):
    line = one_line_error(["train", str(demo_shards), "--out", str(tmp_path / "fresh"), "--resume"])
    assert "nothing to resume" in line


def test_missing_index_folder(tmp_path):
    assert "no index folder" in one_line_error(["search", str(tmp_path / "idx"), "--text", "a shoe"])


def test_missing_sketch_file(demo_index, tmp_path):
    line = one_line_error(["search", str(demo_index), "--sketch", str(tmp_path / "none.png")])
    assert "cannot read the sketch" in line


def test_unreadable_sketch_file(demo_index, junk):
    assert "decode" in one_line_error(["search", str(demo_index), "--sketch", str(junk / "drawing.png")])


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--batch-size", "1"], "batch-size must be at least 2"),
    (["--lr", "nan"], "lr must be a positive finite number"),
    (["--category-weight", "0.5"], "category-weight needs --category-column"),
    (["--cache-views", "-1"], "cache-views must be 0 or more"),
    (["--colour-weight", "5"], "colour-weight must be between 0 and 4"),
    (["--colour-weight", "nan"], "colour-weight must be between 0 and 4"),
    (["--device", "cuda:7"], "not available"),
    (["--caption-template", "a {colour} {nope}"], "caption templates name nope, not shard columns; the shards have"),
    (["--caption-template", "a {colour dress"], "a caption template does not parse"),
    (["--caption-template", "a dress"], "must name shard columns in braces"),
])
def test_nonsense_training_options(args, words, demo_shards, tmp_path):
    assert words in one_line_error(["train", str(demo_shards), "--out", str(tmp_path / "r"), *args])


@pytest.mark.parametrize("args, words", [
    (["--shard-size", "0"], "shard-size must be at least 1"),
    (["--image-size", "-5"], "image-size must be at least 1"),
    (["--val-fraction", "2"], "train rows remain"),
])
def test_nonsense_build_options(args, words, demo_catalog, tmp_path):
    assert words in one_line_error(["build-dataset", str(demo_catalog), str(tmp_path / "o"), *args])


def test_search_k_zero(demo_index):
    assert "k must be between 1" in one_line_error(["search", str(demo_index), "--text", "a shoe", "--k", "0"])
