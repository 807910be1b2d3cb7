"""The import rule of the README's layout section, checked on the source with an `ast` walk."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Parts from bottom to top; a module may import its own part and the parts below it.
LAYERS = ["base", "sketchgen", "shardformat", "retrieval", "pipelines", "frontend"]
FRONT_ENDS = {"fsbir.cli", "fsbir.__main__", "fsbir.pipelines.terminal", "fsbir.pipelines.quickstart",
              "fsbir.pipelines.web", "fsbir.pipelines.cli_options", "fsbir.pipelines.cli_data",
              "fsbir.pipelines.cli_model", "fsbir.pipelines.cli_search"}


def module_name(path: Path) -> str:
    parts = ["fsbir", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    if module in FRONT_ENDS:
        return "frontend"
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] in LAYERS else "base"


def package_modules() -> dict[str, Path]:
    files = [ROOT / "__init__.py", ROOT / "__main__.py", ROOT / "cli.py"]
    for folder in ("sketchgen", "shardformat", "retrieval", "pipelines"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return {module_name(f): f for f in files}


def imports_of(module: str, path: Path) -> set[str]:
    """Every fsbir module imported anywhere in the file (function bodies included)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {name for name in found if name == "fsbir" or name.startswith("fsbir.")}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {m: {t for t in (resolve(n, modules) for n in imports_of(m, p)) if t and t != m}
            for m, p in modules.items()}


def test_every_part_has_modules(graph):
    assert {part_of(m) for m in graph} == set(LAYERS)


def test_imports_point_down_only(graph):
    wrong = [f"{m} ({part_of(m)}) imports {t} ({part_of(t)})"
             for m, targets in graph.items() for t in targets
             if LAYERS.index(part_of(t)) > LAYERS.index(part_of(m))]
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_parts(graph):
    edges = {(part_of(m), part_of(t)) for m, targets in graph.items() for t in targets if part_of(m) != part_of(t)}
    assert not {(a, b) for a, b in edges if (b, a) in edges}


def test_sketchgen_does_no_io_and_loads_no_model():
    banned = {"torch", "h5py", "pyarrow", "pandas", "open_clip", "datasets", "faiss", "fastapi", "typer", "rich", "os",
              "pathlib", "shutil", "subprocess", "socket"}
    for path in (ROOT / "sketchgen").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not names & banned, f"{path.name} imports {names & banned}"
        assert "open" not in calls, f"{path.name} opens files"


def test_rule_checker_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from fsbir.pipelines.web import create_app\nfrom ..shardformat import Status\n")
    found = imports_of("fsbir.retrieval.bad", bad)
    assert "fsbir.pipelines.web" in found and "fsbir.shardformat.Status" in found
    assert LAYERS.index(part_of("fsbir.pipelines.web")) > LAYERS.index(part_of("fsbir.retrieval.bad"))
