"""Reading an event as reported: shape, types and identifiers, with errors that name the field.

The lifecycle rules (``lifecycle``) then decide whether the registry accepts it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from batterytrace.domain import errors as E
from batterytrace.domain.codes import parse_battery_code, parse_region, parse_vin
from batterytrace.domain.errors import DomainError
from batterytrace.domain.model import VEHICLE_EVENTS, EventIn, EventType

TOP_LEVEL_FIELDS = frozenset({"id", "type", "battery", "vin", "time", "region", "data"})
#: Reported times may run ahead of the registry's clock by this much (clock skew).
FUTURE_TOLERANCE = timedelta(minutes=5)


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(E.REQUEST_INVALID, message, field=field)


def parse_event_time(value: Any, field: str = "time") -> datetime:
    """An RFC 3339 date-time with an explicit UTC offset."""
    if not isinstance(value, str):
        raise DomainError(
            E.EVENT_TIME_INVALID, f"'{field}' must be an RFC 3339 date-time string", field=field
        )
    text = value.strip()
    if len(text) < 20 or text[10] not in "Tt " or "\x00" in text:
        raise DomainError(
            E.EVENT_TIME_INVALID,
            f"'{field}' must be an RFC 3339 date-time such as 2026-05-01T09:30:00+08:00, got {value!r}",
            field=field,
        )
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise DomainError(
            E.EVENT_TIME_INVALID,
            f"'{field}' is not a valid RFC 3339 date-time: {value!r} (example: 2026-05-01T09:30:00+08:00)",
            field=field,
        ) from None
    if parsed.tzinfo is None:
        raise DomainError(
            E.EVENT_TIME_INVALID,
            f"'{field}' must carry a UTC offset (Z or ±hh:mm), got {value!r}",
            field=field,
        )
    return parsed


def require_mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(field, f"'{field}' must be a JSON object")
    return dict(value)


def require_str(
    data: Mapping[str, Any], key: str, prefix: str = "data", *, optional: bool = False
) -> str | None:
    path = f"{prefix}.{key}"
    if key not in data or data[key] is None:
        if optional:
            return None
        raise _invalid(path, f"'{path}' is required")
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise _invalid(path, f"'{path}' must be a non-empty string")
    if "\x00" in value:
        raise _invalid(path, f"'{path}' must not contain NUL (U+0000) characters")
    return value


def require_number(
    data: Mapping[str, Any],
    key: str,
    prefix: str = "data",
    *,
    optional: bool = False,
    minimum: float = 0.0,
    maximum: float | None = None,
    positive: bool = False,
) -> float | None:
    path = f"{prefix}.{key}"
    if key not in data or data[key] is None:
        if optional:
            return None
        raise _invalid(path, f"'{path}' is required")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(path, f"'{path}' must be a number")
    number = float(value)
    if positive and number <= 0:
        raise _invalid(path, f"'{path}' must be greater than 0")
    if number < minimum:
        raise _invalid(path, f"'{path}' must be at least {minimum:g}")
    if maximum is not None and number > maximum:
        raise _invalid(path, f"'{path}' must be at most {maximum:g}")
    return number


def parse_event(obj: Any, *, now: datetime) -> EventIn:
    """Check an event's envelope: id, type, subject, time and region. ``data`` is checked per type
    by the lifecycle rules."""
    body = require_mapping(obj, "event")
    unknown = sorted(set(body) - TOP_LEVEL_FIELDS)
    if unknown:
        raise _invalid(
            unknown[0], f"unknown field '{unknown[0]}'; allowed: {', '.join(sorted(TOP_LEVEL_FIELDS))}"
        )
    raw_id = body.get("id")
    if raw_id is None:
        raise _invalid("id", "'id' is required: a UUID chosen by the client, reused when retrying")
    if not isinstance(raw_id, str):
        raise _invalid("id", "'id' must be a UUID string")
    try:
        event_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise _invalid("id", f"'id' must be a UUID such as 3f2b8c1e-…, got {raw_id!r}") from None
    raw_type = body.get("type")
    if raw_type is None:
        raise _invalid("type", "'type' is required")
    try:
        event_type = EventType(raw_type)
    except ValueError:
        allowed = ", ".join(t.value for t in EventType)
        raise DomainError(
            E.EVENT_UNKNOWN_TYPE, f"unknown event type {raw_type!r}; allowed: {allowed}", field="type"
        ) from None
    if "time" not in body:
        raise _invalid("time", "'time' is required: an RFC 3339 date-time with its UTC offset")
    time = parse_event_time(body["time"])
    if time - now > FUTURE_TOLERANCE:
        raise DomainError(
            E.EVENT_TIME_IN_FUTURE,
            f"'time' {body['time']} is in the future; report events after they happen",
            field="time",
        )
    raw_region = body.get("region")
    if raw_region is None:
        raise _invalid("region", "'region' is required: the 6-digit administrative division of the site")
    if not isinstance(raw_region, str):
        raise _invalid("region", "'region' must be a string of 6 digits such as \"310115\"")
    try:
        region = parse_region(raw_region).code
    except DomainError as exc:
        raise exc.with_field("region") from None
    data = require_mapping(body.get("data", {}), "data") if body.get("data") is not None else {}

    battery: str | None = None
    vin: str | None = None
    vehicle_subject = event_type in VEHICLE_EVENTS or (
        event_type == EventType.RETRACTED and body.get("vin") is not None and body.get("battery") is None
    )
    if vehicle_subject:
        if body.get("battery") is not None:
            raise _invalid("battery", f"'{event_type}' is a vehicle event: send 'vin', not 'battery'")
        raw_vin = body.get("vin")
        if raw_vin is None:
            raise _invalid("vin", f"'vin' is required for '{event_type}'")
        if not isinstance(raw_vin, str):
            raise _invalid("vin", "'vin' must be a 17-character string")
        try:
            vin = parse_vin(raw_vin)
        except DomainError as exc:
            raise exc.with_field("vin") from None
    else:
        if body.get("vin") is not None:
            where = "data.vin" if event_type == EventType.INSTALLED else "nothing"
            raise _invalid("vin", f"'vin' belongs only to vehicle events; for '{event_type}' use {where}")
        raw_code = body.get("battery")
        if raw_code is None:
            raise _invalid("battery", f"'battery' is required for '{event_type}': the GB/T 34014 code")
        if not isinstance(raw_code, str):
            raise _invalid("battery", "'battery' must be a string (the battery code)")
        try:
            battery = parse_battery_code(raw_code).raw
        except DomainError as exc:
            raise exc.with_field("battery") from None
    return EventIn(
        id=event_id, type=event_type, time=time, region=region, data=data, battery=battery, vin=vin
    )
