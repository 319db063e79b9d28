"""Policy profiles: the deadlines, thresholds and accounting factors the registry applies.

The numbers are data, kept in ``batterytrace/data/policy.toml`` with their sources; this module
reads and checks that file and gives typed, immutable :class:`Profile` objects. The default
profile is ``CN-2026``; ``EU-2027`` and ``EU-2031`` hold the EU recovery targets for comparison.

An operator may pass another file of the same shape to :func:`load_profiles`. Every key is
checked when the file is read; a wrong one gives a :class:`DomainError` (``policy.invalid``)
whose ``field`` is the dotted key, e.g. ``profiles.CN-2026.recovery_thresholds.li``.

Deadlines are counted in Chinese working days; see :mod:`batterytrace.domain.workdays`.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from batterytrace.domain.errors import POLICY_INVALID, POLICY_UNKNOWN_PROFILE, DomainError

DEFAULT_PROFILE = "CN-2026"

#: Chemistry classes every profile gives a lifetime and a manufacturing footprint for. The
#: battery code tells LFP (type B) and ternary (type E) apart; every other type is "other".
CHEMISTRIES = ("lfp", "ternary", "other")
#: Metals the registry accounts for (materials contained and recovered).
METALS = ("li", "co", "ni", "mn", "cu")
#: The event vocabulary and the enterprise roles, as in the registry's model.
EVENT_TYPES = frozenset(
    {
        "manufactured",
        "assembled",
        "shipped",
        "received",
        "installed",
        "vehicle_sold",
        "vehicle_scrapped",
        "maintained",
        "removed",
        "retired",
        "graded",
        "repurposed",
        "dismantled",
        "recycled",
        "reported_missing",
        "found",
        "exported",
        "retracted",
    }
)
ROLES = frozenset(
    {"battery_maker", "automaker", "service_outlet", "dismantler", "repurposer", "recycler", "regulator"}
)

_SCHEMA = 1
_MAX_DEADLINE_WD = 365
_CHEMISTRY_KEY = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Weibull:
    """A two-parameter Weibull distribution of battery lifetime in years.

    ``cdf(t)`` is the share of batteries retired by age ``t``: ``1 - exp(-(t / scale) ** shape)``.
    """

    shape: float
    scale: float  # years

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shape) and self.shape > 0):
            raise ValueError(f"Weibull shape must be a positive number, not {self.shape!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Weibull scale must be a positive number of years, not {self.scale!r}")

    def cdf(self, years: float) -> float:
        """Probability that a battery has retired by age ``years``."""
        if years <= 0:
            return 0.0
        return -math.expm1(-math.pow(years / self.scale, self.shape))

    def survival(self, years: float) -> float:
        """Probability that a battery is still in service at age ``years``."""
        if years <= 0:
            return 1.0
        return math.exp(-math.pow(years / self.scale, self.shape))

    def pdf(self, years: float) -> float:
        """Probability density of retirement at age ``years`` (per year)."""
        if years < 0:
            return 0.0
        if years == 0:
            if self.shape == 1:
                return 1.0 / self.scale
            return math.inf if self.shape < 1 else 0.0
        z = years / self.scale
        return (self.shape / self.scale) * math.pow(z, self.shape - 1) * math.exp(-math.pow(z, self.shape))

    def quantile(self, p: float) -> float:
        """The age by which a share ``p`` (0 <= p < 1) of batteries has retired; for sampling."""
        if not 0 <= p < 1:
            raise ValueError(f"quantile needs 0 <= p < 1, not {p!r}")
        return self.scale * math.pow(-math.log1p(-p), 1 / self.shape)

    @property
    def mean(self) -> float:
        """Mean lifetime in years: ``scale * Γ(1 + 1/shape)``."""
        return self.scale * math.gamma(1 + 1 / self.shape)


@dataclass(frozen=True, slots=True)
class GhgFactors:
    """Greenhouse-gas factors in kg CO2e (GWP100)."""

    #: Cradle-to-gate pack manufacturing per kWh, by chemistry (at least lfp, ternary, other).
    manufacturing_kgco2e_per_kwh: Mapping[str, float]
    #: Avoided per kWh of capacity repurposed for second life.
    repurposed_avoided_kgco2e_per_kwh: float
    #: Avoided per kg of metal recovered (li, ni, co), against primary production.
    recovered_avoided_kgco2e_per_kg: Mapping[str, float]

    def manufacturing_for(self, chemistry: str) -> float:
        """Manufacturing footprint per kWh for ``chemistry``, the "other" value if not listed."""
        return self.manufacturing_kgco2e_per_kwh.get(chemistry, self.manufacturing_kgco2e_per_kwh["other"])


@dataclass(frozen=True, slots=True)
class Profile:
    """One policy profile. Read-only: the mappings must not be changed."""

    name: str
    description: str
    #: event type → reporting role → working days to report the event in.
    reporting_deadlines: Mapping[str, Mapping[str, int]]
    #: A shipment must be received within this many working days.
    transfer_deadline_wd: int
    #: A retired battery must reach a licensed facility within this many working days.
    collection_deadline_wd: int
    #: A scrapped vehicle's battery must be removed and collected within this many working days.
    scrapped_vehicle_deadline_wd: int
    #: Minimum fraction of each metal contained that a recycler must recover.
    recovery_thresholds: Mapping[str, float]
    #: Minimum fraction of recycled metal in new batteries (empty: no rule).
    recycled_content_minimums: Mapping[str, float]
    #: A "repurpose" grading needs repurpose_min_soh <= SoH % <= repurpose_max_soh.
    repurpose_min_soh: float
    repurpose_max_soh: float
    #: Lifetime distribution by chemistry (at least lfp, ternary, other).
    lifetime: Mapping[str, Weibull]
    ghg: GhgFactors

    def lifetime_for(self, chemistry: str) -> Weibull:
        """The lifetime distribution for ``chemistry``, the "other" one if not listed."""
        return self.lifetime.get(chemistry, self.lifetime["other"])

    def repurpose_allowed(self, soh_percent: float) -> bool:
        """Whether a battery at this state of health may be graded for repurposing."""
        return self.repurpose_min_soh <= soh_percent <= self.repurpose_max_soh


def reporting_deadline_wd(profile: Profile, event_type: str, role: str) -> int | None:
    """Working days an enterprise acting in ``role`` has to report an ``event_type`` event;
    ``None`` when the profile sets no deadline for that pair."""
    return profile.reporting_deadlines.get(event_type, {}).get(role)


def load_profiles(path: Path | None = None) -> dict[str, Profile]:
    """All profiles in the policy file: the packaged one, or the file at ``path``.

    Raises ``DomainError`` (``policy.invalid``) naming the first bad key.
    """
    if path is None:
        return dict(_packaged_profiles())
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DomainError(
            POLICY_INVALID, f"Cannot read the policy file {path}: {exc.strerror or exc}."
        ) from exc
    return _parse(raw, str(path))


def get_profile(name: str = DEFAULT_PROFILE, *, path: Path | None = None) -> Profile:
    """The profile called ``name`` (default ``CN-2026``) from the packaged or given file.

    Raises ``DomainError`` (``policy.unknown_profile``) for a name the file does not define.
    """
    profiles = load_profiles(path)
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise DomainError(
            POLICY_UNKNOWN_PROFILE,
            f"There is no policy profile named {name!r}; use one of: {known}.",
            field="profile",
        ) from None


@lru_cache(maxsize=1)
def _packaged_profiles() -> Mapping[str, Profile]:
    resource = resources.files("batterytrace").joinpath("data/policy.toml")
    return _parse(resource.read_bytes(), "batterytrace/data/policy.toml")


# --- reading and checking the file ---------------------------------------------------------------

_PROFILE_KEYS = frozenset(
    {
        "description",
        "inherits",
        "transfer_deadline_wd",
        "collection_deadline_wd",
        "scrapped_vehicle_deadline_wd",
        "repurpose",
        "recovery_thresholds",
        "recycled_content_minimums",
        "reporting_deadlines",
        "lifetime",
        "ghg",
    }
)
_REQUIRED_PROFILE_KEYS = _PROFILE_KEYS - {"inherits"}


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


class _Checker:
    """Reads values out of the parsed file, failing with the dotted key of a bad one."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> NoReturn:
        raise DomainError(POLICY_INVALID, f"Policy file {self.source}: {key} {problem}.", field=key)

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, "must be a table")
        return value

    def keys(
        self, table: Mapping[str, Any], key: str, allowed: frozenset[str] | tuple[str, ...], what: str
    ) -> None:
        for name in table:
            if name not in allowed:
                self.fail(_join(key, name), f"is not {what} (expected one of: {', '.join(sorted(allowed))})")

    def required(self, table: Mapping[str, Any], key: str, names: frozenset[str] | tuple[str, ...]) -> None:
        for name in sorted(names):
            if name not in table:
                self.fail(_join(key, name), "is missing")

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be a non-empty string")
        return value

    def number(self, value: Any, key: str, low: float, high: float, *, low_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(key, f"must be a number, not {value!r}")
        if value < low or value > high or (low_open and value == low):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            self.fail(key, f"must be in {interval}, not {value!r}")
        return float(value)

    def working_days(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_DEADLINE_WD:
            self.fail(
                key, f"must be a whole number of working days from 1 to {_MAX_DEADLINE_WD}, not {value!r}"
            )
        return value

    def fractions(self, value: Any, key: str) -> dict[str, float]:
        table = self.table(value, key)
        self.keys(table, key, METALS, "a tracked metal")
        return {metal: self.number(v, f"{key}.{metal}", 0, 1, low_open=True) for metal, v in table.items()}

    def non_negative(self, value: Any, key: str) -> float:
        return self.number(value, key, 0, math.inf)

    def chemistry_table(self, value: Any, key: str) -> dict[str, Any]:
        table = self.table(value, key)
        for name in table:
            if not _CHEMISTRY_KEY.fullmatch(name):
                self.fail(f"{key}.{name}", "is not a chemistry name (lower-case letters, digits, _)")
        self.required(table, key, CHEMISTRIES)
        return table


def _parse(raw: bytes, source: str) -> dict[str, Profile]:
    check = _Checker(source)
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DomainError(POLICY_INVALID, f"Policy file {source} is not valid UTF-8 TOML: {exc}.") from exc
    top_keys = frozenset({"schema", "profiles"})
    check.keys(document, "", top_keys, "a known top-level key")
    check.required(document, "", top_keys)
    if document["schema"] != _SCHEMA or isinstance(document["schema"], bool):
        check.fail("schema", f"must be {_SCHEMA}, not {document['schema']!r}")
    raw_profiles = check.table(document["profiles"], "profiles")
    if not raw_profiles:
        check.fail("profiles", "must define at least one profile")
    for name, body in raw_profiles.items():
        key = f"profiles.{name}"
        check.keys(check.table(body, key), key, _PROFILE_KEYS, "a profile key")

    resolved: dict[str, dict[str, tuple[Any, str]]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, tuple[Any, str]]:
        """The profile's sections, each with the profile that defines it (for error keys)."""
        if name in resolved:
            return resolved[name]
        own: dict[str, Any] = raw_profiles[name]
        merged: dict[str, tuple[Any, str]] = {}
        if "inherits" in own:
            key = f"profiles.{name}.inherits"
            base = check.text(own["inherits"], key)
            if base not in raw_profiles:
                check.fail(key, f"names no profile in this file: {base!r}")
            if base in chain or base == name:
                check.fail(key, f"makes a cycle: {' -> '.join((*chain, name, base))}")
            merged.update(resolve(base, (*chain, name)))
        merged.update({k: (v, name) for k, v in own.items() if k != "inherits"})
        resolved[name] = merged
        return merged

    return {name: _profile(name, resolve(name, ()), check) for name in raw_profiles}


def _profile(name: str, sections: Mapping[str, tuple[Any, str]], check: _Checker) -> Profile:
    for section in sorted(_REQUIRED_PROFILE_KEYS):
        if section not in sections:
            check.fail(f"profiles.{name}.{section}", "is missing (and not inherited)")

    def get(section: str) -> tuple[Any, str]:
        value, owner = sections[section]
        return value, f"profiles.{owner}.{section}"

    value, key = get("reporting_deadlines")
    deadlines: dict[str, dict[str, int]] = {}
    for event_type, roles in check.table(value, key).items():
        if event_type not in EVENT_TYPES:
            check.fail(f"{key}.{event_type}", "is not an event type")
        roles_key = f"{key}.{event_type}"
        roles_table = check.table(roles, roles_key)
        check.keys(roles_table, roles_key, ROLES, "a role")
        deadlines[event_type] = {
            role: check.working_days(v, f"{roles_key}.{role}") for role, v in roles_table.items()
        }

    value, key = get("repurpose")
    repurpose = check.table(value, key)
    repurpose_keys = frozenset({"min_soh_percent", "max_soh_percent"})
    check.keys(repurpose, key, repurpose_keys, "a repurpose key")
    check.required(repurpose, key, repurpose_keys)
    min_soh = check.number(repurpose["min_soh_percent"], f"{key}.min_soh_percent", 0, 100)
    max_soh = check.number(repurpose["max_soh_percent"], f"{key}.max_soh_percent", 0, 100)
    if max_soh < min_soh:
        check.fail(f"{key}.max_soh_percent", f"({max_soh:g}) must not be below min_soh_percent ({min_soh:g})")

    value, key = get("lifetime")
    lifetime: dict[str, Weibull] = {}
    weibull_keys = frozenset({"shape", "scale_years"})
    for chemistry, params in check.chemistry_table(value, key).items():
        params_key = f"{key}.{chemistry}"
        table = check.table(params, params_key)
        check.keys(table, params_key, weibull_keys, "a Weibull parameter")
        check.required(table, params_key, weibull_keys)
        lifetime[chemistry] = Weibull(
            shape=check.number(table["shape"], f"{params_key}.shape", 0, 100, low_open=True),
            scale=check.number(table["scale_years"], f"{params_key}.scale_years", 0, 100, low_open=True),
        )

    value, key = get("ghg")
    ghg = check.table(value, key)
    ghg_keys = frozenset(
        {
            "manufacturing_kgco2e_per_kwh",
            "repurposed_avoided_kgco2e_per_kwh",
            "recovered_avoided_kgco2e_per_kg",
        }
    )
    check.keys(ghg, key, ghg_keys, "a GHG factor")
    check.required(ghg, key, ghg_keys)
    manufacturing_key = f"{key}.manufacturing_kgco2e_per_kwh"
    manufacturing = {
        chemistry: check.non_negative(v, f"{manufacturing_key}.{chemistry}")
        for chemistry, v in check.chemistry_table(
            ghg["manufacturing_kgco2e_per_kwh"], manufacturing_key
        ).items()
    }
    recovered_key = f"{key}.recovered_avoided_kgco2e_per_kg"
    recovered_table = check.table(ghg["recovered_avoided_kgco2e_per_kg"], recovered_key)
    check.keys(recovered_table, recovered_key, METALS, "a tracked metal")
    recovered = {
        metal: check.non_negative(v, f"{recovered_key}.{metal}") for metal, v in recovered_table.items()
    }

    return Profile(
        name=name,
        description=check.text(*get("description")).strip(),
        reporting_deadlines=deadlines,
        transfer_deadline_wd=check.working_days(*get("transfer_deadline_wd")),
        collection_deadline_wd=check.working_days(*get("collection_deadline_wd")),
        scrapped_vehicle_deadline_wd=check.working_days(*get("scrapped_vehicle_deadline_wd")),
        recovery_thresholds=check.fractions(*get("recovery_thresholds")),
        recycled_content_minimums=check.fractions(*get("recycled_content_minimums")),
        repurpose_min_soh=min_soh,
        repurpose_max_soh=max_soh,
        lifetime=lifetime,
        ghg=GhgFactors(
            manufacturing_kgco2e_per_kwh=manufacturing,
            repurposed_avoided_kgco2e_per_kwh=check.non_negative(
                ghg["repurposed_avoided_kgco2e_per_kwh"], f"{key}.repurposed_avoided_kgco2e_per_kwh"
            ),
            recovered_avoided_kgco2e_per_kg=recovered,
        ),
    )
