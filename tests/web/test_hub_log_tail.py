"""The hub gives a failed or backing-off job's status its last stderr lines, read from the
job's log in the web process, when the status came without them (with an event)."""
from __future__ import annotations

from aios.web.client import Daemon
from aios.web.sse import Hub


def test_a_status_without_its_log_tail_gets_it_from_the_log(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "web.log").write_bytes(
        b"2026-12-01T18:00:00.000Z stdout F starting\n2026-12-01T18:00:00.001Z stderr F Address already in use\n")
    hub = Hub(Daemon(tmp_path))
    hub.publish("job", {"name": "web", "status": "backoff"})
    assert hub.jobs["web"]["log_tail"] == {"stream": "stderr", "lines": ["Address already in use"]}
    hub.publish("job", {"name": "web", "status": "failed", "log_tail": None})      # the daemon's own: kept
    assert hub.jobs["web"]["log_tail"] is None
    hub.publish("job", {"name": "web", "status": "running"})
    assert "log_tail" not in hub.jobs["web"]
    hub.publish("job", {"name": "gone", "status": "failed"})
    assert hub.jobs["gone"]["log_tail"] is None
