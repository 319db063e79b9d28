"""GS1 EPCIS 2.0 (JSON / JSON-LD) and the registry's events, both ways, as pure functions.

A battery code is not a GS1 key, so identifiers are the registry's own URIs (``urn:batterytrace:…``,
see :func:`battery_uri` and friends). Standard steps use the CBV 2.0 business steps as bare words;
the registry's steps that CBV lacks (repurposing, recycling, vehicle scrapping, missing, found,
export, retraction) use business-step URIs under ``urn:batterytrace:bizstep:``. Event data that has
no standard field travels in namespaced extension fields (``bt:…``, prefix declared in
``@context``); at manufacture and repurposing it is instance master data (``ilmd``).

``MAPPINGS`` is the table both directions follow; ``docs/interop.md`` shows it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TextIO
from urllib.parse import quote, unquote

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError

GS1_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
URN = "urn:batterytrace:"
PREFIX = "bt"
EXT = "urn:batterytrace:ext:"
BIZSTEP = "urn:batterytrace:bizstep:"
SOH_TYPE = "urn:batterytrace:measurement:StateOfHealth"
SCHEMA_VERSION = "2.0"
EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "AssociationEvent",
    "TransformationEvent",
    "TransactionEvent",
)
CBV_WEB = "https://ref.gs1.org/cbv/BizStep-"
CBV_URN = "urn:epcglobal:cbv:bizstep:"
#: Event ids minted for EPCIS events that carry none (or a non-UUID one) are UUIDv5 in this space.
ID_SPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:batterytrace:epcis")


# --- identifiers -------------------------------------------------------------------------------


def battery_uri(code: str) -> str:
    return f"{URN}battery:{code}"


def enterprise_uri(uscc: str) -> str:
    return f"{URN}enterprise:{uscc}"


def vin_uri(vin: str) -> str:
    return f"{URN}vin:{vin}"


def region_uri(region: str) -> str:
    return f"{URN}region:{region}"


def system_uri(name: str) -> str:
    return f"{URN}system:{quote(name, safe='')}"


def material_uri(name: str) -> str:
    return f"{URN}material:{name}"


def transformation_uri(key: str) -> str:
    return f"{URN}transformation:{key}"


def _after(uri: Any, kind: str) -> str | None:
    head = f"{URN}{kind}:"
    if isinstance(uri, str) and uri.startswith(head) and len(uri) > len(head):
        return uri[len(head) :]
    return None


def parse_battery_uri(uri: Any, passport_base: str | None = None) -> str | None:
    """The battery code in ``urn:batterytrace:battery:<code>`` or in a passport URL ``<base>/b/<code>``."""
    code = _after(uri, "battery")
    if code is not None:
        return code
    if isinstance(uri, str) and passport_base:
        head = passport_base.rstrip("/") + "/b/"
        if uri.startswith(head) and "/" not in uri[len(head) :] and len(uri) > len(head):
            return uri[len(head) :]
    return None


def parse_enterprise_uri(uri: Any) -> str | None:
    return _after(uri, "enterprise")


def parse_vin_uri(uri: Any) -> str | None:
    return _after(uri, "vin")


def parse_region_uri(uri: Any) -> str | None:
    return _after(uri, "region")


def parse_system_uri(uri: Any) -> str | None:
    name = _after(uri, "system")
    return unquote(name) if name is not None else None


# --- the mapping table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepMapping:
    """How one registry event type is written in EPCIS (and read back)."""

    registry: str
    biz_step: str  # a CBV bare word or a urn:batterytrace:bizstep: URI
    epcis_type: str
    action: str | None
    disposition: str | None
    what: str  # the What dimension, in words, for the documentation


MAPPINGS: tuple[StepMapping, ...] = (
    StepMapping("manufactured", "commissioning", "ObjectEvent", "ADD", "active", "epcList: the battery; ilmd: declared data"),
    StepMapping("assembled", "assembling", "AssociationEvent", "ADD", None, "parentID: the parent; childEPCs: its components"),
    StepMapping("shipped", "shipping", "ObjectEvent", "OBSERVE", "in_transit", "epcList; sourceList/destinationList: possessing_party sender and receiver"),
    StepMapping("received", "receiving", "ObjectEvent", "OBSERVE", "in_progress", "epcList; destinationList: possessing_party receiver"),
    StepMapping("installed", "installing", "AssociationEvent", "ADD", "active", "parentID: the vehicle (VIN) or storage system; childEPCs: the battery"),
    StepMapping("maintained", "repairing", "ObjectEvent", "OBSERVE", "available", "epcList; sensorReport: state of health (P1)"),
    StepMapping("removed", "removing", "AssociationEvent", "DELETE", "unavailable", "parentID: the vehicle or system; childEPCs: the battery; bt:reason"),
    StepMapping("retired", "collecting", "ObjectEvent", "OBSERVE", "disposed", "epcList: the battery taken in as waste"),
    StepMapping("graded", "inspecting", "ObjectEvent", "OBSERVE", None, "epcList; sensorReport: state of health; bt:decision"),
    StepMapping("repurposed", BIZSTEP + "repurposing", "TransformationEvent", None, None, "inputEPCList: the origin; outputEPCList: the second-life product"),
    StepMapping("dismantled", "disassembling", "AssociationEvent", "DELETE", None, "parentID: the pack or module; childEPCs: its components"),
    StepMapping("recycled", BIZSTEP + "recycling", "TransformationEvent", None, "destroyed", "inputEPCList: the battery; outputQuantityList: materials recovered (KGM); bt:mass_kg"),
    StepMapping("vehicle_sold", "retail_selling", "ObjectEvent", "OBSERVE", "retail_sold", "epcList: the vehicle (VIN)"),
    StepMapping("vehicle_scrapped", BIZSTEP + "scrapping", "ObjectEvent", "OBSERVE", None, "epcList: the vehicle (VIN)"),
    StepMapping("reported_missing", BIZSTEP + "reporting_missing", "ObjectEvent", "OBSERVE", None, "epcList: the battery"),
    StepMapping("found", BIZSTEP + "finding", "ObjectEvent", "OBSERVE", None, "epcList: the battery"),
    StepMapping("exported", BIZSTEP + "exporting", "ObjectEvent", "OBSERVE", None, "epcList: the battery; bt:country"),
    StepMapping("retracted", BIZSTEP + "retracting", "ObjectEvent", "OBSERVE", None, "epcList: the battery or vehicle; bt:event, bt:reason"),
)  # fmt: skip
BY_TYPE: dict[str, StepMapping] = {m.registry: m for m in MAPPINGS}
BY_STEP: dict[str, StepMapping] = {m.biz_step: m for m in MAPPINGS}


def normalise_biz_step(value: Any) -> str | None:
    """A business step in one form: CBV values as bare words (from bare words, GS1 Web URIs or
    URNs), other values as given."""
    if not isinstance(value, str) or not value:
        return None
    for head in (CBV_WEB, CBV_URN, "http://ref.gs1.org/cbv/BizStep-"):
        if value.startswith(head):
            return value[len(head) :]
    return value


def registry_types_for_step(value: str) -> frozenset[str]:
    """The registry event types written with this business step (empty if none)."""
    step = normalise_biz_step(value)
    mapping = BY_STEP.get(step or "")
    return frozenset({mapping.registry}) if mapping else frozenset()


# --- registry → EPCIS ------------------------------------------------------------------------------


def _time_fields(time_text: str) -> tuple[str, str]:
    parsed = datetime.fromisoformat(time_text)
    offset = parsed.utcoffset() or timedelta(0)
    seconds = int(offset.total_seconds())
    if seconds % 60 or abs(seconds) > 14 * 3600:
        parsed = parsed.astimezone(UTC)
        time_text, seconds = parsed.isoformat(), 0
    sign = "+" if seconds >= 0 else "-"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return time_text, f"{sign}{hours:02d}:{minutes:02d}"


def encode_extension(value: Any) -> Any:
    """Registry data as extension values: every object key in the ``bt:`` namespace."""
    if isinstance(value, Mapping):
        return {f"{PREFIX}:{k}": encode_extension(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_extension(v) for v in value]
    return value


def _extensions(data: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    skipped = set(skip)
    return {f"{PREFIX}:{k}": encode_extension(v) for k, v in data.items() if k not in skipped}


def _soh_sensor(soh: Any) -> list[dict[str, Any]]:
    return [{"sensorReport": [{"type": SOH_TYPE, "value": soh, "uom": "P1"}]}]


def to_epcis(
    event: Mapping[str, Any],
    *,
    installed_in: str | None = None,
    components: Sequence[str] = (),
) -> dict[str, Any]:
    """One registry event, as shown to the caller (fields cut to its access tier), as an EPCIS event.

    ``installed_in`` is the URI of the vehicle or system a removed battery came out of, and
    ``components`` the codes of a dismantled battery's parts; both come from the battery's history.
    Fields the caller may not see are left out; a step whose standard form needs them (the parent of
    an installation, the receiver of a shipment) is then written as an ObjectEvent on the battery.
    """
    mapping = BY_TYPE[event["type"]]
    data = event.get("data")
    d: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    time_text, offset = _time_fields(event["time"])
    subject: str | None = None
    if event.get("battery"):
        subject = battery_uri(event["battery"])
    elif event.get("vin"):
        subject = vin_uri(event["vin"])

    out: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": time_text,
        "eventTimeZoneOffset": offset,
        "eventID": f"urn:uuid:{event['id']}",
    }
    if event.get("recorded_at"):
        out["recordTime"] = event["recorded_at"]
    body: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    ilmd: dict[str, Any] = {}
    epcis_type = mapping.epcis_type
    action = mapping.action
    kind = mapping.registry

    if kind == "manufactured":
        body["epcList"] = [subject] if subject else []
        ilmd = _extensions(d)
    elif kind == "assembled" and isinstance(d.get("children"), list) and d["children"]:
        body["parentID"] = subject
        body["childEPCs"] = [battery_uri(str(c)) for c in d["children"]]
        extensions = _extensions(d, {"children"})
    elif kind == "installed" and (d.get("vin") or d.get("system")):
        body["parentID"] = vin_uri(d["vin"]) if d.get("vin") else system_uri(str(d["system"]))
        body["childEPCs"] = [subject]
        extensions = _extensions(d, {"vin", "system"})
    elif kind == "removed" and installed_in:
        body["parentID"] = installed_in
        body["childEPCs"] = [subject]
        extensions = _extensions(d)
    elif kind == "dismantled":
        body["parentID"] = subject
        if components:
            body["childEPCs"] = [battery_uri(c) for c in components]
        extensions = _extensions(d)
    elif kind == "repurposed":
        body["inputEPCList"] = [subject]
        into = d.get("into")
        if into:
            body["outputEPCList"] = [battery_uri(str(into))]
        body["transformationID"] = transformation_uri(str(into) if into else str(event["id"]))
        ilmd = _extensions(d, {"into"})
    elif kind == "recycled":
        body["inputEPCList"] = [subject]
        recovered = d.get("recovered")
        if isinstance(recovered, Mapping) and recovered:
            body["outputQuantityList"] = [
                {"epcClass": material_uri(k.removesuffix("_kg")), "quantity": v, "uom": "KGM"}
                for k, v in recovered.items()
            ]
        else:
            body["transformationID"] = transformation_uri(str(event["id"]))
        extensions = _extensions(d, {"recovered"} if isinstance(recovered, Mapping) else ())
    else:
        # an ObjectEvent on the subject (the standard form for most steps, and the fallback for
        # association steps whose parent the caller may not see)
        epcis_type = "ObjectEvent"
        action = "OBSERVE" if mapping.epcis_type != "ObjectEvent" else mapping.action
        body["epcList"] = [subject] if subject else []
        skip: set[str] = set()
        if kind in ("maintained", "graded") and d.get("soh_percent") is not None:
            body["sensorElementList"] = _soh_sensor(d["soh_percent"])
            skip.add("soh_percent")
        if kind == "shipped" and d.get("to"):
            body["destinationList"] = [{"type": "possessing_party", "destination": enterprise_uri(d["to"])}]
            skip.add("to")
        extensions = _extensions(d, skip)

    out["type"] = epcis_type
    if action is not None:
        out["action"] = action
    out["bizStep"] = mapping.biz_step
    if mapping.disposition is not None:
        out["disposition"] = mapping.disposition
    out.update({k: v for k, v in body.items() if k not in ("sensorElementList", "destinationList")})

    region = event.get("region")
    if region is None and event.get("province"):
        region = f"{event['province']}0000"
    if region:
        out["readPoint"] = {"id": region_uri(str(region))}
        if kind not in ("shipped", "exported"):
            out["bizLocation"] = {"id": region_uri(str(region))}
    actor = event.get("actor")
    if actor and kind == "shipped":
        out["sourceList"] = [{"type": "possessing_party", "source": enterprise_uri(actor)}]
    if "destinationList" in body:
        out["destinationList"] = body["destinationList"]
    elif actor and kind == "received":
        out["destinationList"] = [{"type": "possessing_party", "destination": enterprise_uri(actor)}]
    if "sensorElementList" in body:
        out["sensorElementList"] = body["sensorElementList"]
    if ilmd:
        out["ilmd"] = ilmd
    if actor:
        out[f"{PREFIX}:recordedBy"] = enterprise_uri(actor)
    out[f"{PREFIX}:eventType"] = kind
    if event.get("retracted"):
        out[f"{PREFIX}:retracted"] = True
    out.update(extensions)
    return out


def context() -> list[Any]:
    """The ``@context`` of documents the registry writes: GS1's, and the ``bt`` prefix."""
    return [GS1_CONTEXT, {PREFIX: EXT}]


