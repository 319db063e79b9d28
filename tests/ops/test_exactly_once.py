"""The real server in its own process, killed with SIGKILL in the middle of the client's batches and
started again later: every event is recorded exactly once. Also ``batterytrace push`` end to end."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batterytrace.client import Client, RegistryUnavailableError
from tests import factories as f
from tests.ops.support import Server, batterytrace, cli_env

BATCH = "/api/v1/events/batch"


class Live:
    def __init__(self, server: Server, regulator_key: str, workdir: Path) -> None:
        self.server = server
        self.regulator_key = regulator_key
        self.workdir = workdir

    def regulator(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {self.regulator_key}"}, timeout=30
        )

    def enterprise(self, roles: list[str], codes: list[str] | None = None) -> tuple[str, str]:
        uid = f.uscc()
        with self.regulator() as reg:
            body = {"id": uid, "name": f"Enterprise {uid[-6:]}", "roles": roles, "region": "310115"}
            r = reg.post("/api/v1/enterprises", json={**body, "manufacturer_codes": codes or []})
            assert r.status_code == 201, r.text
            r = reg.post(f"/api/v1/enterprises/{uid}/keys", json={})
            assert r.status_code == 201, r.text
            return uid, r.json()["key"]

    def log_size(self) -> int:
        with self.regulator() as reg:
            r = reg.get("/api/v1/log/checkpoint")
            assert r.status_code == 200, r.text
            return int(r.text.splitlines()[1])

    def event_ids(self, code: str) -> list[str]:
        with self.regulator() as reg:
            r = reg.get(f"/api/v1/batteries/{code}/events")
            assert r.status_code == 200, r.text
            return [e["id"] for e in r.json()["events"]]


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    env = cli_env(tmp_path, database_url)
    boot = batterytrace(["bootstrap", "--id", f.uscc(), "--name", "Regulator"], env, tmp_path)
    assert boot.returncode == 0, boot.stderr
    key = boot.stdout.strip().splitlines()[-1]
    assert key.startswith("bt_")
    server = Server(tmp_path, env)
    server.start()
    try:
        yield Live(server, key, tmp_path)
    finally:
        server.stop()


class Crashing(httpx.BaseTransport):
    """A real HTTP transport that can SIGKILL the server at chosen points of a batch:
    ``after_commit``: the batch reaches the server and is recorded, then the server dies before the
    answer is read; ``in_flight``: the server dies a moment after the batch was sent."""

    def __init__(self, server: Server) -> None:
        self.inner = httpx.HTTPTransport()
        self.server = server
        self.batches = 0
        self.kill_after_commit_at: int | None = None
        self.kill_in_flight_at: int | None = None
        self.kills = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != BATCH:
            return self.inner.handle_request(request)
        self.batches += 1
        if self.batches == self.kill_in_flight_at:
            self.kill_in_flight_at = None
            threading.Timer(0.005, self._kill).start()
        response = self.inner.handle_request(request)
        if self.batches == self.kill_after_commit_at:
            self.kill_after_commit_at = None
            response.read()
            self._kill()
            raise httpx.ReadError("the connection broke before the answer came", request=request)
        return response

    def _kill(self) -> None:
        self.kills += 1
        self.server.kill()

    def close(self) -> None:
        self.inner.close()


def test_events_are_recorded_exactly_once_across_server_crashes(live: Live, tmp_path: Path) -> None:
    _, maker_key = live.enterprise(["battery_maker"], ["0AB"])
    automaker, _ = live.enterprise(["automaker"])
    entries_before = live.log_size()
    assert entries_before == 6  # three enterprises and their three keys

    codes = [f.code() for _ in range(100)]
    events = []
    for n, code in enumerate(codes):
        events.append(f.event("manufactured", code, 2 * n, f.MANUFACTURED))
        events.append(f.event("shipped", code, 2 * n + 1, {"to": automaker}))
    transport = Crashing(live.server)
    transport.kill_after_commit_at = 3  # the third batch is recorded, its answer never arrives
    client = Client(
        live.server.url,
        maker_key,
        outbox_dir=tmp_path / "outbox",
        batch_size=20,
        retries=2,
        backoff=0.01,
        transport=transport,
    )
    with client:
        outcomes = client.record_many(events)
        assert transport.kills == 1
        statuses = [o.status for o in outcomes]
        assert statuses[:40] == ["accepted"] * 40
        assert set(statuses[40:]) == {"pending"}, "after the crash nothing more could be delivered"
        assert client.outbox.count() == len(events) - 40

        # later the server is back; this time it dies while a batch is being processed
        live.server.start()
        transport.kill_in_flight_at = transport.batches + 3
        report = client.flush()
        assert transport.kills == 2
        assert isinstance(report.error, RegistryUnavailableError)
        assert 0 < report.pending < len(events) - 40

        # and back again: everything that waited is delivered
        live.server.start()
        report = client.flush()
        assert report.error is None
        assert report.pending == 0
        assert report.rejected == []
        assert client.outbox.count() == 0

    for n, code in enumerate(codes):
        assert live.event_ids(code) == [events[2 * n]["id"], events[2 * n + 1]["id"]], code
    assert live.log_size() == entries_before + len(events)
    # the database agrees with the log after two crashes
    check = batterytrace(["verify"], live.server.env, live.workdir)
    assert check.returncode == 0, check.stdout + check.stderr
    # every line the server wrote, in all three lives, was JSON, none held a key
    live.server.stop()
    assert live.server.check_logs() >= 3 * 2


def test_push_command_delivers_a_file_once_and_keeps_events_while_the_registry_is_down(
    live: Live, tmp_path: Path
) -> None:
    _, maker_key = live.enterprise(["battery_maker"], ["0AB"])
    env = {**live.server.env, "BATTERYTRACE_API_KEY": maker_key, "BATTERYTRACE_URL": live.server.url}
    outbox = tmp_path / "push-outbox"

    def write(name: str, events: list[dict]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
        return path

    def push(*args: str):
        return batterytrace(
            [
                "push",
                *args,
                "--outbox",
                str(outbox),
                "--batch-size",
                "7",
                "--backoff",
                "0.01",
                "--retries",
                "1",
            ],
            env,
            tmp_path,
        )

    first = [f.event("manufactured", f.code(), n, f.MANUFACTURED) for n in range(20)]
    for e in first[::2]:
        del e["id"]  # ids derived from content: pushing the file again records nothing twice
    one = write("one.jsonl", first)
    r = push(str(one))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accepted 20" in r.stdout
    size = live.log_size()
    r = push(str(one))  # again: answered from what is stored
    assert r.returncode == 0, r.stdout + r.stderr
    assert live.log_size() == size

    second = [f.event("manufactured", f.code(), n, f.MANUFACTURED) for n in range(10)]
    two = write("two.jsonl", second)
    live.server.kill()
    r = push(str(two))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "waiting in the outbox 10" in r.stdout
    live.server.start()
    r = push()  # no file: deliver what waits
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accepted 10" in r.stdout
    assert live.log_size() == size + 10
    for e in second:
        assert live.event_ids(e["battery"]) == [e["id"]]

    refused = write("three.jsonl", [f.event("manufactured", second[0]["battery"], 99, f.MANUFACTURED)])
    r = push(str(refused))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "battery.exists" in r.stdout
    kept = [json.loads(line) for line in (outbox / "rejected.jsonl").read_text().splitlines()]
    assert kept[-1]["problem"]["code"] == "battery.exists"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "manufactured"}\nnot json\n', encoding="utf-8")
    r = push(str(bad))
    assert r.returncode == 2
    assert "line 2" in r.stderr
    live.server.stop()
    live.server.check_logs()
    for r_out in (r.stdout, r.stderr):
        assert maker_key not in r_out


def test_push_without_a_key_says_so(tmp_path: Path) -> None:
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'unused.sqlite'}")
    path = tmp_path / "e.jsonl"
    path.write_text("{}\n", encoding="utf-8")
    r = batterytrace(["push", str(path), "--outbox", str(tmp_path / "ob")], env, tmp_path)
    assert r.returncode == 2
    assert "BATTERYTRACE_API_KEY" in r.stderr
