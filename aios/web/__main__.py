"""python3 -m aios.web: serve the dashboard of $AIOS_HOME (see aios.web.server)."""
import sys

from .server import main

sys.exit(main())
