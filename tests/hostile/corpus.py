"""Builds the hostile inputs the trust tests throw at fsbir: odd files in a catalog, oversized
drawings and foreign checkpoints. Each maker writes into a folder the test owns."""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG of width × height white pixels, compressed to a few KB (a decompression bomb in
    the shape of a tall strip when width is small)."""
    raw = b"".join(b"\x00" + b"\xff" * width for _ in range(height))
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def good_jpeg(colour=(200, 30, 40)) -> bytes:
    arr = np.full((48, 64, 3), 255, np.uint8)
    arr[12:36, 16:48] = colour
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


def catalog(root: Path) -> dict[str, str]:
    """A CSV catalog whose rows point at hostile files; returns {product_id: expected status}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "good.jpg").write_bytes(good_jpeg())
    os.mkfifo(root / "pipe.jpg")
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    outside = root.parent / f"{root.name}-outside.jpg"
    outside.write_bytes(good_jpeg((0, 0, 255)))
    os.symlink(outside, root / "escape.jpg")
    rows = [
        ("good", "good.jpg", "a red box", "ok"),
        ("fifo", "pipe.jpg", "a named pipe", "read_error"),
        ("loop", "loop_a.jpg", "a symlink loop", "unsafe_path"),
        ("escape", "escape.jpg", "a link leaving the root", "unsafe_path"),
        ("nul", "bad\x00name.jpg", "a NUL byte in the path", "bad_image_ref"),
        ("huge", "good.jpg", "x" * 200_000, "ok"),  # a caption over csv's default field limit
    ]
    lines = ["id,image,caption"] + [f'{pid},{ref},"{cap}"' for pid, ref, cap, _ in rows]
    (root / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {pid: status for pid, _, _, status in rows}


def foreign_checkpoints(folder: Path, real_state_dict: dict) -> dict[str, Path]:
    """Files that are not fsbir checkpoints but may be handed to one: empty, truncated, random bytes,
    a bare state dict, a plain list."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.pt" for name in ("empty", "truncated", "random", "bare_state_dict", "list")}
    files["empty"].write_bytes(b"")
    buf = io.BytesIO()
    torch.save({"model": real_state_dict}, buf)
    files["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    files["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save(real_state_dict, files["bare_state_dict"])
    torch.save([1, 2, 3], files["list"])
    return files
