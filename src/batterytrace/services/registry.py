"""The registry's use cases. Each runs as one transaction: authorize → change → append to the
log → commit. The API, the CLI, the importer and the tests all call these functions."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, update

from batterytrace.domain import errors as E
from batterytrace.domain.access import Tier, tier_for
from batterytrace.domain.codes import parse_battery_code, parse_province, parse_region, parse_uscc
from batterytrace.domain.errors import DomainError
from batterytrace.domain.events import parse_event, require_mapping
from batterytrace.domain.lifecycle import PastEvent, decide
from batterytrace.domain.model import (
    VEHICLE_EVENTS,
    BatteryState,
    Enterprise,
    EventIn,
    EventType,
    Role,
    Scope,
    Stage,
)
from batterytrace.domain.permissions import Permission, permissions_for
from batterytrace.ledger.entries import EntryError, canonical_entry
from batterytrace.services import views
from batterytrace.services.context import BatchContext
from batterytrace.services.log import Log
from batterytrace.settings import Settings
from batterytrace.store import repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction, write_transaction

KEY_PREFIX = "bt"
_MANUFACTURER_CODE = re.compile(r"^[A-Z0-9]{3}$")
_KEY_FORMAT = re.compile(r"^bt_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """An authenticated enterprise and the key it used."""

    enterprise: Enterprise
    key_id: str

    @property
    def id(self) -> str:
        return self.enterprise.id

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions_for(self.enterprise.roles)


@dataclass(frozen=True)
class EventResult:
    id: str | None
    status: str  # "accepted" | "rejected"
    event: dict[str, Any] | None = None
    error: DomainError | None = None
    replay: bool = False


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def body_hash(raw: Any) -> str:
    """The hash that recognizes a retried event. It uses the log's canonical form, so that an event
    whose values the log cannot hold exactly is rejected here, not when it is appended."""
    try:
        return hashlib.sha256(canonical_entry(raw)).hexdigest()
    except EntryError as exc:
        detail = str(exc).replace(" at $.", " at ").replace("entry ", "", 1)
        raise DomainError(
            E.REQUEST_INVALID,
            f"the event holds a value that JSON cannot carry exactly: {detail}",
        ) from None


def _storable(text: str) -> str:
    """Text as every database can keep it: refused input is kept as given, but PostgreSQL text
    cannot hold NUL characters, so they are written as the escape ``\\x00``."""
    return text.replace("\x00", "\\x00")


def require(caller: Caller | None, permission: Permission) -> Caller:
    if caller is None:
        raise DomainError(E.AUTH_REQUIRED, "send 'Authorization: Bearer <api key>' to use this endpoint")
    if permission not in caller.permissions:
        raise DomainError(E.PERMISSION_DENIED, f"enterprise {caller.id} lacks the permission '{permission}'")
    return caller


class _AtomicAbortError(Exception):
    """Rolls back an atomic batch in which an event was rejected."""


class Registry:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        log: Log,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.log = log
        self.clock = clock
        #: Called inside each committing event transaction, after the state and the events are
        #: written: ``observer(conn, accepted_event_rows, context)``. Monitoring keeps alerts and
        #: rollups current this way, in the same transaction as the change.
        self.observers: list[Callable[[Any, list[dict[str, Any]], BatchContext], None]] = []
        #: Called inside the transaction that keeps refused attempts (``security_events``), after
        #: they are written: ``refusal_observer(conn, security_rows)``. Monitoring raises alerts
        #: from refused attempts this way.
        self.refusal_observers: list[Callable[[Any, list[dict[str, Any]]], None]] = []

    # --- keys and authentication -----------------------------------------------------------

    def authenticate(self, key: str) -> Caller:
        match = _KEY_FORMAT.match(key.strip())
        if not match:
            self._security(None, None, E.AUTH_INVALID_KEY, "malformed API key presented")
            raise DomainError(E.AUTH_INVALID_KEY, "the API key is not in the form bt_<id>_<secret>")
        key_id, secret = match.groups()
        now = self.clock()
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(T.api_keys).where(T.api_keys.c.id == key_id)).first()
            enterprise = repo.load_enterprise(conn, row.enterprise_id) if row is not None else None
        if (
            row is None
            or enterprise is None
            or not hmac.compare_digest(row.secret_hash, _hash_secret(secret))
        ):
            self._security(None, key_id, E.AUTH_INVALID_KEY, "unknown API key or wrong secret")
            raise DomainError(E.AUTH_INVALID_KEY, "the API key is not valid")
        if row.revoked_at is not None:
            self._security(enterprise.id, key_id, E.AUTH_INVALID_KEY, "revoked API key used")
            raise DomainError(E.AUTH_INVALID_KEY, "the API key has been revoked; ask for a new one")
        if row.expires_at is not None and row.expires_at <= now:
            self._security(enterprise.id, key_id, E.AUTH_INVALID_KEY, "expired API key used")
            raise DomainError(E.AUTH_INVALID_KEY, "the API key has expired; ask for a new one")
        return Caller(enterprise=enterprise, key_id=key_id)

    def _new_key(
        self, conn: Any, enterprise_id: str, now: datetime, label: str | None, expires_at: datetime | None
    ) -> tuple[str, dict[str, Any]]:
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = {
            "id": key_id,
            "enterprise_id": enterprise_id,
            "label": label,
            "created_at": now,
            "expires_at": expires_at,
        }
        appended = self.log.append(
            conn, [("key", key_id, {"kind": "key", "key": views.jsonable(record)})], now
        )
        conn.execute(
            insert(T.api_keys).values(
                **record, secret_hash=_hash_secret(secret), log_index=appended.first_index
            )
        )
        return f"{KEY_PREFIX}_{key_id}_{secret}", {
            **views.jsonable(record),
            "log_index": appended.first_index,
        }

    def create_key(
        self, caller: Caller, enterprise_id: str, label: str | None = None, expires_at: datetime | None = None
    ) -> dict[str, Any]:
        if caller.id != enterprise_id:
            require(caller, Permission.KEY_CREATE_ANY)
        else:
            require(caller, Permission.KEY_CREATE_OWN)
        if label is not None and (len(label) > 100 or not label.isprintable()):
            raise DomainError(E.REQUEST_INVALID, "'label' must be at most 100 printable characters", field="label")
        if expires_at is not None and expires_at.tzinfo is None:
            raise DomainError(E.REQUEST_INVALID, "'expires_at' must carry a UTC offset", field="expires_at")
        now = self.clock()
        with write_transaction(self.engine) as conn:
            if repo.load_enterprise(conn, enterprise_id) is None:
                raise DomainError(
                    E.ENTERPRISE_UNKNOWN, f"no enterprise {enterprise_id} is registered", field="id"
                )
            key, record = self._new_key(conn, enterprise_id, now, label, expires_at)
        return {"key": key, **record}

    def revoke_key(self, caller: Caller, enterprise_id: str, key_id: str) -> dict[str, Any]:
        if caller.id != enterprise_id:
            require(caller, Permission.KEY_CREATE_ANY)
        now = self.clock()
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                select(T.api_keys).where(
                    and_(T.api_keys.c.id == key_id, T.api_keys.c.enterprise_id == enterprise_id)
                )
            ).first()
            if row is None:
                raise DomainError(
                    E.KEY_UNKNOWN, f"enterprise {enterprise_id} has no key {key_id}", field="key_id"
                )
            if row.revoked_at is None:
                self.log.append(
                    conn,
                    [
                        (
                            "key",
                            key_id,
                            {
                                "kind": "key_revoked",
                                "key": {
                                    "id": key_id,
                                    "enterprise_id": enterprise_id,
                                    "revoked_at": now.isoformat(),
                                },
                            },
                        )
                    ],
                    now,
                )
                conn.execute(update(T.api_keys).where(T.api_keys.c.id == key_id).values(revoked_at=now))
        return {
            "id": key_id,
            "enterprise_id": enterprise_id,
            "revoked_at": (row.revoked_at or now).isoformat(),
        }

    # --- enterprises and licences ------------------------------------------------------------

    def bootstrap(self, enterprise_id: str, name: str, region: str = "110000") -> tuple[dict[str, Any], str]:
        """Create the first regulator on an empty registry and return its first API key."""
        payload = {"id": enterprise_id, "name": name, "roles": ["regulator"], "region": region}
        record = self._enterprise_record(payload)
        now = self.clock()
        with write_transaction(self.engine) as conn:
            if repo.count_enterprises(conn) > 0:
                raise DomainError(
                    E.BOOTSTRAP_NOT_EMPTY,
                    "the registry already has enterprises; new ones are created by a regulator through the API",
                )
            self._insert_enterprise(conn, record, now)
            key, _ = self._new_key(conn, record["id"], now, "bootstrap", None)
        return record, key

    def _enterprise_record(self, payload: Any) -> dict[str, Any]:
        body = require_mapping(payload, "body")
        allowed = {"id", "name", "roles", "region", "manufacturer_codes", "network_of"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise DomainError(E.REQUEST_INVALID, f"unknown field '{unknown[0]}'", field=unknown[0])
        raw_id = body.get("id")
        if not isinstance(raw_id, str):
            raise DomainError(
                E.REQUEST_INVALID, "'id' is required: the 18-character unified social credit code", field="id"
            )
        try:
            uscc = parse_uscc(raw_id)
        except DomainError as exc:
            raise exc.with_field("id") from None
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise DomainError(E.REQUEST_INVALID, "'name' is required: 1 to 200 characters", field="name")
        if not name.isprintable():
            raise DomainError(E.REQUEST_INVALID, "'name' may not hold control characters", field="name")
        roles_raw = body.get("roles")
        if not isinstance(roles_raw, list) or not roles_raw:
            raise DomainError(
                E.REQUEST_INVALID,
                f"'roles' must be a non-empty list of: {', '.join(r.value for r in Role)}",
                field="roles",
            )
        roles: list[str] = []
        for i, r in enumerate(roles_raw):
            if r not in {x.value for x in Role}:
                raise DomainError(
                    E.REQUEST_INVALID,
                    f"'roles[{i}]' {r!r} is not a role; roles are {', '.join(x.value for x in Role)}",
                    field=f"roles[{i}]",
                )
            if r not in roles:
                roles.append(r)
        region_raw = body.get("region")
        if not isinstance(region_raw, str):
            raise DomainError(
                E.REQUEST_INVALID,
                "'region' is required: a 6-digit administrative division code",
                field="region",
            )
        try:
            region = parse_region(region_raw).code
        except DomainError as exc:
            raise exc.with_field("region") from None
        codes_raw = body.get("manufacturer_codes") or []
        if not isinstance(codes_raw, list):
            raise DomainError(
                E.REQUEST_INVALID, "'manufacturer_codes' must be a list", field="manufacturer_codes"
            )
        codes: list[str] = []
        for i, c in enumerate(codes_raw):
            if not isinstance(c, str) or not _MANUFACTURER_CODE.match(c):
                raise DomainError(
                    E.REQUEST_INVALID,
                    f"'manufacturer_codes[{i}]' must be 3 upper-case letters or digits (positions 1–3 of a code)",
                    field=f"manufacturer_codes[{i}]",
                )
            if c not in codes:
                codes.append(c)
        if codes and not ({"battery_maker", "repurposer"} & set(roles)):
            raise DomainError(
                E.ENTERPRISE_INVALID,
                "only battery makers and repurposers hold manufacturer codes",
                field="manufacturer_codes",
            )
        network_of = body.get("network_of")
        if network_of is not None:
            if not isinstance(network_of, str):
                raise DomainError(
                    E.REQUEST_INVALID, "'network_of' must be a USCC or null", field="network_of"
                )
            try:
                network_of = parse_uscc(network_of)
            except DomainError as exc:
                raise exc.with_field("network_of") from None
            if "service_outlet" not in roles:
                raise DomainError(
                    E.ENTERPRISE_INVALID,
                    "'network_of' is for service outlets: it names the producer whose collection network they serve",
                    field="network_of",
                )
            if network_of == uscc:
                raise DomainError(
                    E.ENTERPRISE_INVALID, "an outlet cannot be in its own network", field="network_of"
                )
        return {
            "id": uscc,
            "name": name.strip(),
            "roles": roles,
            "region": region,
            "manufacturer_codes": codes,
            "network_of": network_of,
        }

    def _insert_enterprise(self, conn: Any, record: dict[str, Any], now: datetime) -> int:
        if repo.load_enterprise(conn, record["id"]) is not None:
            raise DomainError(
                E.ENTERPRISE_EXISTS, f"enterprise {record['id']} is already registered", field="id"
            )
        owners = repo.manufacturer_owners(conn, record["manufacturer_codes"])
        for i, code in enumerate(record["manufacturer_codes"]):
            if code in owners:
                raise DomainError(
                    E.MANUFACTURER_CODE_TAKEN,
                    f"manufacturer code {code} already belongs to enterprise {owners[code]}",
                    field=f"manufacturer_codes[{i}]",
                )
        if record["network_of"] is not None:
            producer = repo.load_enterprise(conn, record["network_of"])
            if producer is None:
                raise DomainError(
                    E.ENTERPRISE_UNKNOWN,
                    f"'network_of': no enterprise {record['network_of']} is registered",
                    field="network_of",
                )
            if not ({Role.AUTOMAKER, Role.BATTERY_MAKER} & producer.roles):
                raise DomainError(
                    E.ENTERPRISE_INVALID,
                    f"'network_of': {producer.id} is neither an automaker nor a battery maker",
                    field="network_of",
                )
        entry = {"kind": "enterprise", "enterprise": {**record, "created_at": now.isoformat()}}
        appended = self.log.append(conn, [("enterprise", record["id"], entry)], now)
        conn.execute(
            insert(T.enterprises).values(
                id=record["id"],
                name=record["name"],
                roles=record["roles"],
                region=record["region"],
                network_of=record["network_of"],
                created_at=now,
                log_index=appended.first_index,
            )
        )
        if record["manufacturer_codes"]:
            conn.execute(
                insert(T.manufacturer_codes),
                [{"code": c, "enterprise_id": record["id"]} for c in record["manufacturer_codes"]],
            )
        return appended.first_index

    def create_enterprise(self, caller: Caller, payload: Any) -> dict[str, Any]:
        require(caller, Permission.ENTERPRISE_CREATE)
        record = self._enterprise_record(payload)
        now = self.clock()
        with write_transaction(self.engine) as conn:
            self._insert_enterprise(conn, record, now)
        return self.get_enterprise(caller, record["id"])

    def get_enterprise(self, caller: Caller | None, enterprise_id: str) -> dict[str, Any]:
        caller = require(caller, Permission.ENTERPRISE_READ)
        if caller.id != enterprise_id and Permission.ENTERPRISE_READ_ANY not in caller.permissions:
            raise DomainError(E.PERMISSION_DENIED, "an enterprise may read only its own record")
        with read_transaction(self.engine) as conn:
            ent = repo.load_enterprise(conn, enterprise_id)
            if ent is None:
                raise DomainError(
                    E.ENTERPRISE_UNKNOWN, f"no enterprise {enterprise_id} is registered", field="id"
                )
            row = conn.execute(select(T.enterprises).where(T.enterprises.c.id == enterprise_id)).one()
            licence_rows = repo.licence_rows(conn, enterprise_id)
            keys = [
                {
                    "id": r.id,
                    "label": r.label,
                    "created_at": r.created_at.isoformat(),
                    "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                    "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                }
                for r in conn.execute(select(T.api_keys).where(T.api_keys.c.enterprise_id == enterprise_id))
            ]
        return views.enterprise(ent, row.created_at, row.log_index, licence_rows, keys, self.clock().date())

    def list_enterprises(self, role: str | None = None, province: str | None = None) -> list[dict[str, Any]]:
        """Public directory of enterprises (used for the 'where to hand it in' list)."""
        with read_transaction(self.engine) as conn:
            ids = [r.id for r in conn.execute(select(T.enterprises.c.id).order_by(T.enterprises.c.id))]
            ents = repo.load_enterprises(conn, ids)
        today = self.clock().date()
        out = []
        for ent in ents.values():
            if role and Role(role) not in ent.roles:
                continue
            if province and not ent.region.startswith(province):
                continue
            out.append(
                {
                    "id": ent.id,
                    "name": ent.name,
                    "roles": sorted(r.value for r in ent.roles),
                    "region": ent.region,
                    "network_of": ent.network_of,
                    "licensed_scopes": sorted(
                        {lic.scope.value for lic in ent.licences if lic.covers(lic.scope, today)}
                    ),
                }
            )
        return out

    def grant_licence(self, caller: Caller, enterprise_id: str, payload: Any) -> dict[str, Any]:
        require(caller, Permission.LICENCE_GRANT)
        body = require_mapping(payload, "body")
        unknown = sorted(set(body) - {"scope", "valid_from", "valid_to", "region"})
        if unknown:
            raise DomainError(E.REQUEST_INVALID, f"unknown field '{unknown[0]}'", field=unknown[0])
        scope = body.get("scope")
        if scope not in {s.value for s in Scope}:
            raise DomainError(
                E.REQUEST_INVALID,
                f"'scope' must be one of {', '.join(s.value for s in Scope)}",
                field="scope",
            )
        dates: dict[str, date] = {}
        for key in ("valid_from", "valid_to"):
            raw = body.get(key)
            if not isinstance(raw, str):
                raise DomainError(
                    E.REQUEST_INVALID, f"'{key}' is required: a date such as 2026-01-01", field=key
                )
            try:
                dates[key] = date.fromisoformat(raw)
            except ValueError:
                raise DomainError(
                    E.REQUEST_INVALID, f"'{key}' must be a date YYYY-MM-DD, got {raw!r}", field=key
                ) from None
        if dates["valid_to"] < dates["valid_from"]:
            raise DomainError(E.LICENCE_INVALID, "'valid_to' is before 'valid_from'", field="valid_to")
        region = body.get("region")
        if region is not None:
            if not isinstance(region, str):
                raise DomainError(
                    E.REQUEST_INVALID,
                    "'region' must be a province code such as \"31\" or null",
                    field="region",
                )
            try:
                region = parse_province(region).code if len(region) == 2 else parse_region(region).code
            except DomainError as exc:
                raise exc.with_field("region") from None
        now = self.clock()
        with write_transaction(self.engine) as conn:
            if repo.load_enterprise(conn, enterprise_id) is None:
                raise DomainError(
                    E.ENTERPRISE_UNKNOWN, f"no enterprise {enterprise_id} is registered", field="id"
                )
            record = {
                "enterprise_id": enterprise_id,
                "scope": scope,
                "valid_from": dates["valid_from"],
                "valid_to": dates["valid_to"],
                "region": region,
                "revoked": False,
                "created_at": now,
            }
            result = conn.execute(insert(T.licences).values(**record))
            licence_id = int(result.inserted_primary_key[0])
            entry = {
                "kind": "licence",
                "licence": {**views.jsonable(record), "id": licence_id, "granted_by": caller.id},
            }
            appended = self.log.append(conn, [("licence", str(licence_id), entry)], now)
            conn.execute(
                update(T.licences).where(T.licences.c.id == licence_id).values(log_index=appended.first_index)
            )
        return {**views.jsonable(record), "id": licence_id, "log_index": appended.first_index}

    # --- events -------------------------------------------------------------------------------

    def record(
        self,
        caller: Caller,
        raw_events: Sequence[Any],
        *,
        atomic: bool = False,
        recorders: Sequence[Caller] | None = None,
    ) -> list[EventResult]:
        """Record events in order; each sees the effect of those before it in the batch.

        ``recorders`` (one per event) records each event as its own enterprise in this one
        transaction: a regulator's migration of several enterprises' histories (``Interop.record_as``,
        which checks that the caller may do so). Without it every event is the caller's."""
        require(caller, Permission.EVENT_RECORD)
        if recorders is None:
            recorders = [caller] * len(raw_events)
        elif len(recorders) != len(raw_events):
            raise ValueError("one recorder per event")
        for who in {r.id: r for r in recorders}.values():
            require(who, Permission.EVENT_RECORD)
            if who.id != caller.id and not caller.enterprise.is_regulator:
                raise DomainError(
                    E.PERMISSION_DENIED,
                    f"only a regulator may record events on behalf of another enterprise ({who.id})",
                )
        now = self.clock()
        parsed: list[EventIn | None] = []
        hashes: list[str | None] = []
        results: list[EventResult | None] = []
        for raw in raw_events:
            raw_id = raw.get("id") if isinstance(raw, Mapping) else None
            try:
                ev = parse_event(raw, now=now)
                digest = body_hash(raw)
            except DomainError as exc:
                parsed.append(None)
                hashes.append(None)
                results.append(
                    EventResult(id=raw_id if isinstance(raw_id, str) else None, status="rejected", error=exc)
                )
                continue
            parsed.append(ev)
            hashes.append(digest)
            results.append(None)

        security: list[dict[str, Any]] = []
        for raw, res, who in zip(raw_events, results, recorders, strict=True):
            if res is not None and res.error is not None:
                security.append(self._security_row(who, raw, res.error, now))

        aborted = False
        try:
            self._record_in_transaction(recorders, raw_events, parsed, hashes, results, security, now, atomic)
        except _AtomicAbortError:
            aborted = True
        if aborted:
            first_bad = next(r for r in results if r is not None and r.status == "rejected")
            final: list[EventResult] = []
            for res in results:
                assert res is not None
                if res.status == "rejected" or res.replay:
                    # refused events keep their own error; replays were stored before this batch
                    final.append(res)
                else:
                    final.append(
                        EventResult(
                            id=res.id,
                            status="rejected",
                            error=DomainError(
                                E.BATCH_ABORTED,
                                f"not recorded: the batch is atomic and event {first_bad.id} was rejected",
                            ),
                        )
                    )
            results = list(final)
        if security:
            self._write_security(security)
        return [r for r in results if r is not None]

    def _record_in_transaction(
        self,
        recorders: Sequence[Caller],
        raw_events: Sequence[Any],
        parsed: list[EventIn | None],
        hashes: list[str | None],
        results: list[EventResult | None],
        security: list[dict[str, Any]],
        now: datetime,
        atomic: bool,
    ) -> None:
        actors = {who.id: who.enterprise for who in recorders}
        with write_transaction(self.engine) as conn:
            ctx = BatchContext(conn)
            codes: set[str] = set()
            vins: set[str] = set()
            ents: set[str] = set(actors)
            for ev in parsed:
                if ev is None:
                    continue
                if ev.battery:
                    codes.add(ev.battery)
                if ev.vin:
                    vins.add(ev.vin)
                for c in ev.data.get("children") or [] if isinstance(ev.data.get("children"), list) else []:
                    if isinstance(c, str):
                        codes.add(c)
                if isinstance(ev.data.get("into"), str):
                    codes.add(ev.data["into"])
                if isinstance(ev.data.get("to"), str):
                    ents.add(ev.data["to"])
                if isinstance(ev.data.get("vin"), str):
                    vins.add(ev.data["vin"])
            ctx.prefetch(codes=codes, vins=vins, enterprises=ents, manufacturer_codes={c[:3] for c in codes})
            ctx._enterprises.update(actors)
            ids = [ev.id for ev in parsed if ev is not None]
            existing = repo.events_by_id(conn, ids)
            in_batch: dict[str, tuple[str, str, dict[str, Any]]] = {}  # id -> digest, recorder, row
            accepted_rows: list[dict[str, Any]] = []
            log_items: list[tuple[str, str, dict[str, Any]]] = []
            for i, ev in enumerate(parsed):
                if ev is None:
                    continue
                caller = recorders[i]
                actor = caller.enterprise
                digest = hashes[i]
                assert digest is not None
                prior = existing.get(ev.id)
                if prior is not None:
                    if prior["body_hash"] == digest and prior["actor"] == actor.id:
                        results[i] = EventResult(
                            id=ev.id, status="accepted", event=views.stored_event(prior), replay=True
                        )
                    else:
                        err = DomainError(
                            E.EVENT_ID_REUSED,
                            f"event id {ev.id} was already used for a different event; "
                            "choose a new id for a new event",
                            field="id",
                        )
                        results[i] = EventResult(id=ev.id, status="rejected", error=err)
                        security.append(self._security_row(caller, raw_events[i], err, now))
                    continue
                if ev.id in in_batch:
                    first_digest, first_actor, row = in_batch[ev.id]
                    if first_digest == digest and first_actor == actor.id:
                        results[i] = EventResult(id=ev.id, status="accepted", event=row, replay=True)
                    else:
                        err = DomainError(
                            E.EVENT_ID_REUSED,
                            f"event id {ev.id} appears twice in the batch with different contents"
                            + ("" if first_actor == actor.id else " (recorded by two enterprises)"),
                            field="id",
                        )
                        results[i] = EventResult(id=ev.id, status="rejected", error=err)
                        security.append(self._security_row(caller, raw_events[i], err, now))
                    continue
                try:
                    changes = decide(ev, actor, ctx)
                except DomainError as exc:
                    results[i] = EventResult(id=ev.id, status="rejected", error=exc)
                    security.append(self._security_row(caller, raw_events[i], exc, now))
                    continue
                ctx.apply(changes, ev.id)
                row = {
                    "id": ev.id,
                    "type": ev.type.value,
                    "battery": ev.battery,
                    "vin": ev.vin,
                    "time_text": ev.time.isoformat(),
                    "time_utc": ev.time,
                    "recorded_at": now,
                    "actor": actor.id,
                    "region": ev.region,
                    "data": ev.data,
                    "body_hash": digest,
                    "undo": changes.undo if ev.type != EventType.RETRACTED else None,
                    "log_index": None,
                }
                ctx.remember_event(
                    PastEvent(
                        id=ev.id,
                        type=ev.type,
                        actor=actor.id,
                        battery=ev.battery,
                        vin=ev.vin,
                        undo=changes.undo,
                        retracted=False,
                    )
                )
                accepted_rows.append(row)
                log_items.append(("event", ev.id, {"kind": "event", "event": views.log_event(row)}))
                in_batch[ev.id] = (digest, actor.id, {})
                results[i] = EventResult(id=ev.id, status="accepted")
            if atomic and any(r is not None and r.status == "rejected" for r in results):
                raise _AtomicAbortError
            elif accepted_rows:
                ctx.flush()
                appended = self.log.append(conn, log_items, now)
                for k, row in enumerate(accepted_rows):
                    row["log_index"] = appended.first_index + k
                repo.insert_events(conn, accepted_rows)
                for observer in self.observers:
                    observer(conn, accepted_rows, ctx)
                stored = {row["id"]: views.stored_event(row) for row in accepted_rows}
                for i, res in enumerate(results):
                    if res is not None and res.status == "accepted" and res.event is None:
                        results[i] = EventResult(
                            id=res.id, status="accepted", event=stored[res.id or ""], replay=res.replay
                        )
                    elif res is not None and res.replay and res.event == {}:
                        results[i] = EventResult(
                            id=res.id, status="accepted", event=stored[res.id or ""], replay=True
                        )

    def _security_row(
        self, caller: Caller | None, raw: Any, error: DomainError, now: datetime
    ) -> dict[str, Any]:
        raw_map = raw if isinstance(raw, Mapping) else {}

        def short(value: Any, n: int) -> str | None:
            return _storable(str(value))[:n] if value is not None else None

        return {
            "at": now,
            "enterprise_id": caller.id if caller else None,
            "key_id": caller.key_id if caller else None,
            "event_id": short(raw_map.get("id"), 64),
            "event_type": short(raw_map.get("type"), 40),
            "battery": short(raw_map.get("battery") or raw_map.get("vin"), 64),
            "code": error.code,
            "detail": _storable(error.message)[:2000],
        }

    def _write_security(self, rows: list[dict[str, Any]]) -> None:
        with write_transaction(self.engine) as conn:
            repo.record_security_events(conn, rows)
            for observer in self.refusal_observers:
                observer(conn, rows)

    def _security(self, enterprise_id: str | None, key_id: str | None, code: str, detail: str) -> None:
        self._write_security(
            [
                {
                    "at": self.clock(),
                    "enterprise_id": enterprise_id,
                    "key_id": key_id,
                    "event_id": None,
                    "event_type": None,
                    "battery": None,
                    "code": code,
                    "detail": detail,
                }
            ]
        )

    def security_events(
        self, caller: Caller, limit: int = 100, enterprise: str | None = None
    ) -> list[dict[str, Any]]:
        require(caller, Permission.SECURITY_READ)
        if enterprise is not None:
            try:
                enterprise = parse_uscc(enterprise)
            except DomainError as exc:
                raise exc.with_field("enterprise") from None
        stmt = select(T.security_events).order_by(T.security_events.c.id.desc()).limit(limit)
        if enterprise:
            stmt = stmt.where(T.security_events.c.enterprise_id == enterprise)
        with read_transaction(self.engine) as conn:
            return [views.jsonable(dict(r._mapping)) for r in conn.execute(stmt)]

    # --- reading batteries ------------------------------------------------------------------------

    def _load_battery(self, conn: Any, code: str) -> BatteryState:
        try:
            parse_battery_code(code)
        except DomainError as exc:
            raise exc.with_field("code") from None
        state = repo.load_batteries(conn, [code]).get(code)
        if state is None:
            raise DomainError(
                E.BATTERY_UNKNOWN, f"battery {code} is not registered: it may not be genuine", field="code"
            )
        return state

    def battery_state(self, code: str) -> BatteryState:
        with read_transaction(self.engine) as conn:
            return self._load_battery(conn, code)

    @staticmethod
    def _outermost(conn: Any, state: BatteryState) -> BatteryState:
        """The battery that ``state`` is part of at the top (itself when it is not attached):
        an attached battery's custody is its parent's."""
        root = state
        while root.attached and root.parent:
            parent = repo.load_batteries(conn, [root.parent]).get(root.parent)
            if parent is None:
                break
            root = parent
        return root

    @staticmethod
    def _tier(caller: Caller | None, state: BatteryState, root: BatteryState) -> Tier:
        tier = tier_for(caller.enterprise if caller else None, state)
        if caller is not None and tier < Tier.AUTHORITY and root is not state:
            tier = max(tier, tier_for(caller.enterprise, root))
        return tier

    def get_battery(self, caller: Caller | None, code: str) -> dict[str, Any]:
        with read_transaction(self.engine) as conn:
            state = self._load_battery(conn, code)
            links = repo.links_of(conn, code)
            root = self._outermost(conn, state)
            retired_on = None
        tier = self._tier(caller, state, root)
        return views.battery(state, links, tier, root=root, retired_on=retired_on)

    def battery_events(self, caller: Caller | None, code: str) -> dict[str, Any]:
        with read_transaction(self.engine) as conn:
            state = self._load_battery(conn, code)
            root = self._outermost(conn, state)
            rows = repo.battery_event_rows(conn, code)
            retracted = repo.retracted_ids(conn, [r["id"] for r in rows])
        tier = self._tier(caller, state, root)
        return {
            "battery": code,
            "access_tier": tier.label,
            "events": [views.event_for_tier(r, tier, r["id"] in retracted) for r in rows],
        }

    def list_batteries(
        self,
        caller: Caller | None,
        *,
        filters: Mapping[str, str | None],
        limit: int = 100,
        after: str | None = None,
    ) -> dict[str, Any]:
        caller = require(caller, Permission.BATTERY_READ)
        if not 1 <= limit <= self.settings.max_page_size:
            raise DomainError(
                E.PAGE_INVALID, f"'limit' must be between 1 and {self.settings.max_page_size}", field="limit"
            )
        b = T.batteries
        stmt = select(b).order_by(b.c.code).limit(limit + 1)
        if after:
            stmt = stmt.where(b.c.code > after)
        columns = {
            "stage": b.c.stage,
            "holder": b.c.holder,
            "producer": b.c.producer,
            "level": b.c.level,
            "chemistry": b.c.chemistry,
            "manufacturer": b.c.manufacturer,
            "in_transit_to": b.c.in_transit_to,
            "vin": b.c.vin,
            "parent": b.c.parent,
        }
        for key, value in filters.items():
            if value is None:
                continue
            if key == "stage" and value not in {s.value for s in Stage}:
                raise DomainError(
                    E.REQUEST_INVALID,
                    f"'stage' must be one of {', '.join(s.value for s in Stage)}",
                    field="stage",
                )
            if key == "second_life":
                stmt = stmt.where(b.c.second_life == (value.lower() in ("1", "true", "yes")))
                continue
            stmt = stmt.where(columns[key] == value)
        if Permission.BATTERY_LIST_ANY not in caller.permissions:
            me = caller.id
            stmt = stmt.where(
                or_(b.c.holder == me, b.c.producer == me, b.c.in_transit_to == me, b.c.installer == me)
            )
        with read_transaction(self.engine) as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
            total_stmt = select(func.count()).select_from(stmt.limit(None).order_by(None).subquery())
            total = int(conn.execute(total_stmt).scalar_one()) if after is None else None
        more = len(rows) > limit
        rows = rows[:limit]
        from batterytrace.domain.snapshots import battery_from_dict

        items = []
        for row in rows:
            state = battery_from_dict(row)
            tier = tier_for(caller.enterprise, state)
            items.append(views.battery(state, None, tier))
        return {"items": items, "next_cursor": rows[-1]["code"] if more else None, "total": total}

    def vehicle_event_subjects(self) -> frozenset[EventType]:
        return VEHICLE_EVENTS
