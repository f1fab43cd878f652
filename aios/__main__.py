"""`python -m aios`: the aios command (also the `aios` script: aios.__main__:main)."""
import sys

from . import keep_bytecode

keep_bytecode()     # before the rest of aios is imported

from .cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
