"""A regulator's migration: one import file holding several enterprises' histories, each line
naming its recorder. The whole batch goes into one transaction, and each event is still recorded,
checked and logged as its own recorder's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from batterytrace.domain.errors import DomainError
from batterytrace.services.interop import Interop, import_file
from batterytrace.services.registry import Registry
from batterytrace.store import tables as T
from tests import factories as f
from tests.conftest import Cast


def log_size(registry: Registry) -> int:
    with registry.engine.connect() as conn:
        return int(conn.execute(select(T.log_head.c.size)).scalar_one())


def lines(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_one_batch_records_each_event_as_the_enterprise_it_names(
    registry: Registry, cast: Cast, tmp_path: Path
) -> None:
    code = f.code()
    made = f.event("manufactured", code, 0, f.MANUFACTURED)
    shipped = f.event("shipped", code, 10, {"to": cast.automaker.id})
    received = f.event("received", code, 20)
    clash = dict(received)  # the same id and body, named as another enterprise's
    path = tmp_path / "migration.jsonl"
    lines(
        path,
        [
            {**made, "actor": cast.maker.id},
            {**shipped, "actor": cast.maker.id},
            {**received, "actor": cast.automaker.id},
            {**clash, "actor": cast.stranger.id},
        ],
    )
    regulator = registry.authenticate(cast.regulator.key)
    before = log_size(registry)
    summary = import_file(Interop.from_environment(registry), regulator, path, "jsonl", batch_size=100)
    assert (summary.counts.accepted, summary.counts.replayed, summary.counts.rejected) == (3, 0, 1)
    rejects = [json.loads(x) for x in Path(summary.rejects_path).read_text().splitlines()]
    assert [(r["line"], r["code"]) for r in rejects] == [(4, "event.id_reused")]
    assert "two enterprises" in rejects[0]["reason"]
    with registry.engine.connect() as conn:
        stored = dict(conn.execute(select(T.events.c.id, T.events.c.actor)).all())
        state = conn.execute(select(T.batteries.c.holder).where(T.batteries.c.code == code)).scalar_one()
    assert stored == {made["id"]: cast.maker.id, shipped["id"]: cast.maker.id, received["id"]: cast.automaker.id}
    assert state == cast.automaker.id
    assert log_size(registry) == before + 3  # one leaf per recorded event
    # the whole history, and nothing else, replays on a second run
    again = import_file(Interop.from_environment(registry), regulator, path, "jsonl", batch_size=100)
    assert (again.counts.accepted, again.counts.replayed, again.counts.rejected) == (0, 3, 1)


def test_only_a_regulator_records_for_another_enterprise(registry: Registry, cast: Cast) -> None:
    maker = registry.authenticate(cast.maker.key)
    automaker = registry.authenticate(cast.automaker.key)
    event = f.event("manufactured", f.code(), 0, f.MANUFACTURED)
    with pytest.raises(DomainError) as refused:
        registry.record(automaker, [event], recorders=[maker])
    assert refused.value.code == "permission.denied"
    with registry.engine.connect() as conn:
        assert conn.execute(select(T.events.c.id).where(T.events.c.id == event["id"])).first() is None
