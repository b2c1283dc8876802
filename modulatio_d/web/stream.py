"""Following a file as it grows, for `GET /v1/events` and a step's log.

events.jsonl is followed by position: an event's id is `INODE:OFFSET`, the byte offset
just past its line in the file whose inode is INODE, so `Last-Event-ID` resumes right
after the last event a client saw. When the file is renamed away (rotation) and a new
one appears, what is left of the old file is read to its end first (it stays open),
then the new file from its start; an id naming an inode that is no longer
events.jsonl resumes at the start of the current file. Only whole lines are sent: a
line still being written waits for its newline. A step's log is followed the same way
while its step runs, then read to its end.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio

from modulatio_d.store import fs

POLL_S = 0.1
KEEP_ALIVE_S = 15.0
CHUNK = 1 << 16
MAX_LINE = 1 << 20  # a "line" longer than this without a newline is dropped


class Follower:
    """Whole lines of `path` from a position, across renames of the file."""

    def __init__(self, path: Path, inode: int | None = None, offset: int | None = None):
        self.path = path
        self.fd: int | None = None
        self.inode = 0
        self.offset = 0
        self.partial = b""
        self._open(inode, offset)

    def _open(self, inode: int | None, offset: int | None) -> bool:
        try:
            fd = fs.open_regular(self.path, os.O_RDONLY, folders=False)
        except (FileNotFoundError, fs.Refused):
            return False
        st = os.fstat(fd)
        if self.fd is not None:
            fs.close(self.fd)
        self.fd, self.inode, self.partial = fd, st.st_ino, b""
        if offset is None:  # from now
            self.offset = st.st_size
        else:
            self.offset = offset if inode == st.st_ino and offset <= st.st_size else 0
        return True

    def news(self) -> bool:
        """Whether the file may hold more than was read: grown, or replaced."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return self.fd is None or st.st_ino != self.inode or st.st_size > self.offset

    def read(self) -> list[tuple[int, bytes]]:
        """The whole lines written since the last call, each with the offset past it."""
        if self.fd is None:
            self._open(self.inode, 0)
            if self.fd is None:
                return []
        out = self._drain()
        try:
            now = os.stat(self.path).st_ino
        except OSError:
            now = self.inode
        if now != self.inode and self._open(None, 0):  # rotated: the old one is read out
            out += self._drain()
        return out

    def _drain(self) -> list[tuple[int, bytes]]:
        out = []
        while True:
            data = os.pread(self.fd, CHUNK, self.offset)
            if not data:
                return out
            start = self.offset - len(self.partial)  # where the kept partial line begins
            self.offset += len(data)
            buf, pos = self.partial + data, 0
            while (nl := buf.find(b"\n", pos)) >= 0:
                out.append((start + nl + 1, buf[pos:nl]))
                pos = nl + 1
            self.partial = buf[pos:] if len(buf) - pos <= MAX_LINE else b""

    def close(self) -> None:
        if self.fd is not None:
            fs.close(self.fd)
            self.fd = None


def parse_id(value: str | None) -> tuple[int | None, int | None]:
    """(inode, offset) of a `Last-Event-ID`; (None, None) when absent or malformed."""
    try:
        inode, offset = (value or "").split(":")
        return int(inode), int(offset)
    except ValueError:
        return None, None


class Watch:
    """One look at a file's size and inode every POLL_S for every stream that follows it:
    a hundred clients cost one stat a tenth of a second, not a hundred. `changed()`
    returns when the file may have news, or after `timeout`."""

    def __init__(self, path: Path):
        self.path = path
        self.seen: tuple[int, int] | None = None
        self.event: asyncio.Event | None = None
        self.task: asyncio.Task | None = None

    async def changed(self, timeout: float) -> bool:
        if self.event is None:
            self.event = asyncio.Event()
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._poll())
        event = self.event
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _poll(self) -> None:
        while True:
            try:
                st = os.stat(self.path)
                now = (st.st_ino, st.st_size)
            except OSError:
                now = None
            if now != self.seen:
                self.seen = now
                self.event.set()  # everyone waiting wakes; later waits use a new event
                self.event = asyncio.Event()
            await asyncio.sleep(POLL_S)


async def events(path: Path, inode: int | None, offset: int | None, sse: bool,
                 wanted: Callable[[dict], bool], watch: Watch) -> AsyncIterator[bytes]:
    """The events of `path` after (inode, offset), or from now when both are None, as SSE
    messages (`sse`) or JSON lines, until the client goes (Starlette then cancels this
    generator: a streaming response listens for the disconnect itself)."""
    follower = Follower(path, inode, offset)
    try:
        if sse:
            yield b"retry: 1000\n\n"
        while True:
            lines = await anyio.to_thread.run_sync(follower.read) if follower.news() else []
            for end, line in lines:
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(event, dict) or not wanted(event):
                    continue
                text = json.dumps(event, default=str)
                if sse:
                    yield (f"id: {follower.inode}:{end}\nevent: {event.get('event', 'event')}"
                           f"\ndata: {text}\n\n").encode()
                else:
                    yield text.encode() + b"\n"
            if lines:
                continue
            if not await watch.changed(KEEP_ALIVE_S) and sse:
                yield b": keep-alive\n\n"  # a comment keeps proxies from closing the stream
    finally:
        follower.close()
