"""Watches /proc for copies of AIOS jobs, as a separate process so that it samples every
few milliseconds without competing with the test for its interpreter.

    python3 sampler.py HOME OUT_JSON INTERVAL_SECONDS JOB [JOB ...]

Every INTERVAL it lists the live (not zombie) process-group leaders whose environment
holds AIOS_HOME=HOME and AIOS_JOB=<one of the JOBs>, and records the largest number of
simultaneous copies of each job and every moment two or more were seen. It stops on
SIGTERM or SIGINT and writes its report as JSON to OUT_JSON. Standard library only; reads
only /proc.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

_stop = False


def _on_signal(signum, frame) -> None:
    global _stop
    _stop = True


def _stat(pid: str):
    """(state, pgrp, start ticks) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def _job_of(pid: str, marker: bytes, jobs: set[bytes]) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    if marker not in env:
        return None
    for item in env:
        if item.startswith(b"AIOS_JOB="):
            name = item[len(b"AIOS_JOB="):]
            return name if name in jobs else None
    return None


def main(argv: list[str]) -> int:
    home, out, interval, names = argv[0], argv[1], float(argv[2]), argv[3:]
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    marker, jobs = f"AIOS_HOME={home}".encode(), {n.encode() for n in names}
    me = str(os.getpid())
    # pid -> (start ticks, job or None, when first seen). A process can be caught between
    # fork and exec (not yet a group leader, or a leader with the daemon's environment),
    # so "not a job" is trusted only a second after it was first seen; from then on such
    # a pid is skipped while it exists, which keeps a scan cheap on a busy machine.
    known: dict = {}
    peak = {n: 0 for n in names}
    doubles: list = []
    samples = 0
    began = time.monotonic()
    while not _stop:
        now = time.monotonic()
        counts: dict = {}
        pids = [pid for pid in os.listdir("/proc") if pid.isdigit() and pid != me]
        for pid in pids:
            ticks, job, first = known.get(pid, (None, None, now))
            if job is None and now - first >= 1.0:
                continue
            st = _stat(pid)
            if st is None:
                continue
            if st[2] != ticks:   # a new process (or a reused pid)
                ticks, job, first = st[2], None, now
            if job is None and st[1] == int(pid) and st[0] not in (b"Z", b"X"):
                job = _job_of(pid, marker, jobs)
            known[pid] = (ticks, job, first)
            if job is not None and st[0] not in (b"Z", b"X") and st[1] == int(pid):
                counts.setdefault(job.decode(), []).append(int(pid))
        for pid in set(known) - set(pids):
            del known[pid]
        for name, found in counts.items():
            peak[name] = max(peak[name], len(found))
            if len(found) > 1:
                doubles.append({"t": round(now - began, 3), "job": name, "pids": sorted(found)})
        samples += 1
        time.sleep(interval)
    with open(out, "w") as f:
        json.dump({"samples": samples, "seconds": round(time.monotonic() - began, 1), "peak": peak,
                   "doubles": doubles[:100], "double_samples": len(doubles)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
