"""python3 -m bench.profiling WHAT [N] -- where AIOS's time and memory go (bench/PROFILE.md).

WHAT is one of: imports (-X importtime of the daemon, with and without site, and of
`aios status`), cprofile N (cProfile of the daemon from interpreter start to SIGTERM with
N always jobs), roundtrip (ping: daemon and client CPU per call, an echo-server floor,
py-spy and strace -c of the daemon), triggers (the same for `trigger`), rss (the
daemon's memory by mapping and by import). Each starts `python3 simple_orchestrator.py`
of this tree with AIOS_HOME in a temp folder and the benchmark's `sleep` jobs, waits
for `ping`, and stops it with SIGTERM. py-spy and strace are used when on PATH.
"""
from __future__ import annotations

import io
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import ROOT
from .systems import SLEEP, Job, sleepers
from .systems.aios import _table, ping

PYCACHE = Path(tempfile.gettempdir()) / "aios-profiling-pycache"
ECHO = r'''
import json, os, selectors, socket, sys
srv = socket.socket(socket.AF_UNIX); srv.bind(sys.argv[1]); srv.listen(); srv.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(srv, selectors.EVENT_READ)
print("up", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is srv:
            conn, _ = srv.accept(); conn.setblocking(False); sel.register(conn, selectors.EVENT_READ)
            continue
        data = key.fileobj.recv(65536)
        if not data:
            sys.exit(0)
        json.loads(data)
        key.fileobj.send(json.dumps({"ok": True, "result": {"pid": os.getpid()}}).encode() + b"\n")
'''


# ---------------------------------------------------------------- a daemon to look at

