"""`python -m fsbir ...` runs the same app as the `fsbir` console script (torchrun needs a module)."""
from fsbir.cli import main

if __name__ == "__main__":
    main()
