"""An on-disk outbox: events wait here, durably, until the registry has answered for them.

Layout of the outbox directory::

    pending/000000000001.jsonl   events, one JSON object a line, in the order they were added
    pending/000000000001.done    ids of that file's events the registry has answered for
    rejected.jsonl               events the registry refused for good, each with its problem
    .lock, .deliver.lock         locks (writers; the one process delivering)

Files are only appended to, and every append is flushed to the disk (fsync) before ``add``
returns, so an event handed to the outbox survives a crash or a power cut. A segment file is
deleted once every event in it has been answered for. A line cut short by a crash in the middle
of an append was never acknowledged; it is ignored, and cut off before the next append.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SEGMENT = ".jsonl"
_DONE = ".done"


class OutboxError(Exception):
    """The outbox directory holds something it cannot read back."""


@dataclass(frozen=True)
class Entry:
    """One pending event and the segment file that holds it."""

    segment: Path
    event: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.event["id"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete_lines(raw: bytes) -> list[bytes]:
    """The lines of a file that end with a newline (a cut-off last line was never acknowledged)."""
    end = raw.rfind(b"\n")
    return [] if end < 0 else raw[:end].split(b"\n")


def _append(path: Path, lines: Iterable[bytes]) -> None:
    """Append whole lines and flush them to the disk, first cutting off a torn last line."""
    created = not path.exists()
    with open(path, "ab+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size:
            fh.seek(max(0, size - 1))
            if fh.read(1) != b"\n":
                fh.seek(0)
                raw = fh.read()
                fh.truncate(raw.rfind(b"\n") + 1)
                fh.seek(0, os.SEEK_END)
        for line in lines:
            fh.write(line + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    if created:
        _fsync_dir(path.parent)


class Outbox:
    """A directory of events waiting for the registry. Safe to share between processes."""

    def __init__(self, directory: str | os.PathLike[str], segment_size: int = 500) -> None:
        if segment_size < 1:
            raise ValueError("segment_size must be at least 1")
        self.directory = Path(directory)
        self.pending_dir = self.directory / "pending"
        self.rejected_path = self.directory / "rejected.jsonl"
        self.segment_size = segment_size
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # events are the company's data
        self.pending_dir.mkdir(exist_ok=True, mode=0o700)

    # --- locks ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def delivering(self) -> Iterator[bool]:
        """Hold the delivery lock if no other process holds it; yields whether it was taken."""
        with open(self.directory / ".deliver.lock", "a+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # --- adding -------------------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(self.pending_dir.glob("*" + _SEGMENT))

    def _line_count(self, segment: Path) -> int:
        return len(_complete_lines(segment.read_bytes()))

    def add(self, events: Sequence[dict[str, Any]]) -> None:
        """Append events (each with an ``id``) and return once they are on the disk."""
        for ev in events:
            if not isinstance(ev, dict) or not isinstance(ev.get("id"), str) or not ev["id"]:
                raise ValueError("every event put in the outbox needs a string 'id'")
        lines = [json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode("utf-8") for ev in events]
        if not lines:
            return
        with self._locked():
            segments = self._segments()
            tail = segments[-1] if segments else None
            number = int(tail.stem) if tail is not None else 0
            room = self.segment_size - self._line_count(tail) if tail is not None else 0
            start = 0
            if tail is not None and room > 0:
                _append(tail, lines[:room])
                start = room
            while start < len(lines):
                number += 1
                segment = self.pending_dir / f"{number:012d}{_SEGMENT}"
                segment.with_suffix(_DONE).unlink(missing_ok=True)  # left by a crash while settling
                _append(segment, lines[start : start + self.segment_size])
                start += self.segment_size

    # --- reading and settling -------------------------------------------------------------------------

    def _done_ids(self, segment: Path) -> set[str]:
        done = segment.with_suffix(_DONE)
        if not done.exists():
            return set()
        return {line.decode("utf-8") for line in _complete_lines(done.read_bytes()) if line}

    def pending(self) -> Iterator[Entry]:
        """Events not yet answered for, oldest first."""
        for segment in self._segments():
            try:
                raw = segment.read_bytes()
            except FileNotFoundError:  # settled by another process meanwhile
                continue
            done = self._done_ids(segment)
            for n, line in enumerate(_complete_lines(raw), start=1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise OutboxError(f"{segment}, line {n}: not JSON ({exc}); move the file aside") from None
                if not isinstance(event, dict) or not isinstance(event.get("id"), str):
                    raise OutboxError(f"{segment}, line {n}: not an event with an id")
                if event["id"] not in done:
                    yield Entry(segment, event)

    def count(self) -> int:
        """How many events are waiting."""
        return sum(1 for _ in self.pending())

    def settle(
        self, entries: Sequence[Entry], rejections: Sequence[tuple[Entry, dict[str, Any]]] = ()
    ) -> None:
        """Mark events answered for: ``entries`` accepted or refused for good; refused ones are
        listed in ``rejections`` with their problem and kept in ``rejected.jsonl``. A segment whose
        events are all answered for is deleted."""
        if not entries:
            return
        with self._locked():
            if rejections:
                at = datetime.now(UTC).isoformat()
                _append(
                    self.rejected_path,
                    [
                        json.dumps(
                            {"event": e.event, "problem": problem, "at": at},
                            ensure_ascii=False,
                            separators=(",", ":"),
                        ).encode("utf-8")
                        for e, problem in rejections
                    ],
                )
            by_segment: dict[Path, list[str]] = {}
            for e in entries:
                by_segment.setdefault(e.segment, []).append(e.id)
            for segment, ids in by_segment.items():
                if not segment.exists():
                    continue
                _append(segment.with_suffix(_DONE), [i.encode("utf-8") for i in ids])
                all_ids = {
                    json.loads(line)["id"] for line in _complete_lines(segment.read_bytes()) if line.strip()
                }
                if all_ids <= self._done_ids(segment):
                    segment.unlink()
                    segment.with_suffix(_DONE).unlink()
                    _fsync_dir(self.pending_dir)

    def rejected(self) -> Iterator[dict[str, Any]]:
        """Events refused for good, each as ``{"event", "problem", "at"}``."""
        if not self.rejected_path.exists():
            return
        for line in _complete_lines(self.rejected_path.read_bytes()):
            if line.strip():
                yield json.loads(line)
