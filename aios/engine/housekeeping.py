"""Retention: the daemon prunes what is older than `[retention] days` (ended runs, done
triggers, events) itself, in small batches, one per loop turn, so a trigger never waits
for more than one batch (a few ms, even on a 1 GB database). Part of the engine.
"""
from __future__ import annotations

from ..store import StoreError

FIRST_PRUNE = 60.0       # seconds after start-up (start-up itself stays quick)
PRUNE_EVERY = 3600.0
PRUNE_BATCH = 300        # rows per table per batch: about 1-4 ms of write lock


class Housekeeping:
    def __init__(self, engine):
        self.engine = engine
        self.removed = 0

    def start(self) -> None:
        self.engine.loop.call_later(FIRST_PRUNE, self.prune)

    def prune(self) -> None:
        """One batch; the next in the next loop turn, until nothing old is left."""
        eng = self.engine
        days = eng.settings.retention_days
        if eng.shutting_down:
            return
        if days <= 0 or eng.recorder.failing:
            return self._later()
        try:
            removed = eng.store.prune(eng.loop.wall - days * 86400, PRUNE_BATCH)
        except StoreError as exc:
            eng.recorder.failed(exc)
            return self._later()
        self.removed += removed
        if removed:
            eng.loop.call_soon(self.prune)
            return None
        if self.removed:
            eng.event("pruned", None, f"{self.removed} row(s) older than {days:g} days removed")
        self.removed = 0
        return self._later()

    def _later(self) -> None:
        self.engine.loop.call_later(PRUNE_EVERY, self.prune)
