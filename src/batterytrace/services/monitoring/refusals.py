"""Alerts from refused attempts, kept in ``security_events`` in their own transaction.

* ``lifecycle.unlicensed_receiver``: someone tried to ship a retired (waste) battery to a party
  without a licence. The shipment was refused, but the attempt shows where the battery may be
  heading off the record: ``unlicensed_receiver``.
* ``lifecycle.not_holder``, ``lifecycle.not_addressee``, ``lifecycle.not_code_owner`` and
  ``battery.exists`` (a code registered a second time by another enterprise): a party acting on a
  battery it does not hold, the sign of a copied label or a made-up code: ``suspected_clone``.
  Not raised for a regulator, for a producer re-sending its own registration, or for a party
  that holds the battery by the time the attempt is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from batterytrace.domain import errors as E
from batterytrace.services.monitoring import rules as R
from batterytrace.services.monitoring.store import NewAlert, open_alerts, refusal_evidence
from batterytrace.store import repo

#: Refusals of vehicle events name a VIN, not a battery: no battery alert is raised from them.
_VEHICLE_EVENTS = frozenset({"vehicle_sold", "vehicle_scrapped"})
_USCC = re.compile(r"\b[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}\b")


def observe(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    relevant = [
        r
        for r in rows
        if r.get("event_type") not in _VEHICLE_EVENTS
        and r.get("enterprise_id")
        and r.get("battery")
        and (r["code"] in R.CLONE_CODES or r["code"] == E.WASTE_UNLICENSED)
    ]
    if not relevant:
        return
    codes = {r["battery"] for r in relevant}
    states = repo.load_batteries(conn, [c for c in codes if len(c) <= 24])
    owners = repo.manufacturer_owners(conn, {c[:3] for c in codes})
    ents = repo.load_enterprises(conn, {r["enterprise_id"] for r in relevant})
    alerts: list[NewAlert] = []
    for r in relevant:
        actor = ents.get(r["enterprise_id"])
        if actor is None:
            continue
        code = r["battery"]
        state = states.get(code)
        at: datetime = r["at"]
        province = actor.region[:2]
        if r["code"] == E.WASTE_UNLICENSED:
            receivers = [u for u in _USCC.findall(r.get("detail") or "") if u != actor.id]
            receiver = receivers[0] if receivers else None
            alerts.append(
                NewAlert(
                    rule=R.UNLICENSED_RECEIVER,
                    key=f"{R.UNLICENSED_RECEIVER}:{code}:{actor.id}",
                    since=at,
                    battery=code,
                    enterprise_id=actor.id,
                    counterparty=receiver,
                    province=province,
                    detail=(
                        f"{actor.id} tried to ship retired battery {code} to "
                        f"{receiver or 'a party'} that holds no licence; the shipment was refused"
                    ),
                    evidence=[refusal_evidence(r)],
                    merge="append",
                )
            )
            continue
        if actor.is_regulator:
            continue
        if state is not None and state.holder == actor.id and r["code"] != E.BATTERY_EXISTS:
            continue  # holds it by now: the attempt came before the battery reached it
        if r["code"] == E.BATTERY_EXISTS and (state is None or state.producer == actor.id):
            continue  # its own registration sent again under a new id
        if r["code"] == E.NOT_MANUFACTURER:
            counterparty = owners.get(code[:3])
            what = f"tried to register {code} under manufacturer code {code[:3]}, which it does not hold"
        elif state is not None:
            counterparty = state.holder if state.holder != actor.id else state.producer
            what = f"recorded '{r.get('event_type')}' on battery {code}, which it does not hold"
            if r["code"] == E.BATTERY_EXISTS:
                what = f"tried to register battery {code}, already registered by {state.producer}"
        else:
            counterparty = owners.get(code[:3])
            what = f"recorded '{r.get('event_type')}' on battery {code}"
        alerts.append(
            NewAlert(
                rule=R.SUSPECTED_CLONE,
                key=f"{R.SUSPECTED_CLONE}:{code}:{actor.id}",
                since=at,
                battery=code,
                enterprise_id=actor.id,
                counterparty=counterparty,
                province=province,
                detail=f"{actor.id} {what}: the label may be copied or the code forged",
                evidence=[refusal_evidence(r)],
                merge="append",
            )
        )
    if alerts:
        open_alerts(conn, alerts, relevant[-1]["at"])
