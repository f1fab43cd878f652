"""Unix sockets that only their owner reaches: the daemon's control socket, the log
writer's and the fence's. `listen_private` binds one with mode 0600 (0660 for the home's
group when asked), `peer_uid` says who connected (SO_PEERCRED). Imports nothing from aios.
"""
from __future__ import annotations

import os
import socket

__all__ = ["listen_private", "peer_uid"]


def listen_private(path: str, kind: int = socket.SOCK_STREAM, backlog: int = 8, *,
                   shared: bool = False) -> socket.socket:
    """A Unix socket listening on path with mode 0600 (set through the umask, so it is
    never wider), in place of a stale one (the caller's lock proves nobody listens there);
    `shared`: 0660 for the home's group when that is not our own (`_share`)."""
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    if shared:
        _share(path)
    sock.listen(backlog)
    return sock


def _share(path: str) -> None:
    """Let the home's group reach the socket when it is not our own group (a root daemon's
    dashboard, which runs with that group: aios.scaffold). Reaching it is not being
    admitted: the control socket still admits by SO_PEERCRED."""
    gid = os.stat(os.path.dirname(path) or ".").st_gid
    if gid == os.getegid():
        return
    try:
        os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, 0o660)
    except OSError:
        pass        # a group we are not in: the socket stays 0600


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
