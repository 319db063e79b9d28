"""The outbox on disk: appends that survive a crash, segments that go once answered for, a line cut
short by a crash ignored and cut off, one deliverer at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from batterytrace.client import Outbox, OutboxError


def ev(n: int) -> dict:
    return {"id": f"00000000-0000-4000-8000-{n:012d}", "type": "manufactured", "n": n}


def test_events_come_back_in_order_across_segments(tmp_path):
    box = Outbox(tmp_path, segment_size=3)
    box.add([ev(1), ev(2)])
    box.add([ev(3), ev(4), ev(5), ev(6), ev(7)])
    assert [e.event["n"] for e in box.pending()] == [1, 2, 3, 4, 5, 6, 7]
    segments = sorted(p.name for p in (tmp_path / "pending").glob("*.jsonl"))
    assert segments == ["000000000001.jsonl", "000000000002.jsonl", "000000000003.jsonl"]
    # a fresh Outbox over the same directory (a restarted process) sees the same
    assert [e.event["n"] for e in Outbox(tmp_path, segment_size=3).pending()] == [1, 2, 3, 4, 5, 6, 7]


def test_settled_events_leave_and_empty_segments_are_deleted(tmp_path):
    box = Outbox(tmp_path, segment_size=2)
    box.add([ev(n) for n in range(1, 6)])
    entries = list(box.pending())
    box.settle(entries[:3])
    assert [e.event["n"] for e in box.pending()] == [4, 5]
    assert box.count() == 2
    names = sorted(p.name for p in (tmp_path / "pending").iterdir())
    assert names == ["000000000002.done", "000000000002.jsonl", "000000000003.jsonl"]
    box.settle(entries[3:], [(entries[4], {"code": "battery.exists"})])
    assert box.count() == 0
    assert list((tmp_path / "pending").iterdir()) == []
    (kept,) = box.rejected()
    assert kept["event"] == ev(5)
    assert kept["problem"] == {"code": "battery.exists"}


def test_a_line_cut_short_by_a_crash_is_ignored_then_cut_off(tmp_path):
    box = Outbox(tmp_path, segment_size=10)
    box.add([ev(1)])
    segment = tmp_path / "pending" / "000000000001.jsonl"
    with open(segment, "ab") as fh:
        fh.write(b'{"id": "00000000-0000-4000-8000-0000000000')  # the crash came mid-write
    assert [e.event["n"] for e in box.pending()] == [1]
    box.add([ev(2)])
    assert [e.event["n"] for e in box.pending()] == [1, 2]
    assert all(json.loads(line) for line in segment.read_text().splitlines())


def test_a_corrupt_line_in_the_middle_is_reported_not_skipped(tmp_path):
    box = Outbox(tmp_path)
    box.add([ev(1)])
    segment = tmp_path / "pending" / "000000000001.jsonl"
    segment.write_bytes(segment.read_bytes() + b"garbage\n")
    box.add([ev(2)])
    with pytest.raises(OutboxError, match="line 2"):
        list(box.pending())


def test_a_done_file_left_by_a_crash_does_not_mark_new_events(tmp_path):
    box = Outbox(tmp_path)
    (tmp_path / "pending" / "000000000001.done").write_text(ev(1)["id"] + "\n")
    box.add([ev(1)])  # the same number is reused once the old segment is gone
    assert box.count() == 1


def test_add_is_on_disk_when_it_returns(tmp_path):
    # a child process adds and is killed at once; what add() returned for is there
    code = textwrap.dedent(
        f"""
        import os, signal
        from batterytrace.client import Outbox
        box = Outbox({str(tmp_path)!r}, segment_size=4)
        for n in range(10):
            box.add([{{"id": "id-%d" % n, "n": n}}])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, check=False)
    assert proc.returncode == -9
    assert [e.event["n"] for e in Outbox(tmp_path).pending()] == list(range(10))


def test_one_deliverer_at_a_time(tmp_path):
    box = Outbox(tmp_path)
    other = Outbox(tmp_path)
    with box.delivering() as first:
        assert first is True
        with other.delivering() as second:
            assert second is False
    with other.delivering() as again:
        assert again is True


def test_a_new_outbox_directory_is_private(tmp_path):
    box = Outbox(tmp_path / "ob")
    box.add([ev(1)])
    assert (tmp_path / "ob").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "ob" / "pending").stat().st_mode & 0o777 == 0o700
    assert os.listdir(tmp_path / "ob" / "pending") == ["000000000001.jsonl"]
