"""fsbir: search a fashion catalog by drawing an item and adding a few words.

The repository's folders install as one package: `sketchgen/` → `fsbir.sketchgen`,
`shardformat/` → `fsbir.shardformat`, `retrieval/` → `fsbir.retrieval`, `pipelines/` →
`fsbir.pipelines`, `cli.py` → `fsbir.cli`. This module is the bottom of the import graph: the
version and the one error type that every command turns into a one-line message.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("fsbir")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


class FsbirError(Exception):
    """A problem the user can fix (bad path, unknown model, corrupt file, nonsense option).

    Every command prints its message as one line on stderr and exits with status 2; anything
    else that escapes is a bug and keeps its traceback.
    """