class Daemon:
    def __init__(self, jobs, prefix: tuple = (), stderr: bool = False):
        self.home = Path(tempfile.mkdtemp(prefix="aios-profiling-")) / "home"
        self.home.mkdir()
        (self.home / "aios.toml").write_text("".join(_table(job) for job in jobs))
        self.err = self.home.parent / "stderr"
        argv = [*(prefix or (sys.executable,)), str(ROOT / "simple_orchestrator.py")]
        t0 = time.perf_counter()
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, env=env(self.home), cwd=str(self.home),
                                         stderr=err if stderr else subprocess.DEVNULL)
        while not ping(str(self.home / "aios.sock")):
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited with status {self.proc.returncode}")
            time.sleep(0.001)
        self.ready_ms = (time.perf_counter() - t0) * 1000
        self.pid = int((self.home / "aios.pid").read_text().split()[0])

    def stop(self) -> str:
        """SIGTERM (the daemon stops its jobs), then its stderr; safe to call twice."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self.err.read_text(errors="replace") if self.err.exists() else ""
        shutil.rmtree(self.home.parent, ignore_errors=True)
        return text

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def env(home: Path) -> dict:
    result = {**os.environ, "AIOS_HOME": str(home), "DEVICE_TAGS": "", "PYTHONPYCACHEPREFIX": str(PYCACHE)}
    result.pop("PYTHONDONTWRITEBYTECODE", None)
    return result


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int) -> dict:
    keys = ("VmRSS", "RssAnon", "RssFile")
    return {line.split(":")[0]: line.split(":")[1].strip() for line in open(f"/proc/{pid}/status")
            if line.startswith(keys)}


# ---------------------------------------------------------------- imports

def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) per `-X importtime` line."""
    found = re.findall(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", text)
    return [(int(s), int(c), len(pad) // 2, name) for s, c, pad, name in found]


def show_imports(title: str, rows) -> None:
    top = [r for r in rows if r[2] == 0]
    print(f"== {title}: {len(rows)} modules, top-level cumulative {sum(r[1] for r in top) / 1000:.1f} ms")
    for r in sorted(top, key=lambda r: -r[1])[:10]:
        print(f"   cum {r[1] / 1000:6.2f} ms  {r[3]}")
    print("   heaviest self: " + ", ".join(f"{r[3]} {r[0] / 1000:.2f}" for r in sorted(rows, key=lambda r: -r[0])[:10]))


def imports(_n: int) -> None:
    for flags in ((), ("-S",)):
        Daemon(sleepers(1), (sys.executable, *flags)).stop()                 # warm the bytecode cache
        d = Daemon(sleepers(1), (sys.executable, *flags, "-X", "importtime"), stderr=True)
        show_imports(f"daemon {' '.join(flags)} (1 job)", parse_importtime(d.stop()))
    with Daemon(sleepers(100)) as d:
        cli = [sys.executable, "-X", "importtime", "-m", "aios", "--home", str(d.home), "status"]
        for _ in range(3):
            done = subprocess.run(cli, cwd=ROOT, env=env(d.home), capture_output=True, text=True, check=True)
    show_imports("`python -m aios status`, 100 jobs", parse_importtime(done.stderr))


# ---------------------------------------------------------------- cProfile of start-up

def cprofile(n: int) -> None:
    out = Path(tempfile.gettempdir()) / f"aios-start{n}.prof"
    Daemon(sleepers(n)).stop()
    d = Daemon(sleepers(n), (sys.executable, "-m", "cProfile", "-o", str(out)), stderr=True)
    own = re.findall(r"ready in ([0-9.]+) ms", d.stop())
    print(f"== {n} jobs: ping answered after {d.ready_ms:.0f} ms under cProfile (own 'ready in' {own[:1]}); {out}")
    for order, count in (("tottime", 25), ("cumulative", 35)):
        buf = io.StringIO()
        pstats.Stats(str(out), stream=buf).sort_stats(order).print_stats(count)
        print(buf.getvalue())


# ---------------------------------------------------------------- round trips

def per_call(home: Path, pid: int, op: str, n: int, **fields) -> str:
    from aios.control import Client

    with Client(home) as client:
        for _ in range(50):
            client.call(op, **fields)
        d0, c0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        for _ in range(n):
            client.call(op, **fields)
        t1, c1, d1 = time.perf_counter(), time.process_time(), cpu_seconds(pid)
    return (f"{op}: wall {(t1 - t0) / n * 1e6:.1f} µs/call, daemon CPU {(d1 - d0) / n * 1e6:.1f}, "
            f"client CPU {(c1 - c0) / n * 1e6:.1f}")


def under_tools(d: Daemon, op: str, **fields) -> None:
    from aios.control import Client

    if shutil.which("py-spy"):
        raw = Path(tempfile.gettempdir()) / f"aios-{op}.folded"
        spy = subprocess.Popen(["py-spy", "record", "-p", str(d.pid), "-r", "2000", "-f", "raw", "-o", str(raw),
                                "-d", "5", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Client(d.home) as client:
            t0 = time.perf_counter()
            while spy.poll() is None and time.perf_counter() - t0 < 10:
                client.call(op, **fields)
        spy.wait()
        fold(raw)
    if shutil.which("strace"):
        out = Path(tempfile.gettempdir()) / f"aios-{op}.strace"
        st = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(d.pid)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            print(per_call(d.home, d.pid, op, 1000, **fields) + " (under strace)")
        finally:
            st.send_signal(signal.SIGINT)
        try:
            st.wait(10)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait()
        print(out.read_text())


def fold(raw: Path, top: int = 20) -> None:
    """Inclusive and self shares of a py-spy raw (folded) profile."""
    total, inclusive, own = 0, {}, {}
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        frames, count = stack.split(";"), int(count)
        total += count
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    print(f"py-spy: {total} samples; inclusive:")
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("self:")
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top // 2]:
        print(f"  {100 * count / total:5.1f}%  {name}")


def roundtrip(n: int) -> None:
    with Daemon(sleepers(1)) as d:
        print(per_call(d.home, d.pid, "ping", n))
        under_tools(d, "ping")
    print(echo_floor(n))


def echo_floor(n: int) -> str:
    from aios.control import Client

    path = Path(tempfile.mkdtemp(prefix="aios-echo-")) / "echo.sock"
    server = subprocess.Popen([sys.executable, "-c", ECHO, str(path)], stdout=subprocess.PIPE)
    server.stdout.readline()
    client = Client.__new__(Client)
    client.sock, client.buffer = socket.socket(socket.AF_UNIX), b""
    client.sock.connect(str(path))
    with client:
        t0 = time.perf_counter()
        for _ in range(n):
            client.call("ping")
    server.wait()
    shutil.rmtree(path.parent, ignore_errors=True)
    return ("the same client against a minimal selectors+json echo server: "
            f"{(time.perf_counter() - t0) / n * 1e6:.1f} µs/call")


def triggers(n: int) -> None:
    with Daemon([Job("work", SLEEP, kind="trigger")]) as d:
        print(per_call(d.home, d.pid, "trigger", n, job="work"))
        under_tools(d, "trigger", job="work")


# ---------------------------------------------------------------- memory

def rss(_n: int) -> None:
    for flags in ((), ("-S",)):
        with Daemon(sleepers(100), (sys.executable, *flags)) as d:
            time.sleep(1)
            print(f"daemon {' '.join(flags)} with 100 jobs: {status_kib(d.pid)}")
            if not flags:
                mappings(d.pid)
    print(imports_rss())


def mappings(pid: int, top: int = 12) -> None:
    sizes, name = {}, "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = parts[5] if len(parts) > 5 else "[anon]"
        elif parts[0] == "Rss:":
            sizes[name] = sizes.get(name, 0) + int(parts[1])
    for name, kib in sorted(sizes.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {kib:6d} kB  {name}")


def imports_rss() -> str:
    """RSS after each top-level import of a real start, replayed in a fresh interpreter."""
    d = Daemon(sleepers(1), (sys.executable, "-X", "importtime"), stderr=True)
    mods = [r[3] for r in parse_importtime(d.stop()) if r[2] == 0]
    code = (f"import importlib, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            "def rss(): return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
            f"base = prev = rss()\nfor m in {mods!r}:\n    importlib.import_module(m); now = rss()\n"
            "    if now - prev >= 64: print(f'  +{now - prev} kB  {m}')\n    prev = now\n"
            "print(f'  imports: +{rss() - base} kB over {base} kB')\n")
    return subprocess.run([sys.executable, "-c", code], env=env(Path("/nonexistent")), capture_output=True,
                          text=True, check=True).stdout


WHAT = {"imports": imports, "cprofile": cprofile, "roundtrip": roundtrip, "triggers": triggers, "rss": rss}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in WHAT:
        raise SystemExit(__doc__)
    WHAT[sys.argv[1]](int(sys.argv[2]) if len(sys.argv) > 2 else {"cprofile": 100}.get(sys.argv[1], 5000))
