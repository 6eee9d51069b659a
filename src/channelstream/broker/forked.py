"""Encoding a snapshot in a forked copy of the process, as Redis's BGSAVE does.

The leader's state at 100,000 connections takes seconds to walk and encode, and nothing else
runs on the node meanwhile. A forked child has the state as it was at the fork (copy-on-write
memory), so it can walk and encode it on another core while the parent goes on; the parent
pays the fork itself and reads the encoded bytes back from a pipe, a chunk at a time, between
its other work.

The child does nothing but compute and write: no gevent, no logging, no sockets of the parent
(a forked gevent hub would resume the parent's greenlets: its server would accept
connections). It leaves with `os._exit`, so no exit handler of the parent runs in it.
Works the same with the server's monkey-patching (`os.fork` is then gevent's, which keeps a
child watcher so `os.waitpid` waits cooperatively; `select` waits cooperatively too) and
without it (the broker's loops are then threads).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import select
import signal
from collections.abc import Callable
from dataclasses import dataclass

PIPE_BYTES = 1 << 20  # a larger pipe: fewer reads (and wake-ups) for a large snapshot
READ_BYTES = 1 << 20


@dataclass(frozen=True)
class Child:
    """A forked child encoding a snapshot: its pid and the read end of its pipe."""

    pid: int
    fd: int


def fork_encoder(encode: Callable[[], bytes]) -> Child:
    """Fork; the child writes `encode()` to a pipe and exits. Raises OSError if the process
    cannot fork (out of memory or processes)."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # a smaller pipe only costs reads
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child
        _encode_and_exit(encode, read_fd, write_fd)
    os.close(write_fd)
    return Child(pid, read_fd)


def _encode_and_exit(encode: Callable[[], bytes], read_fd: int, write_fd: int) -> None:
    status = 1
    try:
        # a stop signal ends the child at once: the server's handlers are the parent's
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        os.close(read_fd)
        gc.disable()  # a collection would touch (and so copy) every page of the state
        view = memoryview(encode())
        while view:
            view = view[os.write(write_fd, view) :]
        status = 0
    except BaseException:  # noqa: BLE001 - the child reports by its exit status only
        pass
    finally:
        os._exit(status)


def read_encoded(child: Child) -> bytes | None:
    """The child's bytes, read as they come (waiting cooperatively under gevent), or None if
    it failed. Reaps the child."""
    chunks = []
    try:
        while True:
            select.select([child.fd], [], [])
            chunk = os.read(child.fd, READ_BYTES)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(child.fd)
        _, status = os.waitpid(child.pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    return b"".join(chunks)
