"""Lineage: where a battery came from and what became of it.

The registry links batteries two ways: a *component* link from a pack or module to the module or
cell it contains, and an *origin* link from a retired battery to the second-life product it was
repurposed into. Lineage follows both, as a graph whose edges point from the earlier battery to
the later one (pack → module → cell, origin → second-life product):

- ancestors: the batteries a code came out of (the module and pack a cell was part of, the
  origins of a second-life product and the packs those were dismantled from);
- descendants: what came out of it (its modules and cells, the products they went into, and
  those products' own components).

A recycled battery's node carries its recycling: when, where, and (from the legitimate-interest
tier) by whom, the mass in and the materials recovered. A new battery that declared recycled
content shows its recycled shares, and (from the legitimate-interest tier) the recyclers the
material came from: recovered material is pooled per recycler, so it is traced to the recycler,
not to the battery it was recovered from.

Every node is cut to the caller's access tier for that battery, as ``GET /api/v1/batteries/{code}``
is. ``battery_lineage`` is what the API and the passport page call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, select

from batterytrace.domain import circularity
from batterytrace.domain import errors as E
from batterytrace.domain.access import Tier, tier_for
from batterytrace.domain.codes import parse_battery_code
from batterytrace.domain.errors import DomainError
from batterytrace.domain.model import BatteryState, Enterprise, Stage
from batterytrace.domain.policy import get_profile
from batterytrace.services import views
from batterytrace.services.registry import Caller, Registry
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

#: Most batteries listed on each side (ancestors, descendants); a pack of many thousand cells
#: lists the first ones by distance and code, and says the list was cut (``truncated``).
MAX_NODES = 2_000

#: What a lineage node shows of a battery, before the cut to the caller's tier.
NODE_FIELDS = (
    "code",
    "level",
    "chemistry",
    "manufacturer",
    "production_date",
    "second_life",
    "stage",
    "status",
    "capacity_kwh",
    "mass_kg",
    "recycled_share",
    "holder",
    "producer",
    "soh_percent",
    "grade",
    "recycled_content",
    "access_tier",
)


def _walk(
    conn: Connection, start: str, upward: bool, limit: int
) -> tuple[dict[str, int], set[tuple[str, str, str]], bool]:
    """Breadth-first over the links from ``start``: each code reached with its distance, the
    edges (from, to, kind) crossed, and whether ``limit`` cut the walk short."""
    links = T.battery_links
    near, far = (links.c.child, links.c.parent) if upward else (links.c.parent, links.c.child)
    found: dict[str, int] = {}
    edges: set[tuple[str, str, str]] = set()
    frontier = [start]
    depth = 0
    truncated = False
    while frontier and not truncated:
        depth += 1
        reached: list[str] = []
        for part in repo.chunks(sorted(frontier)):
            stmt = select(links.c.parent, links.c.child, links.c.kind).where(near.in_(part)).order_by(far)
            for r in conn.execute(stmt):
                edges.add((r.parent, r.child, r.kind))
                other = r.parent if upward else r.child
                if other == start or other in found:
                    continue
                if len(found) >= limit:
                    truncated = True
                    break
                found[other] = depth
                reached.append(other)
        frontier = reached
    return found, edges, truncated


def _recyclings(conn: Connection, codes: Iterable[str]) -> dict[str, Mapping[str, Any]]:
    """The standing ``recycled`` event of each recycled battery."""
    wanted = sorted(set(codes))
    rows: dict[str, Mapping[str, Any]] = {}
    e = T.events
    for part in repo.chunks(wanted):
        stmt = (
            select(e)
            .where(and_(e.c.battery.in_(part), e.c.type == "recycled"))
            .where(e.c.id.not_in(select(T.retractions.c.event_id)))
            .order_by(e.c.log_index)
        )
        for r in conn.execute(stmt):
            rows[r.battery] = dict(r._mapping)
    return rows


def _recycling_node(row: Mapping[str, Any], tier: Tier) -> dict[str, Any]:
    data = row["data"] if isinstance(row["data"], Mapping) else {}
    out: dict[str, Any] = {
        "event": row["id"],
        "time": row["time_text"],
        "province": str(row["region"])[:2],
    }
    if tier >= Tier.LEGITIMATE_INTEREST:
        recovered = {
            k: float(v)
            for k, v in (data.get("recovered") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        out["recycler"] = row["actor"]
        out["mass_kg"] = data.get("mass_kg")
        out["recovered"] = recovered
        out["avoided_kgco2e"] = circularity.recycling_avoided(recovered, get_profile())
    return out


def _root(state: BatteryState, states: Mapping[str, BatteryState]) -> BatteryState:
    root = state
    seen = {state.code}
    while root.attached and root.parent and root.parent in states and root.parent not in seen:
        seen.add(root.parent)
        root = states[root.parent]
    return root


def _tier(caller: Enterprise | None, state: BatteryState, root: BatteryState) -> Tier:
    tier = tier_for(caller, state)
    if caller is not None and tier < Tier.AUTHORITY and root is not state:
        tier = max(tier, tier_for(caller, root))
    return tier


def _node(state: BatteryState, root: BatteryState, tier: Tier) -> dict[str, Any]:
    shown = views.battery(state, None, tier, root=root)
    return {k: shown[k] for k in NODE_FIELDS if k in shown}


def battery_lineage(
    registry: Registry, caller: Caller | None, code: str, *, limit: int = MAX_NODES
) -> dict[str, Any]:
    """The lineage of ``code`` as ``caller`` may see it (``None``: the public).

    Returns ``{"code", "access_tier", "battery", "ancestors", "descendants", "edges",
    "truncated"}``: ``battery`` and each listed node are the battery's main fields cut to the
    caller's tier, with ``depth`` (links away from ``code``) and, when recycled, ``recycling``;
    ``edges`` are ``{"from", "to", "kind"}`` with ``kind`` ``component`` or ``origin``. Raises
    ``DomainError`` for a malformed (``code.*``) or unregistered (``battery.unknown``) code.
    """
    try:
        parse_battery_code(code)
    except DomainError as exc:
        raise exc.with_field("code") from None
    who = caller.enterprise if caller is not None else None
    with read_transaction(registry.engine) as conn:
        state = repo.load_batteries(conn, [code]).get(code)
        if state is None:
            raise DomainError(
                E.BATTERY_UNKNOWN, f"battery {code} is not registered: it may not be genuine", field="code"
            )
        ancestors, up_edges, up_cut = _walk(conn, code, upward=True, limit=limit)
        descendants, down_edges, down_cut = _walk(conn, code, upward=False, limit=limit)
        states = repo.load_batteries(conn, [*ancestors, *descendants])
        states[code] = state
        # an attached battery's containers are all in the graph (they are its ancestors, or the
        # descendants it was reached through), so its custody can be shown as its root's
        recycled = [c for c, s in states.items() if s.stage == Stage.RECYCLED]
        recyclings = _recyclings(conn, recycled)

    def node(c: str, depth: int) -> dict[str, Any]:
        s = states[c]
        root = _root(s, states)
        tier = _tier(who, s, root)
        out = _node(s, root, tier)
        out["depth"] = depth
        if c in recyclings:
            out["recycling"] = _recycling_node(recyclings[c], tier)
        return out

    def listed(found: Mapping[str, int]) -> list[dict[str, Any]]:
        order = sorted((d, c) for c, d in found.items() if c in states)
        return [node(c, d) for d, c in order]

    edges = {
        (p, c, k)
        for p, c, k in up_edges | down_edges
        if (p == code or p in states) and (c == code or c in states)
    }
    me = node(code, 0)
    return {
        "code": code,
        "access_tier": me["access_tier"],
        "battery": me,
        "ancestors": listed(ancestors),
        "descendants": listed(descendants),
        "edges": [
            {"from": p, "to": c, "kind": k} for p, c, k in sorted(edges, key=lambda x: (x[2], x[0], x[1]))
        ],
        "truncated": up_cut or down_cut,
    }
