"""Every error the registry can report, defined once.

Each error has a stable dotted ``code`` that clients may branch on, a ``kind`` that the
API maps to an HTTP status (one table, in ``batterytrace.api.problems``), a short title,
and a message written for the person who has to fix the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """What sort of failure an error is; the API maps each kind to one HTTP status."""

    INVALID = "invalid"  # the input breaks a rule of form: 422
    BAD_REQUEST = "bad_request"  # the request itself cannot be read: 400
    UNAUTHORIZED = "unauthorized"  # no usable credentials: 401
    FORBIDDEN = "forbidden"  # the caller may not do this: 403
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # the registry's state does not allow it: 409
    TOO_LARGE = "too_large"  # 413
    RATE_LIMITED = "rate_limited"  # 429
    UNAVAILABLE = "unavailable"  # 503


@dataclass(frozen=True)
class ErrorSpec:
    code: str
    kind: ErrorKind
    title: str


_CATALOG: dict[str, ErrorSpec] = {}


def _spec(code: str, kind: ErrorKind, title: str) -> str:
    _CATALOG[code] = ErrorSpec(code, kind, title)
    return code


# --- identifiers -------------------------------------------------------------------------
CODE_LENGTH = _spec("code.bad_length", ErrorKind.INVALID, "Battery code has the wrong length")
CODE_CHARACTER = _spec(
    "code.bad_character", ErrorKind.INVALID, "Battery code has a character not allowed here"
)
CODE_DATE = _spec("code.bad_date", ErrorKind.INVALID, "Battery code's production date is not a real date")
CODE_SERIAL = _spec("code.bad_serial", ErrorKind.INVALID, "Battery code's serial number is out of range")
VIN_LENGTH = _spec("vin.bad_length", ErrorKind.INVALID, "VIN has the wrong length")
VIN_CHARACTER = _spec("vin.bad_character", ErrorKind.INVALID, "VIN has a character not allowed")
VIN_CHECK = _spec("vin.bad_check_character", ErrorKind.INVALID, "VIN check character does not match")
USCC_LENGTH = _spec("uscc.bad_length", ErrorKind.INVALID, "Unified social credit code has the wrong length")
USCC_CHARACTER = _spec(
    "uscc.bad_character", ErrorKind.INVALID, "Unified social credit code has a character not allowed"
)
USCC_CHECK = _spec(
    "uscc.bad_check_character", ErrorKind.INVALID, "Unified social credit code check character does not match"
)
REGION_INVALID = _spec(
    "region.invalid", ErrorKind.INVALID, "Region code is not a known administrative division"
)

# --- requests ----------------------------------------------------------------------------
REQUEST_INVALID = _spec("request.invalid", ErrorKind.INVALID, "The request does not have the expected shape")
REQUEST_MALFORMED = _spec("request.malformed", ErrorKind.BAD_REQUEST, "The request body is not valid JSON")
REQUEST_TOO_LARGE = _spec("request.too_large", ErrorKind.TOO_LARGE, "The request body is too large")
BATCH_TOO_LARGE = _spec("batch.too_large", ErrorKind.TOO_LARGE, "The batch holds too many events")
BATCH_ABORTED = _spec("batch.aborted", ErrorKind.CONFLICT, "The atomic batch was not recorded")
PAGE_INVALID = _spec("request.bad_page", ErrorKind.INVALID, "The page parameters are not valid")
NOT_FOUND = _spec("request.not_found", ErrorKind.NOT_FOUND, "No such resource")
METHOD_NOT_ALLOWED = _spec("request.method_not_allowed", ErrorKind.BAD_REQUEST, "Method not allowed")
RATE_LIMITED = _spec("request.rate_limited", ErrorKind.RATE_LIMITED, "Too many requests")

# --- authentication and permission -------------------------------------------------------
AUTH_REQUIRED = _spec("auth.required", ErrorKind.UNAUTHORIZED, "An API key is required")
AUTH_INVALID_KEY = _spec("auth.invalid_key", ErrorKind.UNAUTHORIZED, "The API key is not valid")
PERMISSION_DENIED = _spec("permission.denied", ErrorKind.FORBIDDEN, "Not allowed for this enterprise")

# --- enterprises, licences, keys ---------------------------------------------------------
ENTERPRISE_UNKNOWN = _spec("enterprise.unknown", ErrorKind.NOT_FOUND, "No such enterprise")
ENTERPRISE_EXISTS = _spec("enterprise.exists", ErrorKind.CONFLICT, "The enterprise is already registered")
ENTERPRISE_INVALID = _spec("enterprise.invalid", ErrorKind.INVALID, "The enterprise record is not valid")
MANUFACTURER_CODE_TAKEN = _spec(
    "enterprise.manufacturer_code_taken",
    ErrorKind.CONFLICT,
    "The manufacturer code belongs to another enterprise",
)
LICENCE_INVALID = _spec("licence.invalid", ErrorKind.INVALID, "The licence is not valid")
LICENCE_MISSING = _spec("licence.missing", ErrorKind.FORBIDDEN, "A valid licence is required")
BOOTSTRAP_NOT_EMPTY = _spec("bootstrap.not_empty", ErrorKind.CONFLICT, "The registry already has enterprises")
KEY_UNKNOWN = _spec("key.unknown", ErrorKind.NOT_FOUND, "No such API key")

# --- events and lifecycle ----------------------------------------------------------------
EVENT_UNKNOWN_TYPE = _spec("event.unknown_type", ErrorKind.INVALID, "Unknown event type")
EVENT_ID_REUSED = _spec(
    "event.id_reused", ErrorKind.CONFLICT, "The event id was already used for another event"
)
EVENT_TIME_INVALID = _spec("event.bad_time", ErrorKind.INVALID, "The event time is not valid")
EVENT_TIME_IN_FUTURE = _spec("event.time_in_future", ErrorKind.INVALID, "The event time is in the future")
EVENT_TIME_ORDER = _spec(
    "lifecycle.time_before_previous", ErrorKind.CONFLICT, "The event is earlier than the battery's last event"
)
EVENT_UNKNOWN = _spec("event.unknown", ErrorKind.NOT_FOUND, "No such event")
BATTERY_UNKNOWN = _spec("battery.unknown", ErrorKind.NOT_FOUND, "The battery is not registered")
BATTERY_EXISTS = _spec("battery.exists", ErrorKind.CONFLICT, "The battery is already registered")
VEHICLE_UNKNOWN = _spec("vehicle.unknown", ErrorKind.NOT_FOUND, "The vehicle is not registered")
NOT_MANUFACTURER = _spec(
    "lifecycle.not_code_owner", ErrorKind.FORBIDDEN, "The manufacturer code belongs to another enterprise"
)
WRONG_ROLE = _spec(
    "lifecycle.wrong_role", ErrorKind.FORBIDDEN, "The enterprise does not have the role this step needs"
)
NOT_HOLDER = _spec("lifecycle.not_holder", ErrorKind.FORBIDDEN, "The enterprise does not hold the battery")
WRONG_STAGE = _spec(
    "lifecycle.wrong_stage", ErrorKind.CONFLICT, "The battery is not at a stage where this step is allowed"
)
IN_TRANSIT = _spec("lifecycle.in_transit", ErrorKind.CONFLICT, "The battery is in transit")
NOT_IN_TRANSIT_TO_ACTOR = _spec(
    "lifecycle.not_addressee", ErrorKind.FORBIDDEN, "The battery is not in transit to this enterprise"
)
FINAL = _spec("lifecycle.final", ErrorKind.CONFLICT, "The battery's life under this code is over")
WASTE_UNLICENSED = _spec(
    "lifecycle.unlicensed_receiver", ErrorKind.FORBIDDEN, "Waste batteries may only go to licensed facilities"
)
WASTE_NOT_ALLOWED = _spec("lifecycle.waste", ErrorKind.CONFLICT, "A retired (waste) battery cannot do this")
E_BIKE_FORBIDDEN = _spec(
    "lifecycle.e_bike_forbidden",
    ErrorKind.FORBIDDEN,
    "Retired and second-life power batteries may not go into e-bikes",
)
ATTACHED = _spec("lifecycle.part_of_parent", ErrorKind.CONFLICT, "The battery is part of a larger battery")
HIERARCHY = _spec("lifecycle.bad_hierarchy", ErrorKind.CONFLICT, "The batteries cannot be linked this way")
VEHICLE_SCRAPPED = _spec("lifecycle.vehicle_scrapped", ErrorKind.CONFLICT, "The vehicle has been scrapped")
VEHICLE_STATE = _spec(
    "lifecycle.vehicle_state", ErrorKind.CONFLICT, "The vehicle is not in a state that allows this"
)
SECOND_LIFE_CODE = _spec(
    "lifecycle.second_life_code", ErrorKind.INVALID, "The code form does not fit this step"
)
GRADED_FOR_RECYCLING = _spec(
    "lifecycle.graded_for_recycling", ErrorKind.CONFLICT, "The battery was graded for recycling"
)
RETRACT_NOT_ALLOWED = _spec(
    "lifecycle.retraction_refused", ErrorKind.CONFLICT, "The event cannot be retracted"
)
NOT_MISSING = _spec("lifecycle.not_missing", ErrorKind.CONFLICT, "The battery is not reported missing")
MASS_BALANCE = _spec("lifecycle.mass_balance", ErrorKind.INVALID, "The quantities do not balance")

# --- log ---------------------------------------------------------------------------------
LOG_INDEX = _spec("log.bad_index", ErrorKind.INVALID, "The log index or size is out of range")
LOG_UNAVAILABLE = _spec("log.unavailable", ErrorKind.UNAVAILABLE, "The log is not available")

# --- server ------------------------------------------------------------------------------
INTERNAL = _spec("server.internal", ErrorKind.UNAVAILABLE, "The registry could not complete the request")
STORE_BUSY = _spec(
    "server.busy", ErrorKind.UNAVAILABLE, "The registry is busy; retry with the same event ids"
)

# --- policy ------------------------------------------------------------------------------
POLICY_INVALID = _spec("policy.invalid", ErrorKind.INVALID, "The policy file is not valid")
POLICY_UNKNOWN_PROFILE = _spec("policy.unknown_profile", ErrorKind.INVALID, "No policy profile has this name")

# --- standards and bulk transfer ---------------------------------------------------------
EPCIS_INVALID = _spec(
    "epcis.invalid", ErrorKind.INVALID, "The document does not validate against the EPCIS 2.0 schema"
)
EPCIS_UNMAPPABLE = _spec(
    "epcis.unmappable", ErrorKind.INVALID, "The EPCIS event has no counterpart in the registry"
)
SCHEMA_UNAVAILABLE = _spec(
    "interop.schema_unavailable", ErrorKind.UNAVAILABLE, "The reference schemas are not installed"
)
IMPORT_UNREADABLE = _spec("import.unreadable", ErrorKind.INVALID, "The record cannot be read")

# --- circularity: grading thresholds and recycled content ---------------------------------
SOH_BELOW_THRESHOLD = _spec(
    "lifecycle.soh_below_threshold",
    ErrorKind.INVALID,
    "The state of health is below what the policy allows for repurposing",
)
NOT_GRADED_FOR_REPURPOSING = _spec(
    "lifecycle.not_graded_for_repurposing",
    ErrorKind.CONFLICT,
    "The battery has not been graded for repurposing",
)
RECYCLED_CONTENT_UNBACKED = _spec(
    "lifecycle.recycled_content_exceeds_recovered",
    ErrorKind.CONFLICT,
    "The recycled content declared is more than the recycler has recovered",
)


def catalog() -> dict[str, ErrorSpec]:
    """All known error codes, for documentation and tests."""
    return dict(_CATALOG)


class DomainError(Exception):
    """A failure the user can act on.

    ``field`` names the input that is wrong (a dotted path such as ``data.capacity_kwh``)
    and ``position`` the 1-based character position inside an identifier, when known.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        position: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if code not in _CATALOG:
            raise ValueError(f"unregistered error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.position = position
        self.extra = extra or {}

    @property
    def spec(self) -> ErrorSpec:
        return _CATALOG[self.code]

    @property
    def kind(self) -> ErrorKind:
        return self.spec.kind

    def with_field(self, field: str) -> DomainError:
        """The same error, attributed to the named input field."""
        return DomainError(self.code, self.message, field=field, position=self.position, extra=self.extra)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "title": self.spec.title, "detail": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.position is not None:
            out["position"] = self.position
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return f"DomainError({self.code!r}, {self.message!r})"
