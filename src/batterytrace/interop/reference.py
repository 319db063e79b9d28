"""The official schemas that EPCIS documents and passports are checked against.

They are not copied into the product: they are read from a reference folder holding
``epcis/EPCIS-JSON-Schema.json`` and ``batterypass/...``. The folder is named by the
``BATTERYTRACE_REFERENCE_DIR`` environment variable; without it, ``../shared/reference`` next to
the working directory or next to the source checkout is used. When no folder is found, the
operations that need a schema refuse with ``interop.schema_unavailable`` (503) instead of accepting
unchecked input.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
from jsonschema import Draft4Validator, Draft7Validator, FormatChecker

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.interop.compiled_schema import compile_schema

ENV_VAR = "BATTERYTRACE_REFERENCE_DIR"
EPCIS_SCHEMA = Path("epcis") / "EPCIS-JSON-Schema.json"

#: An absolute URI (RFC 3986 section 4.3): a scheme, a colon, and no blanks. Property names of EPCIS
#: extension fields must be such URIs or compact IRIs ("bt:capacity_kwh").
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"<>\\^`{|}]*$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _uri(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI.match(value))


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def _date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return True


#: The ``format`` keywords the reference schemas use: ``uri`` (an absolute URI), ``date-time``
#: (RFC 3339 with an offset) and ``date``; other formats are not checked.
FORMATS = {"uri": _uri, "date-time": _date_time, "date": _date}


def format_checker() -> FormatChecker:
    """A ``jsonschema`` format checker with the checks of ``FORMATS``."""
    checker = FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    return checker


def candidates(cwd: Path | None = None) -> list[Path]:
    """Where the reference folder is looked for, in order (the environment variable aside)."""
    here = Path(__file__).resolve()
    out = [(cwd or Path.cwd()) / ".." / "shared" / "reference"]
    # a source checkout: <checkout>/src/batterytrace/interop/reference.py
    if len(here.parents) > 3:
        out.append(here.parents[3] / ".." / "shared" / "reference")
    return out


def locate(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The reference folder, or None when none is installed. An explicit path or the environment
    variable is used as given (and must hold the EPCIS schema); otherwise the default places."""
    environ = os.environ if env is None else env
    chosen = explicit if explicit is not None else environ.get(ENV_VAR) or None
    if chosen is not None:
        path = Path(chosen)
        return path.resolve() if (path / EPCIS_SCHEMA).is_file() else None
    for path in candidates():
        if (path / EPCIS_SCHEMA).is_file():
            return path.resolve()
    return None


def require_reference(explicit: str | Path | None = None) -> Path:
    path = locate(explicit)
    if path is None:
        where = explicit or os.environ.get(ENV_VAR) or " or ".join(str(p) for p in candidates())
        raise DomainError(
            E.SCHEMA_UNAVAILABLE,
            f"the official EPCIS 2.0 schema was not found (looked in {where}); install the reference folder "
            f"and point {ENV_VAR} at it. Documents are not accepted unchecked.",
        )
    return path


@dataclass(frozen=True)
class SchemaIssue:
    """One way a document breaks the schema: where (a JSON pointer) and why."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


def _pointer(parts: Iterator[Any] | Any) -> str:
    out = ""
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out or "/"


def _issues(validator: Any, instance: Any, prefix: str = "", limit: int = 20) -> list[SchemaIssue]:
    if validator.is_valid(instance):
        return []
    found: list[SchemaIssue] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        best = jsonschema.exceptions.best_match(error.context) if error.context else error
        best = best or error
        found.append(SchemaIssue(prefix + _pointer(best.absolute_path), best.message[:500]))
        if len(found) >= limit:
            break
    return found


def _inline(node: Any, definitions: Mapping[str, Any], depth: int = 0) -> Any:
    """The schema with its ``#/definitions/...`` references written out in place (the EPCIS schema
    has no recursive definitions); validating the result is the same check, about twice as fast."""
    if depth > 50:
        raise ValueError("the schema's definitions refer to each other in a loop")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/") and len(node) == 1:
            return _inline(definitions[unquote(ref.rsplit("/", 1)[1])], definitions, depth + 1)
        return {k: _inline(v, definitions, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, definitions, depth) for v in node]
    return node


class EpcisSchema:
    """The EPCIS 2.0 JSON schema, ready to check whole documents or one event at a time."""

    def __init__(self, schema: Mapping[str, Any], source: Path | None = None) -> None:
        self.source = source
        checker = format_checker()
        self.document = Draft7Validator(schema, format_checker=checker)
        definitions = schema["definitions"]
        self.event = Draft7Validator(
            _inline(definitions["EPCIS-Document-Event"], definitions), format_checker=checker
        )
        #: the same check compiled to plain Python: a fast "valid" for the events of bulk imports
        self.event_is_valid = compile_schema(definitions["EPCIS-Document-Event"], FORMATS, root=schema)

    def document_issues(self, document: Any, limit: int = 20) -> list[SchemaIssue]:
        """Issues of a whole document (or a bare event) against the root schema."""
        return _issues(self.document, document, limit=limit)

    def envelope_issues(self, document: Mapping[str, Any], limit: int = 20) -> list[SchemaIssue]:
        """Issues of a document with its event list left empty (events are checked one by one)."""
        return _issues(self.document, _without_events(document), limit=limit)

    def event_issues(self, event: Any, prefix: str = "", limit: int = 20) -> list[SchemaIssue]:
        """Issues of one event of a document's event list. The compiled check answers first; an event
        it finds invalid is checked again by ``jsonschema``, whose verdict (and reasons) stand."""
        if self.event_is_valid(event):
            return []
        return _issues(self.event, event, prefix=prefix, limit=limit)


def _without_events(document: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(document)
    body = out.get("epcisBody")
    if not isinstance(body, Mapping):
        return out
    body = dict(body)
    if "eventList" in body:
        body["eventList"] = []
    results = body.get("queryResults")
    if isinstance(results, Mapping) and isinstance(results.get("resultsBody"), Mapping):
        results = dict(results)
        rbody = dict(results["resultsBody"])
        if "eventList" in rbody:
            rbody["eventList"] = []
        results["resultsBody"] = rbody
        body["queryResults"] = results
    out["epcisBody"] = body
    return out


@lru_cache(maxsize=8)
def _load_epcis(path: str, mtime_ns: int) -> EpcisSchema:
    with open(path, encoding="utf-8") as fh:
        return EpcisSchema(json.load(fh), Path(path))


def epcis_schema(reference: str | Path | None = None) -> EpcisSchema:
    """The EPCIS schema from the reference folder; ``interop.schema_unavailable`` if it is absent."""
    root = require_reference(reference)
    path = root / EPCIS_SCHEMA
    return _load_epcis(str(path), path.stat().st_mtime_ns)


def json_schema_validator(path: Path, draft4: bool = True) -> Any:
    """A validator for one of the reference schemas (the passport schemas are draft-04)."""
    with open(path, encoding="utf-8") as fh:
        schema = json.load(fh)
    cls = Draft4Validator if draft4 else Draft7Validator
    return cls(schema, format_checker=format_checker())
