"""Server-Sent Events: one shared `watch` connection to the daemon, fanned out to every
browser.

`Hub` owns one task of the server's event loop that holds the watch stream and a second
connection for reading status. Each event is passed on as it arrives, followed by the
status of its job that the daemon sent with it (read back only from a daemon that does
not), so a state change reaches the browsers without anyone polling. The
hub keeps the last status of every job, so a new subscriber starts from a snapshot that
is exactly as new as the stream behind it. A failed or backing-off job's status that
comes without its last stderr lines gets them here, from its log file. When the daemon goes away (stop, crash,
re-exec) the task reconnects at once and then with a growing pause, and sends a fresh
snapshot when it is back.
"""
from __future__ import annotations

import asyncio
import json
import os
import time

from ..errors import AiosError

KEEPALIVE = 15.0          # seconds between comment lines on a quiet stream
QUEUE_LIMIT = 1000        # messages a slow subscriber may fall behind before it is dropped
RETRY_MAX = 2.0           # longest pause between attempts to reach a stopped daemon
READY_WAIT = 5.0          # how long a first subscriber waits for the first attempt
RESYNC = {"config_applied"}   # events after which every job is read again


def frame(kind: str, data) -> bytes:
    """One SSE message. json.dumps escapes every line break and non-ASCII character, so
    no text from a job can end the data line or forge another message."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Subscriber:
    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = False

    def put(self, message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped = True     # its stream ends; the browser reconnects to a snapshot


class Hub:
    """The daemon's state as the browsers see it, kept by one task (start() it in the
    loop that serves them)."""

    def __init__(self, daemon):
        self.daemon = daemon                # aios.web.client.Daemon
        self.jobs: dict[str, dict] = {}
        self.about: dict | None = None      # the daemon's about, None while it is unreachable
        self.subscribers: set[Subscriber] = set()
        self.reader = None                  # the connection that reads status, while connected
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.fetching = asyncio.Lock()      # a status read and its publication, in order
        self.ready = asyncio.Event()        # the first attempt to reach the daemon is over
        self.task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    # ---- subscribers
    def subscribe(self) -> tuple[Subscriber, dict]:
        """A new subscriber and the snapshot its stream continues from."""
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub, self._snapshot()

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, kind: str, data) -> None:
        if kind == "job":
            self.jobs[data["name"]] = data = {**data, "read_at": time.time(), **self._log_tail(data)}
        for sub in self.subscribers:
            sub.put((kind, data))

    def _log_tail(self, job: dict) -> dict:
        """A failed or backing-off job's last stderr lines, read here from its log (the last
        8 KiB) when its status came without them (as it does with an event)."""
        if job.get("status") not in ("failed", "backoff") or "log_tail" in job:
            return {}
        from ..logs import last_words

        return {"log_tail": last_words(os.path.join(self.daemon.home, "logs", f"{job['name']}.log"))}

    async def refresh(self, name: str) -> None:
        """Read one job's status and pass it on. Reads and publications are serialized,
        so a slower, older read never overwrites a newer one."""
        async with self.fetching:
            if self.reader is None:
                return
            try:
                status = await self.reader.call("status", job=name)
            except (AiosError, OSError, ValueError):
                return   # the job was removed (a resync follows) or the daemon is gone
            self.publish("job", status[0])

    def _snapshot(self) -> dict:
        return {"daemon": self.about, "jobs": list(self.jobs.values()), "now": time.time()}

    def _reset(self, jobs: list | None, about: dict | None) -> None:
        if jobs is not None:
            read_at = time.time()   # a status's uptime is as of this moment
            self.jobs = {job["name"]: {**job, "read_at": read_at} for job in jobs}
        self.about = about
        for sub in self.subscribers:
            sub.put(("snapshot", self._snapshot()))

    # ---- the watch task
    async def _run(self) -> None:
        pause = 0.0
        while True:
            streaming = False
            try:
                streaming = await self._session()
            except (AiosError, OSError, ValueError, asyncio.TimeoutError):
                pass
            self.ready.set()
            if streaming:
                pause = 0.0     # it was up: try again at once, quietly (a re-exec is over in a moment)
                continue
            if self.about is not None:
                self._reset(None, None)     # tell the browsers it is gone
            await asyncio.sleep(pause)
            pause = min(max(pause * 2, 0.1), RETRY_MAX)

    async def _session(self) -> bool:
        """Watch the daemon until it goes away; whether it got as far as the stream."""
        async with await self.daemon.connect() as watcher, await self.daemon.connect() as reader:
            await watcher.call("watch")     # before the snapshot, so nothing falls between them
            async with self.fetching:
                self._reset(await reader.call("status"), await reader.call("about"))
                self.reader = reader
            self.ready.set()
            try:
                while True:
                    await self._on_event(reader, (await watcher.receive()).get("event"))
            except (AiosError, OSError, ValueError):
                return True
            finally:
                self.reader = None

    async def _on_event(self, reader, event: dict | None) -> None:
        if not event:
            return
        self.publish("event", event)
        if event["name"] in RESYNC:
            async with self.fetching:
                self._reset(await reader.call("status"), await reader.call("about"))
        elif event.get("data"):    # the daemon sends the job's status with the event: nothing to read back
            async with self.fetching:
                self.publish("job", event["data"])
        elif event.get("job"):
            await self.refresh(event["job"])


async def stream_hub(hub: Hub, write, first: dict) -> None:
    """Send `first` merged into the snapshot, then every message, until the client goes
    away (the task is cancelled) or falls too far behind."""
    try:
        await asyncio.wait_for(hub.ready.wait(), READY_WAIT)  # a page opened at start-up gets the state
    except asyncio.TimeoutError:
        pass
    sub, snapshot = hub.subscribe()
    try:
        await write(b"retry: 1000\n\n" + frame("snapshot", {**snapshot, **first}))
        while not sub.dropped:
            try:
                kind, data = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
            except asyncio.TimeoutError:
                await write(b": keepalive\n\n")
                continue
            await write(frame(kind, data))
    finally:
        hub.unsubscribe(sub)
