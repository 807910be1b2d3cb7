"""Row-level failures that a pipeline records instead of crashing on."""
from fsbir import FsbirError

# Reasons sketchgen gives; the shard format lists them with the other row status values.
DECODE_ERROR = "decode_error"
TOO_LARGE = "too_large"
TOO_SMALL = "too_small"
BAD_ASPECT = "bad_aspect"


class SketchgenError(FsbirError):
    """A reason a single input cannot become a (photo, sketch) pair.

    `reason` is the short machine status written to the shard (`decode_error`, `too_large`, ...);
    the message is the human detail kept in `error_message`.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
