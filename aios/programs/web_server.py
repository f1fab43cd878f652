"""web_server: the AIOS dashboard, kept running by AIOS itself.

Serves the live dashboard of $AIOS_HOME on $AIOS_WEB_HOST:$AIOS_WEB_PORT (from [web] in
aios.toml; 127.0.0.1:8787 by default): the jobs and their buttons, each job's runs and
live log, the event log and the device. A host other than loopback needs [web] token.
The dashboard itself is the aios.web package (the runner puts the folder holding aios on
sys.path); this file only starts it. Runs until SIGTERM, then exits 0.
"""
from aios.web.server import main as serve


def main():  # a def, not an import: aios.toml's check looks for a top-level function
    return serve()
