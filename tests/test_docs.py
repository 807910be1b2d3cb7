"""Docs that can't drift: every `fsbir` command and option that README.md and docs/*.md name exists
(`fsbir X --help` lists it), every bench script option they name is one the script takes, and every
relative link (and its #anchor) resolves."""
import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fsbir.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```[^\n]*\n.*?^```", re.S | re.M)
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"(?<![\w./-])fsbir\s+([a-z][a-z-]*)")
BENCH = re.compile(r"(?<![\w-])(bench/[\w-]+\.py)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# Options of the other programs the docs show beside fsbir (pytest, ray, torchrun, img2dataset, pip).
FOREIGN = {"--head", "--port", "--address", "--standalone", "--nproc-per-node", "--nnodes", "--rdzv-backend",
           "--rdzv-endpoint", "--rdzv-id", "--no-deps", "--no-index", "--output_format", "--url_list"}


@lru_cache(maxsize=None)
def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})
    assert result.exit_code == 0, (command, result.output)
    return result.output


@lru_cache(maxsize=None)
def commands() -> frozenset[str]:
    return frozenset(re.findall(r"^│ ([a-z][a-z-]+)\s", help_text(), re.M))


@lru_cache(maxsize=None)
def options_of(command: str) -> frozenset[str]:
    return frozenset(OPTION.findall(help_text(command))) | {"--help"}


@lru_cache(maxsize=None)
def bench_options(script: str) -> frozenset[str]:
    """The options a bench script's argparse parser takes, read from its source and from the bench
    modules it imports (the build benches share their catalog arguments)."""
    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    found = {"--help"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            found.update(a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--"))
        if isinstance(node, ast.ImportFrom) and node.module and (ROOT / "bench" / f"{node.module}.py").exists():
            found |= bench_options(f"bench/{node.module}.py")
    return frozenset(found)


def command_lines(text: str) -> tuple[list[str], list[str]]:
    """(lines of the shell blocks, continuations joined and comments dropped; inline code spans)."""
    lines = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(re.sub(r"(^|\s)#.*", "", line))
    return lines, INLINE.findall(FENCE.sub("", text))


def problems(path: Path) -> list[str]:
    """What in one Markdown file names a command, option or file that does not exist."""
    text = path.read_text(encoding="utf-8")
    found = []
    every_option = set().union(*(options_of(c) for c in commands()),
                               *(bench_options(f"bench/{b.name}") for b in (ROOT / "bench").glob("*.py")))
    shell, spans = command_lines(text)
    for line in shell + spans:
        named = [(m.start(), "fsbir", m.group(1)) for m in COMMAND.finditer(line)]
        named += [(m.start(), "bench", m.group(1)) for m in BENCH.finditer(line)]
        for start, kind, name in named:
            if kind == "fsbir" and name not in commands():
                found.append(f"{path.name}: `fsbir {name}` is no command")
                continue
            valid = options_of(name) if kind == "fsbir" else bench_options(name)
            for option in OPTION.findall(line[start:]):
                if option not in valid:
                    found.append(f"{path.name}: `{option}` is no option of {kind} {name}")
        if not named and line in spans:  # an option named on its own in prose: some fsbir command's or bench's
            for option in OPTION.findall(line):
                if option not in every_option and option not in FOREIGN:
                    found.append(f"{path.name}: `{option}` is no option of any fsbir command or bench")
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            found.append(f"{path.name}: link {target} leads nowhere")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            found.append(f"{path.name}: link {target}: no heading #{anchor} in {linked.name}")
    return found


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.strip().lower())) for h in headings}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_command_option_and_link_in_the_docs_exists(path):
    assert problems(path) == []


def test_the_checker_finds_what_has_drifted(tmp_path):
    (tmp_path / "real.md").write_text("# A heading\n")
    doc = tmp_path / "doc.md"
    doc.write_text("Run `fsbir train SHARDS --epochs 3 --no-such-flag`, then `fsbir teleport`.\n\n"
                   "```bash\nfsbir eval S --checkpoint R \\\n    --kk 10   # --not-checked in a comment\n"
                   "python bench/serve_load.py --index I --max-queue 8\n```\n"
                   "Prose `--imaginary`. [ok](real.md#a-heading) [bad](missing.md) [anchor](real.md#nope)\n")
    assert sorted(problems(doc)) == sorted([
        "doc.md: `--no-such-flag` is no option of fsbir train",
        "doc.md: `fsbir teleport` is no command",
        "doc.md: `--kk` is no option of fsbir eval",
        "doc.md: `--max-queue` is no option of bench bench/serve_load.py",
        "doc.md: `--imaginary` is no option of any fsbir command or bench",
        "doc.md: link missing.md leads nowhere",
        "doc.md: link real.md#nope: no heading #nope in real.md",
    ])


def test_readme_is_a_short_users_guide():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    first_screen = "\n".join(readme.splitlines()[:60])
    assert "make quickstart" in first_screen and "make test" in first_screen
