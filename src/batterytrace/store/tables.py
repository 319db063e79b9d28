"""The registry's tables (SQLAlchemy Core). Every hot table is keyed by battery code.

Times are stored as UTC; the event's own time keeps its original UTC offset in ``time_text``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as naive UTC on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a UTC offset")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


enterprises = Table(
    "enterprises",
    metadata,
    Column("id", String(18), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("region", String(6), nullable=False),
    Column("network_of", String(18), nullable=True, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("log_index", BigInteger, nullable=True),
)

manufacturer_codes = Table(
    "manufacturer_codes",
    metadata,
    Column("code", String(3), primary_key=True),
    Column("enterprise_id", String(18), nullable=False, index=True),
)

licences = Table(
    "licences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("enterprise_id", String(18), nullable=False, index=True),
    Column("scope", String(20), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=False),
    Column("region", String(6), nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("log_index", BigInteger, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("enterprise_id", String(18), nullable=False, index=True),
    Column("secret_hash", String(64), nullable=False),
    Column("label", String(100), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("log_index", BigInteger, nullable=True),
)

batteries = Table(
    "batteries",
    metadata,
    Column("code", String(24), primary_key=True),
    Column("level", String(6), nullable=False),
    Column("chemistry", String(20), nullable=False),
    Column("manufacturer", String(3), nullable=False),
    Column("producer", String(18), nullable=False, index=True),
    Column("stage", String(12), nullable=False, index=True),
    Column("holder", String(18), nullable=True, index=True),
    Column("in_transit_to", String(18), nullable=True, index=True),
    Column("vin", String(17), nullable=True, index=True),
    Column("system", String(200), nullable=True),
    Column("application", String(40), nullable=True),
    Column("parent", String(24), nullable=True, index=True),
    Column("attached", Boolean, nullable=False, default=False),
    Column("second_life", Boolean, nullable=False, default=False),
    Column("stage_before_missing", String(12), nullable=True),
    Column("grade", String(12), nullable=True),
    Column("soh_percent", Float, nullable=True),
    Column("installer", String(18), nullable=True),
    Column("retired_at", UTCDateTime, nullable=True),
    Column("capacity_kwh", Float, nullable=True),
    Column("mass_kg", Float, nullable=True),
    Column("spec", JSON, nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("last_event_time", UTCDateTime, nullable=False),
    Column("last_event_id", String(36), nullable=False),
)

battery_links = Table(
    "battery_links",
    metadata,
    Column("parent", String(24), primary_key=True),
    Column("child", String(24), primary_key=True),
    Column("kind", String(10), primary_key=True),
    Index("ix_battery_links_child", "child"),
)

vehicles = Table(
    "vehicles",
    metadata,
    Column("vin", String(17), primary_key=True),
    Column("automaker", String(18), nullable=True, index=True),
    Column("status", String(12), nullable=False),
    Column("last_event_id", String(36), nullable=False),
    Column("sold_at", UTCDateTime, nullable=True),
    Column("scrapped_at", UTCDateTime, nullable=True),
    Column("scrapped_by", String(18), nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("type", String(20), nullable=False),
    Column("battery", String(24), nullable=True),
    Column("vin", String(17), nullable=True, index=True),
    Column("time_text", String(40), nullable=False),
    Column("time_utc", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("actor", String(18), nullable=False, index=True),
    Column("region", String(6), nullable=False),
    Column("data", JSON, nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("log_index", BigInteger, nullable=True, unique=True),
    Column("undo", JSON, nullable=True),
    Index("ix_events_battery_time", "battery", "time_utc"),
)

retractions = Table(
    "retractions",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("retracted_by", String(36), nullable=False),
)

security_events = Table(
    "security_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("enterprise_id", String(18), nullable=True, index=True),
    Column("key_id", String(16), nullable=True),
    Column("event_id", String(64), nullable=True),
    Column("event_type", String(40), nullable=True),
    Column("battery", String(64), nullable=True, index=True),
    Column("code", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(20), nullable=False),
    Column("ref", String(64), nullable=False),
    Column("entry", Text, nullable=False),
)

log_nodes = Table(
    "log_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("key_name", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

log_keys = Table(
    "log_keys",
    metadata,
    Column("verifier_key", String(300), primary_key=True),
    Column("key_name", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
)

# --- monitoring (migration 0002): alerts, deadline watches, report rollups ------------------------

#: One row per alert. ``condition_key`` names the condition that raised it and is set while the
#: condition holds (so one condition raises one alert); it is cleared when the condition clears.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(40), nullable=False),
    Column("status", String(12), nullable=False),  # open | acknowledged | closed | resolved
    Column("condition_key", String(200), nullable=True, unique=True),
    Column("battery", String(64), nullable=True, index=True),
    Column("vin", String(17), nullable=True, index=True),
    Column("enterprise_id", String(18), nullable=True, index=True),
    Column("counterparty", String(18), nullable=True, index=True),
    Column("province", String(2), nullable=True),
    Column("since", UTCDateTime, nullable=False),
    Column("deadline", UTCDateTime, nullable=True),
    Column("deadline_basis", String(16), nullable=True),
    Column("detail", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("close_reason", Text, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("acknowledged_by", String(18), nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("resolved_by", String(18), nullable=True),
    Column("resolution", Text, nullable=True),
    Index("ix_alerts_status_rule", "status", "rule"),
)

#: Running deadlines, one per battery and rule: a shipment in transit, a retired battery not yet
#: with a licensed facility, a battery in a scrapped vehicle. ``alerted`` turns true when the
#: deadline passes and the alert is raised; the row goes when the condition clears.
alert_watches = Table(
    "alert_watches",
    metadata,
    Column("battery", String(24), primary_key=True),
    Column("rule", String(40), primary_key=True),
    Column("condition_key", String(200), nullable=False),
    Column("vin", String(17), nullable=True),
    Column("since", UTCDateTime, nullable=False),
    Column("deadline", UTCDateTime, nullable=False),
    Column("deadline_basis", String(16), nullable=False),
    Column("enterprise_id", String(18), nullable=True),
    Column("counterparty", String(18), nullable=True),
    Column("producer", String(18), nullable=True),
    Column("installer", String(18), nullable=True),
    Column("province", String(2), nullable=True),
    Column("evidence", JSON, nullable=False),
    Column("alerted", Boolean, nullable=False, default=False),
    Index("ix_alert_watches_alerted_deadline", "alerted", "deadline"),
)

#: Small facts about the monitoring itself (e.g. when alerts were last re-scanned).
monitor_state = Table(
    "monitor_state",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("at", UTCDateTime, nullable=True),
)

#: Statistics counters: batteries and grams per year, province, chemistry, producer, level and
#: metric (registered, installed, retired, collected, repurposed, dismantled, recycled). The index
#: by level, year, province and metric holds the counters too (migration 0006): the statistics by
#: province that the dashboard reads are then one ordered pass over it on SQLite, which otherwise
#: looks every row up from the primary key.
stat_rollup = Table(
    "stat_rollup",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("province", String(2), primary_key=True),
    Column("chemistry", String(20), primary_key=True),
    Column("producer", String(18), primary_key=True),
    Column("level", String(6), primary_key=True),
    Column("metric", String(16), primary_key=True),
    Column("batteries", BigInteger, nullable=False),
    Column("mass_g", BigInteger, nullable=False),
    Index("ix_stat_rollup_by_province", "level", "year", "province", "metric", "batteries", "mass_g"),
)

#: Producer responsibility counters per enterprise, responsibility (battery_maker or automaker)
#: and year of retirement.
producer_rollup = Table(
    "producer_rollup",
    metadata,
    Column("enterprise_id", String(18), primary_key=True),
    Column("responsibility", String(16), primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("retired", BigInteger, nullable=False),
    Column("retired_g", BigInteger, nullable=False),
    Column("collected_in_time", BigInteger, nullable=False),
    Column("collected_late", BigInteger, nullable=False),
)

#: Recovery counters per recycler, year and metal (li, co, ni, mn, cu; "*" holds the batteries
#: recycled, their mass in and everything recovered). Grams of metal contained (from the battery's
#: declared materials) and recovered; ``unmatched_g`` is metal recovered from batteries whose
#: content of that metal was not declared.
recovery_rollup = Table(
    "recovery_rollup",
    metadata,
    Column("recycler", String(18), primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("metal", String(4), primary_key=True),
    Column("batteries", BigInteger, nullable=False),
    Column("contained_g", BigInteger, nullable=False),
    Column("recovered_g", BigInteger, nullable=False),
    Column("unmatched_g", BigInteger, nullable=False),
)

# --- circularity (migration 0004): recyclers' balances of recovered material ----------------------

#: Per recycler and material (li, co, ni, mn, cu, …): milligrams recovered by its ``recycled``
#: events and milligrams that new batteries have declared as recycled content drawn from it. The
#: remaining balance (recovered − declared) bounds any further declaration. Derived from logged
#: events in the same transaction, and checked by ``verify`` against a replay of the log. Small
#: (recyclers × materials), so keyed by recycler rather than by battery code.
material_balances = Table(
    "material_balances",
    metadata,
    Column("recycler", String(18), primary_key=True),
    Column("material", String(32), primary_key=True),
    Column("recovered_mg", BigInteger, nullable=False),
    Column("declared_mg", BigInteger, nullable=False),
)

# --- the fleet rollup (migration 0005) -------------------------------------------------------------

#: Batteries, their mass (milligrams) and how many of them have a mass, by year of registration
#: (UTC), chemistry, stage, whether attached to a parent and whether a second-life product. Kept by
#: the batch context in the transaction that changes the batteries (``batterytrace.store.fleet``);
#: read by the dashboard's counts by stage and the retirement forecast.
fleet_rollup = Table(
    "fleet_rollup",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("chemistry", String(20), primary_key=True),
    Column("stage", String(12), primary_key=True),
    Column("attached", Boolean, primary_key=True),
    Column("second_life", Boolean, primary_key=True),
    Column("batteries", BigInteger, nullable=False),
    Column("mass_mg", BigInteger, nullable=False),
    Column("with_mass", BigInteger, nullable=False),
)
