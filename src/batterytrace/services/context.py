"""The lifecycle rules' view of the registry during one batch: rows read once, then the
batch's own accepted changes laid over them, and finally written in bulk (with the fleet rollup's
share of the change)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from batterytrace.domain.lifecycle import Changes, PastEvent
from batterytrace.domain.model import BatteryState, Enterprise, Link, VehicleState
from batterytrace.domain.policy import Profile, get_profile
from batterytrace.store import fleet, materials, repo


def _keys(values: list[str]) -> list[str]:
    """The values that can be keys at all. Reported data is looked up before the rules have read
    it, and PostgreSQL refuses text with NUL characters; no key holds one, so those are absent."""
    return [v for v in values if "\x00" not in v]


class BatchContext:
    """Implements ``batterytrace.domain.lifecycle.Context`` over one connection."""

    def __init__(self, conn: Connection, profile: Profile | None = None) -> None:
        self.conn = conn
        self._profile = profile if profile is not None else get_profile()
        #: recyclers' stored material balances, (recycler, material) → (recovered mg, declared mg)
        self._balances: dict[tuple[str, str], tuple[int, int]] = {}
        #: the batch's own changes to them, [recovered mg, declared mg]
        self._balance_changes: dict[tuple[str, str], list[int]] = {}
        self._batteries: dict[str, BatteryState | None] = {}
        self._in_db: set[str] = set()
        #: the batteries as the database holds them, before the batch's changes
        self._stored: dict[str, BatteryState] = {}
        self._vehicles: dict[str, VehicleState | None] = {}
        self._vehicles_in_db: set[str] = set()
        self._enterprises: dict[str, Enterprise | None] = {}
        self._owners: dict[str, str | None] = {}
        self._components: dict[str, list[str]] = {}
        self._past: dict[str, PastEvent | None] = {}
        self._dirty: set[str] = set()
        self._dirty_vehicles: set[str] = set()
        self._link_adds: set[Link] = set()
        self._link_removes: set[Link] = set()
        self.retractions: list[tuple[str, str]] = []

    # --- prefetching --------------------------------------------------------------------------

    def prefetch(
        self,
        codes: Iterable[str] = (),
        vins: Iterable[str] = (),
        enterprises: Iterable[str] = (),
        manufacturer_codes: Iterable[str] = (),
    ) -> None:
        missing = [c for c in set(codes) if c not in self._batteries]
        found = repo.load_batteries(self.conn, _keys(missing))
        for code in missing:
            self._batteries[code] = found.get(code)
            if code in found:
                self._in_db.add(code)
                self._stored[code] = found[code]
        missing_v = [v for v in set(vins) if v not in self._vehicles]
        found_v = repo.load_vehicles(self.conn, _keys(missing_v))
        for vin in missing_v:
            self._vehicles[vin] = found_v.get(vin)
            if vin in found_v:
                self._vehicles_in_db.add(vin)
        missing_e = [e for e in set(enterprises) if e not in self._enterprises]
        found_e = repo.load_enterprises(self.conn, _keys(missing_e))
        for eid in missing_e:
            self._enterprises[eid] = found_e.get(eid)
        missing_m = [m for m in set(manufacturer_codes) if m not in self._owners]
        found_m = repo.manufacturer_owners(self.conn, _keys(missing_m))
        for m in missing_m:
            self._owners[m] = found_m.get(m)

    # --- the Context protocol -------------------------------------------------------------------

    def battery(self, code: str) -> BatteryState | None:
        if code not in self._batteries:
            self.prefetch(codes=[code])
        return self._batteries[code]

    def vehicle(self, vin: str) -> VehicleState | None:
        if vin not in self._vehicles:
            self.prefetch(vins=[vin])
        return self._vehicles[vin]

    def enterprise(self, enterprise_id: str) -> Enterprise | None:
        if enterprise_id not in self._enterprises:
            self.prefetch(enterprises=[enterprise_id])
        return self._enterprises[enterprise_id]

    def manufacturer_owner(self, manufacturer_code: str) -> str | None:
        if manufacturer_code not in self._owners:
            self.prefetch(manufacturer_codes=[manufacturer_code])
        return self._owners[manufacturer_code]

    def components(self, code: str) -> list[str]:
        if code not in self._components:
            self._components[code] = repo.components(self.conn, code)
        stored = set(self._components[code])
        stored |= {ln.child for ln in self._link_adds if ln.parent == code and ln.kind == "component"}
        stored -= {ln.child for ln in self._link_removes if ln.parent == code and ln.kind == "component"}
        return sorted(stored)

    def past_event(self, event_id: str) -> PastEvent | None:
        if event_id not in self._past:
            self._past[event_id] = repo.past_event(self.conn, event_id)
        return self._past[event_id]

    def profile(self) -> Profile:
        return self._profile

    def recovered_balance(self, recycler: str, material: str) -> int:
        key = (recycler, material)
        if key not in self._balances:
            self._balances[key] = materials.balance(self.conn, recycler, material)
        recovered, declared = self._balances[key]
        change = self._balance_changes.get(key, [0, 0])
        return recovered + change[0] - declared - change[1]

    # --- the batch's own changes ----------------------------------------------------------------

    def remember_event(self, event: PastEvent) -> None:
        self._past[event.id] = event

    def apply(self, changes: Changes, event_id: str) -> None:
        for code, state in changes.batteries.items():
            self._batteries[code] = state
            self._dirty.add(code)
        for code in changes.deleted_batteries:
            self._batteries[code] = None
            self._dirty.add(code)
        for vin, vstate in changes.vehicles.items():
            self._vehicles[vin] = vstate
            self._dirty_vehicles.add(vin)
        for vin in changes.deleted_vehicles:
            self._vehicles[vin] = None
            self._dirty_vehicles.add(vin)
        for link in changes.links:
            if link in self._link_removes:
                self._link_removes.discard(link)
            else:
                self._link_adds.add(link)
        for link in changes.removed_links:
            if link in self._link_adds:
                self._link_adds.discard(link)
            else:
                self._link_removes.add(link)
        for flow in changes.materials:
            change = self._balance_changes.setdefault((flow.recycler, flow.material), [0, 0])
            change[0] += flow.recovered_mg
            change[1] += flow.declared_mg
        if changes.retracts is not None:
            self.retractions.append((changes.retracts, event_id))
            past = self._past.get(changes.retracts)
            if past is not None:
                self._past[changes.retracts] = PastEvent(
                    id=past.id,
                    type=past.type,
                    actor=past.actor,
                    battery=past.battery,
                    vin=past.vin,
                    undo=past.undo,
                    retracted=True,
                )

    def flush(self) -> dict[str, Any]:
        """Write the batch's net changes; returns counts for metrics."""
        new: list[BatteryState] = []
        changed: list[BatteryState] = []
        deleted: list[str] = []
        counts = fleet.FleetCounts()
        for code in sorted(self._dirty):
            state = self._batteries[code]
            counts.move(self._stored.get(code), state)
            if state is None:
                if code in self._in_db:
                    deleted.append(code)
            elif code in self._in_db:
                changed.append(state)
            else:
                new.append(state)
        repo.delete_batteries(self.conn, deleted)
        repo.save_batteries(self.conn, new, changed)
        fleet.write(self.conn, counts)
        new_v: list[VehicleState] = []
        changed_v: list[VehicleState] = []
        deleted_v: list[str] = []
        for vin in sorted(self._dirty_vehicles):
            vstate = self._vehicles[vin]
            if vstate is None:
                if vin in self._vehicles_in_db:
                    deleted_v.append(vin)
            elif vin in self._vehicles_in_db:
                changed_v.append(vstate)
            else:
                new_v.append(vstate)
        repo.delete_vehicles(self.conn, deleted_v)
        repo.save_vehicles(self.conn, new_v, changed_v)
        repo.remove_links(
            self.conn, sorted(self._link_removes, key=lambda ln: (ln.parent, ln.child, ln.kind))
        )
        repo.add_links(self.conn, sorted(self._link_adds, key=lambda ln: (ln.parent, ln.child, ln.kind)))
        repo.insert_retractions(self.conn, self.retractions)
        materials.add_to_balances(
            self.conn,
            {key: (r, d) for key, (r, d) in sorted(self._balance_changes.items()) if r or d},
        )
        return {"new": len(new), "changed": len(changed), "deleted": len(deleted)}
