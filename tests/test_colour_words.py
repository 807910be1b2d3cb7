import pytest

from fsbir.sketchgen import DEFAULT_LIGHT_WORDS, needs_light_item_path


@pytest.mark.parametrize("caption", [
    "a long ivory trouser", "Kalenji Mens White T-shirt", "GREY melange hoodie", "Off-White sneakers",
    "light-blue jeans", "Sky Blue shirt", "cream, wool coat", "pale pink dress", "SILVER watch",
    "beige chinos", "bright summer top", "gray", "白色のシャツ white",
])
def test_light_words_hit(caption):
    assert needs_light_item_path(caption)


@pytest.mark.parametrize("caption", [
    "skyline print tee", "Whitening-free black top", "navy trousers", "Highlighter pen case",
    "palette knife", "creamy", "greyhound print", "", None, "camisa blanca", "白色のシャツ",
])
def test_light_words_miss(caption):
    assert not needs_light_item_path(caption)


def test_custom_word_list_replaces_default():
    assert needs_light_item_path("camisa blanca", ["blanca", "blanco"])
    assert not needs_light_item_path("white shirt", ["blanca"])
    assert needs_light_item_path("t-shirt weiß", ["weiß"])  # non-Latin letters on word boundaries
    assert not needs_light_item_path("weißbier shirt", ["weiß"])


def test_default_list_matches_design():
    for word in ("white", "bright", "light", "pale", "ivory", "cream", "sky", "gray", "grey", "off-white", "silver", "beige"):
        assert word in DEFAULT_LIGHT_WORDS
