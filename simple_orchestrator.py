#!/usr/bin/env python3
"""AIOS, started the original way: `python3 simple_orchestrator.py [--force] [--force-new-db]`.

Runs the orchestrator in the foreground with this folder as its home (or $AIOS_HOME):
aios.toml, Programs/, orchestrator.db and logs/ live here. Ctrl-C (or SIGTERM) stops
every job gracefully and exits. Standard library only.
"""
import os
import sys
from pathlib import Path

USAGE = """usage: python3 simple_orchestrator.py [--force] [--force-new-db] [--help] [--version]

Run AIOS in the foreground, with this folder as its home (or $AIOS_HOME).
On first start it writes aios.toml and Programs/ with the seven example jobs.

  --force          clear the stored job state and pending triggers first
  --force-new-db   if orchestrator.db is empty, damaged or not AIOS's, move it aside
                   (orchestrator.db.broken-TIME) and begin a new one
  --help           show this message
  --version        show AIOS's version, the Python running it and where it is

Ctrl-C or SIGTERM stops every job gracefully; a second Ctrl-C kills them at once.
"""


def main(argv: list) -> int:
    unknown = [a for a in argv if a not in ("--force", "--force-new-db", "--help", "-h", "--version")]
    if unknown:
        sys.stderr.write(f"simple_orchestrator.py: unknown option {unknown[0]!r}; use --force or --help\n")
        return 2
    if "--help" in argv or "-h" in argv:
        sys.stdout.write(USAGE)
        return 0
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    from aios import keep_bytecode

    keep_bytecode()     # before the rest of aios is imported
    if "--version" in argv:
        from aios import version_line

        sys.stdout.write(version_line() + "\n")
        return 0
    from aios.engine.daemon import serve
    from aios.spec import AiosError

    home = Path(os.environ.get("AIOS_HOME") or here)
    if sys.stdout.isatty():     # the dashboard's login link, for a person (never into a log)
        from aios.cli.dashboard import announce

        announce(str(home))
    try:
        return serve(home, force="--force" in argv, force_new_db="--force-new-db" in argv)
    except AiosError as exc:
        sys.stderr.write(f"aios: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