def _utc_text(now: datetime) -> str:
    return now.astimezone(UTC).isoformat().replace("+00:00", "Z")


def document(events: Iterable[Mapping[str, Any]], *, created: datetime) -> dict[str, Any]:
    """An EPCISDocument holding ``events`` (already in EPCIS form)."""
    return {
        "@context": context(),
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": _utc_text(created),
        "epcisBody": {"eventList": list(events)},
    }


def query_document(
    events: Iterable[Mapping[str, Any]],
    *,
    created: datetime,
    query_name: str = "SimpleEventQuery",
    next_page_token: str | None = None,
) -> dict[str, Any]:
    """An EPCISQueryDocument, the answer to an event query."""
    out: dict[str, Any] = {
        "@context": context(),
        "type": "EPCISQueryDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": _utc_text(created),
        "epcisBody": {"queryResults": {"queryName": query_name, "resultsBody": {"eventList": list(events)}}},
    }
    if next_page_token is not None:
        out[f"{PREFIX}:nextPageToken"] = next_page_token
    return out


def write_document(out: TextIO, events: Iterable[Mapping[str, Any]], *, created: datetime) -> int:
    """Stream an EPCISDocument to ``out`` one event at a time; returns the number of events."""
    head = json.dumps(document([], created=created), ensure_ascii=False)
    marker = '"eventList": []'
    at = head.index(marker) + len('"eventList": [')
    out.write(head[:at] + "\n")
    n = 0
    for event in events:
        out.write((",\n" if n else "") + json.dumps(event, ensure_ascii=False))
        n += 1
    out.write("\n" + head[at:] + "\n")
    return n


