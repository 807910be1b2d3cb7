"""Where a catalog's image references may point: resolved against the catalog root, symlinks
included, and refused when they leave it. The catalog reader checks each reference once; the worker
checks the file it opens again with `is_inside`."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from fsbir.shardformat import Status


def is_inside(path: str, root: str) -> bool:
    """`path` is `root` or below it; both absolute and resolved (strings, not Paths: this runs for
    every row)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Confiner:
    """Resolves image references against the catalog root (symlinks included) and refuses those
    that leave it. A catalog's rows share a few folders: each folder is resolved once, and a row
    costs one lstat of its own name (a name that is a link is resolved in full). The worker checks
    the file it opens again, so a path swapped after this check is still refused."""

    def __init__(self, root: Path, max_folders: int = 4096):
        self.root = os.path.realpath(root)
        self._folders: dict[str, str] = {}
        self.max_folders = max_folders

    def __call__(self, ref: str) -> str:
        if "\x00" in ref:
            raise CatalogRefError(Status.BAD_IMAGE_REF, "the image path contains a NUL byte")
        folder, name = os.path.split(os.path.join(self.root, ref))
        try:
            if name in ("", ".", ".."):
                candidate = self._resolve(os.path.join(folder, name))
            else:
                real = self._folders.get(folder)
                if real is None:
                    real = self._resolve(folder)
                    if len(self._folders) < self.max_folders:
                        self._folders[folder] = real
                candidate = os.path.join(real, name)
                if os.path.islink(candidate):
                    candidate = self._resolve(candidate)
        except CatalogRefError as exc:
            raise CatalogRefError(exc.status, f"{ref!r} {exc}") from None
        if not is_inside(candidate, self.root):
            raise CatalogRefError(Status.UNSAFE_PATH, f"{ref!r} resolves outside the catalog root {self.root}")
        return candidate

    @staticmethod
    def _resolve(path: str) -> str:
        """os.path.realpath, with a symlink loop an error (as Path.resolve makes it)."""
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError) as exc:
            raise CatalogRefError(Status.BAD_IMAGE_REF, f"cannot be resolved: {exc}") from None
        try:
            os.stat(real)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CatalogRefError(Status.UNSAFE_PATH, f"cannot be resolved: {exc.strerror or exc}") from None
            # missing, or not a folder: the worker reports it with its own status
        return real


class CatalogRefError(Exception):
    """Why one row's image reference cannot be used; becomes that row's status."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
