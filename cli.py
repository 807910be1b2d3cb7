"""The `fsbir` command line. Each command (pipelines/cli_data.py, cli_model.py, cli_search.py)
parses its options into config objects and calls one function.

Defaults shown by `--help` come from the config dataclasses themselves, so each default has one
source. A user error anywhere (fsbir.FsbirError) becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from fsbir import FsbirError
from fsbir.pipelines import cli_data, cli_model, cli_search


class _OneLineErrors(TyperGroup):
    """Turns an FsbirError (or an operating-system refusal: a read-only folder, a file where a
    folder should be, a full disk) raised by any command into `error: ...` on stderr and exit 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FsbirError as exc:
            message = str(exc)
        except OSError as exc:
            message = f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else str(exc)
        message = " ".join(message.split()) or "failed"
        typer.secho(f"error: {message}", fg="red", err=True)
        raise typer.Exit(2)


app = typer.Typer(
    cls=_OneLineErrors,
    help="fsbir: search a fashion catalog by drawing an item and adding a few words.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# The commands, in the order `--help` lists them: the data stage, the model, search.
for name, command in (("demo-catalog", cli_data.demo_catalog), ("build-dataset", cli_data.build_dataset),
                      ("train", cli_model.train), ("eval", cli_model.evaluate), ("index", cli_search.index),
                      ("search", cli_search.search), ("serve", cli_search.serve), ("probe", cli_model.probe),
                      ("report", cli_data.report), ("quickstart", cli_data.quickstart)):
    app.command(name)(command)


def main() -> None:
    _start_children_as_module()
    app()


def _start_children_as_module() -> None:
    """Started as the `fsbir` console script, this process's `__main__` is that script, and
    multiprocessing would run it again in every child it starts by forkserver or spawn (the build's
    workers): each child would import this CLI again (about 0.4 s a worker). Naming
    `fsbir.__main__` as the main module, as `python -m fsbir` does, lets children start from the
    job's own module."""
    import importlib.util
    import sys

    main_module = sys.modules.get("__main__")
    if main_module is not None and getattr(main_module, "__spec__", None) is None:
        main_module.__spec__ = importlib.util.find_spec("fsbir.__main__")


if __name__ == "__main__":
    main()
