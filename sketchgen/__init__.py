"""Image → sketch. Pure functions on bytes and arrays: no files, no Parquet, no CLI."""
from .colour_words import DEFAULT_LIGHT_WORDS, needs_light_item_path
from .decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, decode_sketch, load_rgb
from .edges import EdgeParams, SketchSettings, edge_map, edge_sketch
from .errors import SketchgenError
from .geometry import letterbox
from .pair import SketchPair, make_pair

__all__ = [
    "DEFAULT_LIGHT_WORDS", "DEFAULT_MAX_PIXELS", "DEFAULT_MIN_SIDE", "EdgeParams", "SketchPair",
    "SketchSettings", "SketchgenError", "decode_sketch", "edge_map", "edge_sketch", "letterbox", "load_rgb",
    "make_pair", "needs_light_item_path",
]
