"""I/O and orchestration: catalog readers, shard writer, build runner, engines, quickstart, web app."""
from importlib.metadata import PackageNotFoundError, version

try:
    FSBIR_VERSION = version("fsbir")
except PackageNotFoundError:  # running from a source tree that was never installed
    FSBIR_VERSION = "0+unknown"
