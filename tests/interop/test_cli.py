"""``batterytrace import`` and ``batterytrace export`` through the CLI runner, against the database
the environment names: bad lines land in the reject file with their line and reason while every
good line is recorded; a second run adds nothing; an interrupted run continues where it stopped;
a whole life exported in each format imports into an empty registry as the same history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from batterytrace.cli.main import app
from batterytrace.services.interop import Interop
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from tests import factories as f
from tests.api.support import tree_size
from tests.interop.conftest import World, cast_ids, clone_enterprises

runner = CliRunner()


def env_for(settings: Settings, key: str | None = None) -> dict[str, str]:
    env = {
        "BATTERYTRACE_DATABASE_URL": settings.database_url,
        "BATTERYTRACE_SIGNING_KEY": str(settings.signing_key),
        "BATTERYTRACE_ENV": "test",
        "BATTERYTRACE_LOG_ORIGIN": settings.log_origin,
    }
    if key:
        env["BATTERYTRACE_API_KEY"] = key
    return env


def run(settings: Settings, key: str | None, *args: str) -> Any:
    return runner.invoke(app, list(args), env=env_for(settings, key))


def manufactured(code: str | None = None, minutes: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "manufactured",
        "battery": code or f.code(),
        "time": f.at(minutes),
        "region": "320500",
        "data": dict(f.MANUFACTURED),
        **extra,
    }


def rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_import_jsonl_with_bad_lines(world: World, tmp_path: Path) -> None:
    maker = world.cast.maker
    good = [manufactured() for _ in range(6)]
    lines = [
        json.dumps(good[0]),
        "{broken",
        json.dumps(good[1]),
        json.dumps({**manufactured(), "type": "painted"}),
        json.dumps(good[2]),
        "",
        json.dumps(manufactured(f.code(manufacturer="9RP"))),  # another maker's code
        json.dumps(good[3]),
        json.dumps({**manufactured(), "actor": world.cast.automaker.id}),  # only a regulator names recorders
        json.dumps(good[4]),
        json.dumps(good[5]),
        json.dumps({**manufactured(), "time": "yesterday"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    size = tree_size(world.client)
    result = run(world.settings, maker.key, "import", str(path), "--batch-size", "3")
    assert result.exit_code == 1, result.output
    assert "rejected" in result.output
    bad = rejects(tmp_path / "events.jsonl.rejects.jsonl")
    assert [(b["line"], b["code"]) for b in bad] == [
        (2, "import.unreadable"),
        (4, "event.unknown_type"),
        (7, "lifecycle.not_code_owner"),
        (9, "permission.denied"),
        (12, "event.bad_time"),
    ]
    assert all(b["reason"] and b["record"] == lines[b["line"] - 1] for b in bad)
    for event in good:
        assert world.client.get(f"/api/v1/batteries/{event['battery']}").status_code == 200
    assert tree_size(world.client) == size + len(good)
    assert not (tmp_path / "events.jsonl.progress.json").exists()

    again = run(world.settings, maker.key, "import", str(path), "--quiet")
    assert again.exit_code == 1, again.output
    assert tree_size(world.client) == size + len(good), "a second run recorded something"
    assert "already recorded" in again.output
    assert len(rejects(tmp_path / "events.jsonl.rejects.jsonl")) == len(bad)


def test_import_csv_with_bad_lines(world: World, tmp_path: Path) -> None:
    good = [manufactured() for _ in range(3)]

    def row(e: dict[str, Any]) -> str:
        data = json.dumps(e["data"]).replace('"', '""')
        return f'{e["type"]},{e["battery"]},{e["time"]},{e["region"]},"{data}"'

    lines = [
        "type,battery,time,region,data",
        row(good[0]),
        "manufactured,XYZ,2026-03-01T00:00:00+08:00,320500,{}",
        row(good[1]),
        "manufactured,too,few",
        row(good[2]),
    ]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(lines) + "\n")
    size = tree_size(world.client)
    result = run(world.settings, world.cast.maker.key, "import", str(path), "--quiet")
    assert result.exit_code == 1, result.output
    assert [(b["line"], b["code"]) for b in rejects(tmp_path / "events.csv.rejects.jsonl")] == [
        (3, "code.bad_length"),
        (5, "import.unreadable"),
    ]
    assert tree_size(world.client) == size + 3
    assert run(world.settings, world.cast.maker.key, "import", str(path), "--quiet").exit_code == 1
    assert tree_size(world.client) == size + 3


def test_interrupted_import_continues(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [manufactured(minutes=i) for i in range(25)]
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    size = tree_size(world.client)
    real = Interop.record_as
    calls = {"n": 0}

    def flaky(self: Interop, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Interop, "record_as", flaky)
    first = run(world.settings, world.cast.maker.key, "import", str(path), "--batch-size", "10", "--quiet")
    assert first.exit_code == 130, first.output
    assert tree_size(world.client) == size + 20
    progress = json.loads((tmp_path / "big.jsonl.progress.json").read_text())
    assert progress["line"] == 20
    monkeypatch.setattr(Interop, "record_as", real)
    second = run(world.settings, world.cast.maker.key, "import", str(path), "--batch-size", "10", "--quiet")
    assert second.exit_code == 0, second.output
    assert "resumed after line" in second.output
    assert tree_size(world.client) == size + 25
    assert not (tmp_path / "big.jsonl.progress.json").exists()
    # a run after completion replays the whole file and adds nothing
    third = run(world.settings, world.cast.maker.key, "import", str(path), "--quiet")
    assert third.exit_code == 0
    assert tree_size(world.client) == size + 25


def test_import_refuses_what_it_cannot_use(world: World, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(manufactured()) + "\n")
    assert run(world.settings, None, "import", str(path)).exit_code == 2
    assert run(world.settings, "bt_000000000000_" + "x" * 30, "import", str(path)).exit_code == 2
    odd = tmp_path / "events.txt"
    odd.write_text("")
    result = run(world.settings, world.cast.maker.key, "import", str(odd))
    assert result.exit_code == 2
    assert "--format" in result.output
    assert run(world.settings, world.cast.maker.key, "import", str(tmp_path / "missing.jsonl")).exit_code == 2
    bad_csv = tmp_path / "events.csv"
    bad_csv.write_text("type,time,region,colour\n")
    result = run(world.settings, world.cast.maker.key, "import", str(bad_csv))
    assert result.exit_code == 2
    assert "colour" in result.output


def test_whole_life_in_every_format_imports_into_an_empty_registry(
    world: World, tmp_path: Path, other_registry: Registry, other_settings: Settings, other_client: Any
) -> None:
    cast, lives = world.cast, world.lives
    code = lives.recycled_pack
    files = {}
    for fmt in ("epcis", "jsonl", "csv"):
        out = tmp_path / f"life.{'json' if fmt == 'epcis' else fmt}"
        result = run(world.settings, cast.regulator.key, "export", "--battery", code, "--output", str(out))
        assert result.exit_code == 0, result.output
        files[fmt] = out
    doc = json.loads(files["epcis"].read_text())
    from tests.interop import support as s

    assert s.epcis_errors(doc) == []
    n = len(doc["epcisBody"]["eventList"])
    assert len(files["jsonl"].read_text().splitlines()) == n
    assert len(files["csv"].read_text().splitlines()) == n + 1

    target = clone_enterprises(cast.regulator, other_registry, [*cast_ids(cast), cast.regulator.id])
    key = other_registry.create_key(target, target.id)["key"]
    result = run(other_settings, key, "import", str(files["epcis"]))
    assert result.exit_code == 0, result.output
    size = tree_size(other_client)
    for fmt in ("jsonl", "csv"):  # the same events: every one is already recorded
        result = run(other_settings, key, "import", str(files[fmt]), "--quiet")
        assert result.exit_code == 0, result.output
        assert tree_size(other_client) == size, fmt
    reg_headers = cast.regulator.headers
    other_headers = {"Authorization": f"Bearer {key}"}
    for part in [code, *lives.modules, *lives.cells]:
        mine = world.client.get(f"/api/v1/batteries/{part}/events", headers=reg_headers).json()["events"]
        theirs = other_client.get(f"/api/v1/batteries/{part}/events", headers=other_headers).json()["events"]
        assert without_log_fields(theirs) == without_log_fields(mine), part


def without_log_fields(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in ("recorded_at", "log_index")} for e in events]


def test_export_by_enterprise_time_and_step(world: World, tmp_path: Path) -> None:
    cast = world.cast
    out = tmp_path / "maker.jsonl"
    result = run(world.settings, cast.maker.key, "export", "--output", str(out), "--bizstep", "shipping")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines
    assert {e["type"] for e in lines} == {"shipped"}
    assert {e["actor"] for e in lines} == {cast.maker.id}
    # a regulator names the enterprise; a time window narrows it
    result = runner.invoke(
        app,
        [
            "export",
            "--enterprise",
            cast.outlet.id,
            "--from",
            f.at(0),
            "--to",
            "2030-01-01T00:00:00Z",
            "--format",
            "csv",
        ],
        env=env_for(world.settings, cast.regulator.key),
    )
    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()
    assert rows[0].startswith("id,type,battery")
    assert len(rows) > 1
    assert all(cast.outlet.id in r for r in rows[1:])
    # an enterprise may not export another's events
    result = run(world.settings, cast.maker.key, "export", "--enterprise", cast.outlet.id)
    assert result.exit_code == 2
    assert "permission.denied" in result.output
