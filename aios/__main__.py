"""`python -m aios`: the aios command."""
import sys

from .cli import main

sys.exit(main())