# --- EPCIS → registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapped:
    """A registry event read from an EPCIS event, and the enterprise named as its recorder."""

    event: dict[str, Any]
    recorded_by: str | None


def unmappable(message: str, field: str | None = None) -> DomainError:
    return DomainError(E.EPCIS_UNMAPPABLE, message, field=field)


def prefixes(ctx: Any) -> dict[str, str]:
    """Prefix → IRI bindings declared in an ``@context`` (a string, an object or a list)."""
    out: dict[str, str] = {}
    items = ctx if isinstance(ctx, list) else [ctx]
    for item in items:
        if isinstance(item, Mapping):
            for key, value in item.items():
                if isinstance(key, str) and isinstance(value, str) and not key.startswith("@"):
                    out[key] = value
    return out


def _ext_name(key: Any, bindings: Mapping[str, str]) -> str | None:
    """The registry field a key names when it is in the registry's extension namespace."""
    if not isinstance(key, str):
        return None
    if key.startswith(EXT):
        return key[len(EXT) :] or None
    prefix, sep, rest = key.partition(":")
    if not sep or not rest:
        return None
    iri = bindings.get(prefix)
    if iri is None and prefix == PREFIX:
        iri = EXT  # not declared: read as the registry's prefix
    if iri is not None and (iri + rest).startswith(EXT):
        return (iri + rest)[len(EXT) :] or None
    return None


