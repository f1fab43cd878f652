"""The base of the peers the harness installs itself (bench/peers.py)."""
from __future__ import annotations

from .. import peers
from . import System


class Peer(System):
    """A peer system; unavailable, with the install's reason, when it could not be installed."""

    def __init__(self, env, scratch, install: peers.Install):
        super().__init__(env, scratch)
        self.install = install

    def unavailable(self) -> str | None:
        return self.install.error
