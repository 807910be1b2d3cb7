"""Image → sketch. Pure functions on bytes and arrays: no files, no Parquet, no CLI."""
from .colour_words import DEFAULT_LIGHT_WORDS, find_words, needs_light_item_path
from .decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, decode_sketch, load_rgb
from .edges import SKETCH_STYLES, ContourParams, EdgeParams, SketchSettings, contour_input, edge_map, edge_sketch
from .errors import SketchgenError
from .geometry import letterbox
from .pair import PreparedPair, SketchPair, detector_input, finish_pair, make_pair, prepare_pair

__all__ = [
    "DEFAULT_LIGHT_WORDS", "DEFAULT_MAX_PIXELS", "DEFAULT_MIN_SIDE", "SKETCH_STYLES", "ContourParams", "EdgeParams",
    "PreparedPair", "SketchPair", "SketchSettings", "SketchgenError", "contour_input", "decode_sketch",
    "detector_input", "edge_map", "edge_sketch", "find_words", "finish_pair", "letterbox", "load_rgb", "make_pair",
    "needs_light_item_path", "prepare_pair",
]
