"""Server-Sent Events: one shared `watch` connection to the daemon, fanned out to every
browser.

`Hub` owns one background thread that holds the watch stream and a second connection
for reading job status. Each event is passed on as it arrives, followed by the fresh
status of its job, so a state change reaches the browsers without anyone polling. The
hub keeps the last status of every job, so a new subscriber starts from a snapshot that
is exactly as new as the stream behind it. When the daemon goes away (stop, crash,
re-exec) the thread reconnects at once and then with a growing pause, and sends a fresh
snapshot when it is back.
"""
from __future__ import annotations

import json
import queue
import socket
import threading
import time

from ..control import Client
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
        self.queue: queue.Queue = queue.Queue(QUEUE_LIMIT)
        self.dropped = False

    def put(self, message) -> None:
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.dropped = True     # its stream ends; the browser reconnects to a snapshot


class Hub:
    def __init__(self, home):
        self.home = home
        self.jobs: dict[str, dict] = {}
        self.about: dict | None = None      # the daemon's ping, None while it is unreachable
        self.subscribers: set[Subscriber] = set()
        self.lock = threading.Lock()        # jobs, about and subscribers
        self.fetching = threading.Lock()    # a status read and its publication, in order
        self.closed = threading.Event()
        self.ready = threading.Event()      # the first attempt to reach the daemon is over
        self.streaming = False              # the current session got as far as the stream
        self.watcher: Client | None = None
        self.thread = threading.Thread(target=self._run, name="aios-web-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.closed.set()
        watcher = self.watcher
        if watcher is not None:
            try:
                watcher.sock.shutdown(socket.SHUT_RDWR)   # wakes the thread from receive()
            except OSError:
                pass
        if self.thread.ident is not None:   # the server closes it even when it failed to bind
            self.thread.join(5)

    # ---- subscribers
    def subscribe(self) -> tuple[Subscriber, dict]:
        """A new subscriber and the snapshot its stream continues from."""
        sub = Subscriber()
        with self.lock:
            self.subscribers.add(sub)
            return sub, self._snapshot()

    def unsubscribe(self, sub: Subscriber) -> None:
        with self.lock:
            self.subscribers.discard(sub)

    def publish(self, kind: str, data) -> None:
        with self.lock:
            if kind == "job":
                self.jobs[data["name"]] = data = {**data, "read_at": time.time()}
            for sub in self.subscribers:
                sub.put((kind, data))

    def refresh(self, client: Client, name: str) -> None:
        """Read one job's status and pass it on. Reads and publications are serialized,
        so a slower, older read never overwrites a newer one."""
        with self.fetching:
            try:
                status = client.call("status", job=name)
            except AiosError:
                return   # the job was removed (a resync follows) or the daemon is gone
            self.publish("job", status[0])

    def _snapshot(self) -> dict:
        return {"daemon": self.about, "jobs": list(self.jobs.values())}

    def _reset(self, jobs: list | None, about: dict | None) -> None:
        with self.lock:
            if jobs is not None:
                read_at = time.time()   # a status's uptime is as of this moment
                self.jobs = {job["name"]: {**job, "read_at": read_at} for job in jobs}
            self.about = about
            for sub in self.subscribers:
                sub.put(("snapshot", self._snapshot()))

    # ---- the watch thread
    def _run(self) -> None:
        pause = 0.0
        while not self.closed.is_set():
            self.streaming = False
            try:
                self._session()
            except (AiosError, OSError, ValueError):
                pass
            self.ready.set()
            if self.streaming:
                pause = 0.0     # it was up: try again at once, quietly (a re-exec is over in a moment)
                continue
            if self.about is not None:
                self._reset(None, None)     # tell the browsers it is gone
            self.closed.wait(pause)
            pause = min(max(pause * 2, 0.1), RETRY_MAX)

    def _session(self) -> None:
        with Client(self.home, timeout=None) as watcher, Client(self.home) as reader:
            self.watcher = watcher
            try:
                if self.closed.is_set():
                    return      # close() came before self.watcher was there to shut down
                watcher.call("watch")   # before the snapshot, so nothing falls between them
                with self.fetching:
                    self._reset(reader.call("status"), reader.call("about"))
                self.streaming = True
                self.ready.set()
                while not self.closed.is_set():
                    self._on_event(reader, watcher.receive().get("event"))
            finally:
                self.watcher = None

    def _on_event(self, reader: Client, event: dict | None) -> None:
        if not event:
            return
        self.publish("event", event)
        if event["name"] in RESYNC:
            with self.fetching:
                self._reset(reader.call("status"), reader.call("about"))
        elif event.get("job"):
            self.refresh(reader, event["job"])


def stream_hub(hub: Hub, write, first: dict) -> None:
    """Send `first` merged into the snapshot, then every message, until the client goes
    away or falls too far behind. `write` raises OSError when the client is gone."""
    hub.ready.wait(READY_WAIT)   # a page opened as the server starts gets the daemon's state
    sub, snapshot = hub.subscribe()
    try:
        write(b"retry: 1000\n\n" + frame("snapshot", {**snapshot, **first, "now": time.time()}))
        while not sub.dropped:
            try:
                kind, data = sub.queue.get(timeout=KEEPALIVE)
            except queue.Empty:
                write(b": keepalive\n\n")
                continue
            write(frame(kind, data))
    finally:
        hub.unsubscribe(sub)
