"""The bad-input corpus (cases.py) against one live daemon: every case gets its exact
one-line error, and after every case the daemon is up and its always jobs are the same
processes (conftest.Live.unharmed)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from aios import control
from aios.control import MAX_LINE
from tests.integration.conftest import ROOT

from . import cases
from .conftest import BASE

SOCKET = cases.SOCKET + [
    ("line-over-1-MiB", b'{"op": "ping", "pad": "' + b"x" * (MAX_LINE + 10) + b'"}',
     f"request too large: over {MAX_LINE} bytes in one line"),
]
TRIED: dict[str, int] = {}


def send_line(home, line: bytes) -> dict:
    """One raw line on a fresh connection; the one reply line, decoded."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(home / "aios.sock"))
        try:
            sock.sendall(line + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read everything (an oversized line); its reply is waiting
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.split(b"\n")[0])


@pytest.mark.parametrize("case_id, kind, lines, error", cases.CONFIG, ids=[c[0] for c in cases.CONFIG])
def test_config(live, case_id, kind, lines, error):
    expected = error.replace("{home}", str(live.home))
    text = lines + "\n" + (BASE if kind == "job" else "")   # a refused file changes nothing anyway
    TRIED["aios.toml files"] = TRIED.get("aios.toml files", 0) + 1
    if kind == "file":
        with pytest.raises(control.AiosError) as refused:
            control.call(live.home, "apply", text=text)
        assert str(refused.value) == expected
    else:   # applied, the file is refused whole; checked, the error is listed alone
        with pytest.raises(control.AiosError) as refused:
            control.call(live.home, "apply", text=text)
        assert str(refused.value) == f"1 error; aios.toml left as it was:\n  {expected}"
        result = control.call(live.home, "apply", text=text, check=True)
        assert result["errors"] == [expected]
        assert result["removed"] == [] and {"svc", "svc2", "work", "prog"} <= set(result["unchanged"])
        assert result["added"] == (["Tick"] if case_id == "names-differ-in-case-only" else [])
    live.unharmed()


@pytest.mark.parametrize("case_id, argv, code, stderr", cases.CLI, ids=[c[0] for c in cases.CLI])
def test_cli(live, case_id, argv, code, stderr):
    TRIED["CLI invocations"] = TRIED.get("CLI invocations", 0) + 1
    done = _aios(live.home, argv)
    expected = stderr.replace("{home}", str(live.home)).replace("{pid}", str(live.daemon.pid))
    assert (done.returncode, done.stderr) == (code, expected)
    live.unharmed()


def _aios(home, argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aios", "--home", str(home), *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("case_id, line, error", SOCKET, ids=[c[0] for c in SOCKET])
def test_socket(live, case_id, line, error):
    TRIED["control-socket lines"] = TRIED.get("control-socket lines", 0) + 1
    assert send_line(live.home, line) == {"ok": False, "error": error}
    live.unharmed()


def test_the_corpus_left_the_jobs_and_the_queue_alone(live):
    """Runs after the cases (file order): nothing was queued or run by a refused request,
    and the configuration is back to the good one."""
    control.call(live.home, "apply", text=BASE)
    assert not (live.home / "work.txt").exists() and not (live.home / "echo.jsonl").exists()
    assert all(j["last_run"] is None for j in control.call(live.home, "status") if j["name"] in ("work", "prog"))
    live.unharmed()
    configs, clis = len(cases.CONFIG), len(cases.CLI)
    total = configs + clis + len(SOCKET)
    print(f"\n[bad input figures] cases: {total} ({configs} aios.toml, {clis} CLI, {len(SOCKET)} socket); "
          f"answered with their exact error: {TRIED}; checks that the daemon and its jobs were "
          f"unharmed: {live.cases}")
    assert total >= 40