def decode_extension(value: Any, bindings: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping):
        return {(_ext_name(k, bindings) or k): decode_extension(v, bindings) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_extension(v, bindings) for v in value]
    return value


def _read_extensions(obj: Any, bindings: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(obj, Mapping):
        return out
    for key, value in obj.items():
        name = _ext_name(key, bindings)
        if name is not None:
            out[name] = decode_extension(value, bindings)
    return out


def _event_time(event: Mapping[str, Any]) -> str:
    raw = event.get("eventTime")
    offset = event.get("eventTimeZoneOffset")
    try:
        parsed = datetime.fromisoformat(str(raw).replace("z", "Z"))
    except ValueError:
        raise unmappable(f"'eventTime' {raw!r} is not an RFC 3339 date-time", "eventTime") from None
    if parsed.tzinfo is None:
        raise unmappable("'eventTime' must carry a UTC offset", "eventTime")
    try:
        parsed.astimezone(UTC)
        _ = parsed + timedelta(days=1), parsed - timedelta(days=1)
    except OverflowError:
        raise unmappable(f"'eventTime' {raw!r} is out of range", "eventTime") from None
    if isinstance(offset, str) and len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        try:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
        except ValueError:
            return parsed.isoformat()
        if hours > 14 or minutes > 59:
            raise unmappable(f"'eventTimeZoneOffset' {offset!r} is not a UTC offset", "eventTimeZoneOffset")
        delta = timedelta(hours=hours, minutes=minutes)
        parsed = parsed.astimezone(timezone(-delta if offset[0] == "-" else delta))
    return parsed.isoformat()


def _region(event: Mapping[str, Any]) -> str:
    for field in ("bizLocation", "readPoint"):
        where = event.get(field)
        if isinstance(where, Mapping):
            region = parse_region_uri(where.get("id"))
            if region is not None:
                return region
    raise unmappable(
        "the site is required: a bizLocation or readPoint urn:batterytrace:region:<6-digit GB/T 2260 code>",
        "bizLocation",
    )


class _Reader:
    """One EPCIS event being read: its parts, and helpers that name the field at fault."""

    def __init__(self, event: Mapping[str, Any], bindings: Mapping[str, str], passport_base: str | None):
        self.event = event
        self.type = event.get("type")
        self.action = event.get("action")
        self.bindings = bindings
        self.passport_base = passport_base
        self.ext = _read_extensions(event, bindings)
        self.ilmd = _read_extensions(event.get("ilmd"), bindings)
        for meta in ("recordedBy", "eventType", "retracted"):
            self.ext.pop(meta, None)

    def only(self, *types: str, step: str, how: str) -> None:
        if self.type not in types:
            raise unmappable(f"'{step}' is read from {how}; this is a {self.type}", "type")

    def batteries(self, field: str, *, required: bool = True) -> list[str]:
        items = self.event.get(field)
        if items is None or items == []:
            if self.event.get("quantityList") or self.event.get("childQuantityList"):
                raise unmappable(
                    "the registry traces serialised batteries: quantities of a class (quantityList) "
                    "cannot be matched to battery codes",
                    "quantityList" if self.event.get("quantityList") else "childQuantityList",
                )
            if required:
                raise unmappable(
                    f"'{field}' must name at least one battery (urn:batterytrace:battery:<code>)", field
                )
            return []
        if not isinstance(items, list):
            raise unmappable(f"'{field}' must be a list", field)
        return [self.battery(item, f"{field}[{i}]") for i, item in enumerate(items)]

    def battery(self, uri: Any, field: str) -> str:
        code = parse_battery_uri(uri, self.passport_base)
        if code is None:
            raise unmappable(
                f"'{field}' {uri!r} is not a battery of this registry: batteries are named "
                "urn:batterytrace:battery:<GB/T 34014 code>; GS1 keys cannot be matched to battery codes",
                field,
            )
        return code

    def vehicles(self, field: str) -> list[str]:
        items = self.event.get(field)
        if not isinstance(items, list) or not items:
            raise unmappable(f"'{field}' must name the vehicle (urn:batterytrace:vin:<VIN>)", field)
        out = []
        for i, item in enumerate(items):
            vin = parse_vin_uri(item)
            if vin is None:
                raise unmappable(
                    f"'{field}[{i}]' {item!r} is not a vehicle (urn:batterytrace:vin:<VIN>)", f"{field}[{i}]"
                )
            out.append(vin)
        return out

    def soh(self) -> float | None:
        for element in _items(self.event.get("sensorElementList")):
            if not isinstance(element, Mapping):
                continue
            for report in _items(element.get("sensorReport")):
                if isinstance(report, Mapping) and report.get("type") in (
                    SOH_TYPE,
                    f"{PREFIX}:StateOfHealth",
                ):
                    value = report.get("value")
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        return value
        value = self.ext.get("soh_percent")
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    def party(self, list_field: str, key: str) -> str | None:
        entries = [e for e in _items(self.event.get(list_field)) if isinstance(e, Mapping)]
        ranked = sorted(
            entries, key=lambda e: {"possessing_party": 0, "owning_party": 1}.get(str(e.get("type")), 2)
        )
        for entry in ranked:
            uscc = parse_enterprise_uri(entry.get(key))
            if uscc is not None:
                return uscc
        return None


Draft = tuple[str, str | None, str | None, dict[str, Any]]  # (type, battery, vin, data)


def _items(value: Any) -> list[Any]:
    """A list field's items (nothing, for a field that is absent or not a list)."""
    return value if isinstance(value, list) else []


def _battery_events(
    r: _Reader, kind: str, field: str = "epcList", data: Mapping[str, Any] | None = None
) -> list[Draft]:
    payload = dict(r.ext if data is None else data)
    return [(kind, code, None, dict(payload)) for code in r.batteries(field)]


def _commissioning(r: _Reader) -> list[Draft]:
    r.only("ObjectEvent", step="commissioning", how="an ObjectEvent with action ADD naming new battery codes")
    if r.action != "ADD":
        raise unmappable(
            "'commissioning' registers new codes: the ObjectEvent's action must be ADD", "action"
        )
    return _battery_events(r, "manufactured", data={**r.ext, **r.ilmd})


def _parent_child(r: _Reader, step: str, action: str) -> tuple[Any, list[Any]]:
    r.only(
        "AssociationEvent",
        "AggregationEvent",
        step=step,
        how="an AssociationEvent (or AggregationEvent) with a parentID and childEPCs",
    )
    if r.action != action:
        raise unmappable(
            f"'{step}' is written with action {action}; this event's action is {r.action}", "action"
        )
    return r.event.get("parentID"), _items(r.event.get("childEPCs"))


def _assembling(r: _Reader) -> list[Draft]:
    parent, _ = _parent_child(r, "assembling", "ADD")
    code = r.battery(parent, "parentID")
    children = r.batteries("childEPCs")
    return [("assembled", code, None, {**r.ext, "children": children})]


def _shipping(r: _Reader) -> list[Draft]:
    r.only("ObjectEvent", step="shipping", how="ObjectEvents listing the batteries shipped")
    codes = r.batteries("epcList")
    to = r.party("destinationList", "destination") or r.ext.get("to")
    if not to:
        raise unmappable(
            "'shipping' needs the receiver: a destinationList entry of type possessing_party naming "
            "urn:batterytrace:enterprise:<USCC>",
            "destinationList",
        )
    return [("shipped", code, None, {**r.ext, "to": to}) for code in codes]


def _object_step(kind: str, step: str) -> Any:
    def read(r: _Reader) -> list[Draft]:
        r.only("ObjectEvent", step=step, how="ObjectEvents listing the batteries")
        return _battery_events(r, kind)

    return read


def _installing(r: _Reader) -> list[Draft]:
    if r.type == "ObjectEvent":
        raise unmappable(
            "'installing' needs the vehicle or storage system: an AssociationEvent whose parentID is "
            "urn:batterytrace:vin:<VIN> or urn:batterytrace:system:<name>",
            "parentID",
        )
    parent, _ = _parent_child(r, "installing", "ADD")
    vin, system = parse_vin_uri(parent), parse_system_uri(parent)
    if vin is None and system is None:
        raise unmappable(
            f"'parentID' {parent!r} is neither a vehicle (urn:batterytrace:vin:<VIN>) nor a storage system "
            "(urn:batterytrace:system:<name>)",
            "parentID",
        )
    where = {"vin": vin} if vin is not None else {"system": system}
    return _battery_events(r, "installed", "childEPCs", {**r.ext, **where})


def _repairing(r: _Reader) -> list[Draft]:
    r.only("ObjectEvent", step="repairing", how="ObjectEvents listing the batteries maintained")
    codes = r.batteries("epcList")
    soh = r.soh()
    if soh is None:
        raise unmappable(
            f"'repairing' is recorded as maintenance with a state-of-health reading: a sensorReport of type "
            f"{SOH_TYPE} (uom P1) or bt:soh_percent",
            "sensorElementList",
        )
    return [("maintained", code, None, {**r.ext, "soh_percent": soh}) for code in codes]


def _removing(r: _Reader) -> list[Draft]:
    if r.type == "ObjectEvent":
        codes = r.batteries("epcList")
    else:
        _parent_child(r, "removing", "DELETE")
        codes = r.batteries("childEPCs")
    if not r.ext.get("reason"):
        raise unmappable(
            "'removing' needs bt:reason: repair, replacement, retirement, vehicle_scrapped or swap",
            f"{PREFIX}:reason",
        )
    return [("removed", code, None, dict(r.ext)) for code in codes]


def _inspecting(r: _Reader) -> list[Draft]:
    r.only("ObjectEvent", step="inspecting", how="ObjectEvents listing the batteries graded")
    codes = r.batteries("epcList")
    decision, soh = r.ext.get("decision"), r.soh()
    if not decision or soh is None:
        raise unmappable(
            "'inspecting' is recorded as a grading of a retired battery: it needs bt:decision (repurpose or "
            f"recycle) and a state-of-health reading ({SOH_TYPE})",
            f"{PREFIX}:decision" if not decision else "sensorElementList",
        )
    return [("graded", code, None, {**r.ext, "soh_percent": soh}) for code in codes]


def _disassembling(r: _Reader) -> list[Draft]:
    if r.type == "ObjectEvent":
        return _battery_events(r, "dismantled")
    parent, _ = _parent_child(r, "disassembling", "DELETE")
    return [("dismantled", r.battery(parent, "parentID"), None, dict(r.ext))]


def _vehicle_step(kind: str, step: str) -> Any:
    def read(r: _Reader) -> list[Draft]:
        r.only(
            "ObjectEvent", step=step, how="an ObjectEvent listing the vehicles (urn:batterytrace:vin:<VIN>)"
        )
        return [(kind, None, vin, dict(r.ext)) for vin in r.vehicles("epcList")]

    return read


def _repurposing(r: _Reader) -> list[Draft]:
    r.only(
        "TransformationEvent", step="repurposing", how="a TransformationEvent from the origins to the product"
    )
    origins = r.batteries("inputEPCList")
    outputs = r.batteries("outputEPCList", required=False)
    if len(outputs) != 1:
        raise unmappable(
            "'repurposing' needs exactly one second-life product in outputEPCList (its new 19-character code)",
            "outputEPCList",
        )
    data = {**r.ext, **r.ilmd, "into": outputs[0]}
    return [("repurposed", code, None, dict(data)) for code in origins]


def _recycling(r: _Reader) -> list[Draft]:
    r.only("TransformationEvent", step="recycling", how="a TransformationEvent with the battery as input")
    inputs = r.batteries("inputEPCList")
    if len(inputs) != 1:
        raise unmappable("'recycling' names one battery in inputEPCList per event", "inputEPCList")
    recovered: dict[str, Any] = {}
    for i, item in enumerate(_items(r.event.get("outputQuantityList"))):
        field = f"outputQuantityList[{i}]"
        name = _after(item.get("epcClass") if isinstance(item, Mapping) else None, "material")
        if name is None:
            raise unmappable(
                f"'{field}' is not a recovered material (urn:batterytrace:material:<li|co|…>)", field
            )
        if item.get("uom") not in (None, "KGM") or not isinstance(item.get("quantity"), int | float):
            raise unmappable(f"'{field}' must give the quantity in kilograms (uom KGM)", field)
        recovered[f"{name}_kg"] = item["quantity"]
    data = {**r.ext, **r.ilmd}
    if recovered or "recovered" not in data:
        data["recovered"] = recovered
    return [("recycled", inputs[0], None, data)]


def _retracting(r: _Reader) -> list[Draft]:
    r.only("ObjectEvent", step="retracting", how="an ObjectEvent naming the battery or vehicle")
    items = _items(r.event.get("epcList"))
    if len(items) != 1:
        raise unmappable("'retracting' names exactly one battery or vehicle in epcList", "epcList")
    vin = parse_vin_uri(items[0])
    if vin is not None:
        return [("retracted", None, vin, dict(r.ext))]
    return [("retracted", r.battery(items[0], "epcList[0]"), None, dict(r.ext))]


_READERS: dict[str, Any] = {
    "commissioning": _commissioning,
    "assembling": _assembling,
    "shipping": _shipping,
    "receiving": _object_step("received", "receiving"),
    "installing": _installing,
    "repairing": _repairing,
    "removing": _removing,
    "collecting": _object_step("retired", "collecting"),
    "inspecting": _inspecting,
    "disassembling": _disassembling,
    "retail_selling": _vehicle_step("vehicle_sold", "retail_selling"),
    BIZSTEP + "repurposing": _repurposing,
    BIZSTEP + "recycling": _recycling,
    BIZSTEP + "scrapping": _vehicle_step("vehicle_scrapped", "scrapping"),
    BIZSTEP + "reporting_missing": _object_step("reported_missing", "reporting_missing"),
    BIZSTEP + "finding": _object_step("found", "finding"),
    BIZSTEP + "exporting": _object_step("exported", "exporting"),
    BIZSTEP + "retracting": _retracting,
}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _ids(event: Mapping[str, Any], subjects: Sequence[str]) -> list[str]:
    raw = event.get("eventID")
    base: uuid.UUID | None = None
    if isinstance(raw, str) and raw.lower().startswith("urn:uuid:"):
        try:
            base = uuid.UUID(raw[9:])
        except ValueError:
            base = None
    if base is None:
        base = uuid.uuid5(ID_SPACE, raw if isinstance(raw, str) and raw else _canonical(event))
    if len(subjects) == 1:
        return [str(base)]
    return [str(uuid.uuid5(base, s)) for s in subjects]


def from_epcis(
    event: Any, *, bindings: Mapping[str, str] | None = None, passport_base: str | None = None
) -> list[Mapped]:
    """The registry events an EPCIS event stands for (one per battery it names), or
    ``epcis.unmappable`` with the reason and the EPCIS field at fault."""
    if not isinstance(event, Mapping):
        raise unmappable("an event must be a JSON object")
    ctx = dict(bindings or {})
    ctx.update(prefixes(event.get("@context")))
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise unmappable(f"'{kind}' events have no counterpart in the registry", "type")
    if kind == "TransactionEvent":
        raise unmappable(
            "TransactionEvents tie objects to business transactions; the registry records custody steps "
            "(shipping, receiving …) as ObjectEvents",
            "type",
        )
    if event.get("errorDeclaration") is not None:
        raise unmappable(
            "error declarations are recorded as retractions: send an ObjectEvent with bizStep "
            f"{BIZSTEP}retracting naming the event in bt:event and the reason in bt:reason",
            "errorDeclaration",
        )
    step = normalise_biz_step(event.get("bizStep"))
    if step is None:
        raise unmappable(
            "'bizStep' is required: it tells which step of the battery's life this is", "bizStep"
        )
    reader = _READERS.get(step)
    if reader is None:
        known = ", ".join(m.biz_step for m in MAPPINGS)
        raise unmappable(f"bizStep {step!r} has no counterpart in the registry; it reads {known}", "bizStep")
    r = _Reader(event, ctx, passport_base)
    drafts: list[Draft] = reader(r)
    time = _event_time(event)
    region = _region(event)
    recorded_by = None
    for key, value in event.items():
        if _ext_name(key, ctx) == "recordedBy":
            recorded_by = value
    actor = parse_enterprise_uri(recorded_by) if recorded_by is not None else None
    if recorded_by is not None and actor is None:
        raise unmappable("'bt:recordedBy' must be urn:batterytrace:enterprise:<USCC>", f"{PREFIX}:recordedBy")
    ids = _ids(event, [d[1] or d[2] or "" for d in drafts])
    out = []
    for event_id, (etype, battery, vin, data) in zip(ids, drafts, strict=True):
        raw: dict[str, Any] = {"id": event_id, "type": etype}
        if battery is not None:
            raw["battery"] = battery
        if vin is not None:
            raw["vin"] = vin
        raw["time"] = time
        raw["region"] = region
        raw["data"] = data
        out.append(Mapped(raw, actor))
    return out


def event_list(document: Any) -> list[Any] | None:
    """The events of an EPCISDocument or EPCISQueryDocument; a bare event is a list of one."""
    if not isinstance(document, Mapping):
        return None
    kind = document.get("type")
    body = document.get("epcisBody")
    if kind == "EPCISDocument" and isinstance(body, Mapping):
        events = body.get("eventList")
        return events if isinstance(events, list) else None
    if kind == "EPCISQueryDocument" and isinstance(body, Mapping):
        results = body.get("queryResults")
        rbody = results.get("resultsBody") if isinstance(results, Mapping) else None
        events = rbody.get("eventList") if isinstance(rbody, Mapping) else None
        return events if isinstance(events, list) else None
    if kind in EVENT_TYPES:
        return [document]
    return None


def iter_mapped(
    events: Iterable[Any], bindings: Mapping[str, str], passport_base: str | None = None
) -> Iterator[tuple[int, list[Mapped] | DomainError]]:
    """Each event's index and the registry events it maps to (or why it does not)."""
    for index, event in enumerate(events):
        try:
            yield index, from_epcis(event, bindings=bindings, passport_base=passport_base)
        except DomainError as exc:
            yield index, exc
