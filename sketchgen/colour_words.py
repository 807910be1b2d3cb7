"""The colour-word rule: captions naming a light colour get the light-item sketch path.

A light garment photographed on a light background has almost no contrast at its outline, so plain
Canny misses it. The caption tells us when that is likely.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

DEFAULT_LIGHT_WORDS: tuple[str, ...] = (
    "white", "off-white", "bright", "light", "pale", "ivory", "cream",
    "sky", "gray", "grey", "silver", "beige",
)


@lru_cache(maxsize=64)
def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = sorted({w.casefold().strip() for w in words if w and w.strip()}, key=len, reverse=True)
    if not alternatives:
        return re.compile(r"(?!x)x")  # matches nothing
    body = "|".join(re.escape(w) for w in alternatives)
    # Word boundaries that work for any script: not preceded/followed by a letter or digit.
    return re.compile(rf"(?<![^\W_])(?:{body})(?![^\W_])")


def find_words(text: str | None, words: Iterable[str]) -> list[str]:
    """The words of `words` that `text` names (case-folded, whole words, the longest first where
    two overlap: "navy blue" is one colour, not navy and blue), in order of appearance."""
    if not text:
        return []
    return _pattern(tuple(words)).findall(text.casefold())


def needs_light_item_path(caption: str | None, words: Iterable[str] = DEFAULT_LIGHT_WORDS) -> bool:
    """True when the caption (case-folded, whole-word match) names one of the light-colour words."""
    return bool(find_words(caption, words))
