"""Structured logs: one JSON line per request with its id (also in the response header and in every
problem document), the enterprise, the route, the status and the duration; never a key."""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterator

import pytest

from batterytrace.domain.permissions import Permission
from batterytrace.logging_json import JsonFormatter, configure_logging, redact
from tests import factories as f
from tests.ops.log_audit import AUDIT, AuditHandler


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter(redact=False))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self, logger: str | None = None) -> list[dict]:
        out = [json.loads(line) for line in self.lines]
        return [x for x in out if logger is None or x["logger"] == logger]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_one_line_per_request_with_id_enterprise_route_status_duration(client, cast, lines):
    code = f.code()
    r = cast.maker.event(f.event("manufactured", code, 0, f.MANUFACTURED))
    assert r.status_code == 201
    g = client.get(f"/api/v1/batteries/{code}", params={"vin": "LSVAU2A30PN000001"})
    requests = lines.parsed("batterytrace.request")
    assert len(requests) == 2
    post, get = requests
    assert post["request_id"] == r.headers["x-request-id"]
    assert post["enterprise"] == cast.maker.id
    assert post["route"] == "/api/v1/events"
    assert post["method"] == "POST"
    assert post["status"] == 201
    assert post["duration_ms"] > 0
    assert post["level"] == "info"
    assert get["request_id"] == g.headers["x-request-id"]
    assert get["enterprise"] is None  # no key: a public request
    assert get["route"] == "/api/v1/batteries/{code}"
    # the route template, never the path or the query: no code, no VIN in the log
    for line in lines.lines:
        assert code not in line
        assert "LSVAU2A30PN000001" not in line


def test_request_id_is_echoed_in_the_header_and_every_problem_document(client, cast):
    r = client.get("/api/v1/batteries/NOT-A-CODE", headers={"X-Request-ID": "trace-42.a:b"})
    assert r.status_code == 422
    assert r.headers["x-request-id"] == "trace-42.a:b"
    assert r.json()["request_id"] == "trace-42.a:b"
    # problems from each path: authentication, validation, not found, method, body limit
    for response in (
        client.post("/api/v1/events", json={}),
        cast.maker.post("/api/v1/events", {"nonsense": True}),
        client.get("/no/such/page"),
        client.delete("/healthz"),
        client.post("/api/v1/events", content=b"x" * 32, headers={"content-length": str(10**9)}),
    ):
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
        assert response.json()["request_id"] == response.headers["x-request-id"]


def test_request_ids_that_are_not_plain_tokens_are_replaced(client, cast, lines):
    for offered in ("has space", "x" * 65, cast.maker.key, '"}{"level":"error'):
        r = client.get("/healthz", headers={"X-Request-ID": offered})
        assert r.headers["x-request-id"] != offered
        assert len(r.headers["x-request-id"]) == 32
    assert all(cast.maker.key not in line for line in lines.lines)


def test_an_unexpected_error_is_a_500_problem_with_its_id_and_a_logged_traceback(client, lines):
    def boom() -> None:
        raise RuntimeError("something broke")

    client.app.add_api_route("/boom", boom, openapi_extra={"x-permission": Permission.PUBLIC_READ.value})
    r = client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    rid = r.headers["x-request-id"]
    assert r.json()["request_id"] == rid
    assert r.json()["code"] == "server.internal"
    (request,) = lines.parsed("batterytrace.request")
    assert request["status"] == 500
    assert request["level"] == "error"
    assert request["request_id"] == rid
    tracebacks = [x for x in lines.parsed() if "exc" in x]
    assert tracebacks
    assert "RuntimeError: something broke" in tracebacks[0]["exc"]


def test_keys_never_reach_the_log(client, cast, regulator, lines):
    bad_secret = cast.maker.key[:-4] + "AAAA"
    client.get("/api/v1/batteries", headers={"Authorization": f"Bearer {bad_secret}"})
    client.get("/api/v1/batteries", headers={"Authorization": "Bearer bt_nonsense"})
    r = regulator.post(f"/api/v1/enterprises/{cast.maker.id}/keys", {})
    new_key = r.json()["key"]
    cast.maker.get("/api/v1/batteries")
    assert lines.lines
    registry = client.app.state.registry
    keys = [cast.maker.key, bad_secret, new_key, regulator.key]
    secret_parts = [k.split("_", 2)[2] for k in keys]  # bt_<id>_<secret>: the secret may hold "_"
    assert all(len(p) >= 40 for p in secret_parts)
    for line in lines.lines:
        for secret in [*keys, *secret_parts, registry.log.signer.private_key]:
            assert secret not in line


# --- the formatter -------------------------------------------------------------------------------------


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_formatter_writes_one_json_object_whatever_the_record_holds():
    fmt = JsonFormatter()
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        import sys

        record = _record("oops %s", "x", thing=object(), nan=math.nan, nested={"a": [1, {2}]})
        record.exc_info = sys.exc_info()
    line = fmt.format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["message"] == "oops x"
    assert body["level"] == "warning"
    assert body["logger"] == "t"
    assert body["nan"] == "nan"
    assert body["nested"] == {"a": [1, [2]]}
    assert "ValueError: line one\nline two" in body["exc"]
    assert body["time"].endswith("+00:00")
    # arguments that do not fit the format string still give a line
    assert json.loads(fmt.format(_record("%d items", "many")))["message"].startswith("%d items")


def test_formatter_masks_anything_shaped_like_a_secret():
    key = "bt_0123456789ab_" + "s3cr3t-" * 5
    line = JsonFormatter().format(_record("got %s and Bearer abcdefghijkl and PRIVATE+KEY+log+1+AAA", key))
    assert key not in line
    assert "abcdefghijkl" not in line
    assert "PRIVATE+KEY+log" not in line
    assert line.count("[redacted]") == 3
    assert redact("nothing secret here") == "nothing secret here"


def test_the_audit_catches_leaks_and_lines_that_are_not_json():
    audit = AuditHandler()
    selftest = logging.getLogger("audit.selftest")
    selftest.addHandler(audit)
    selftest.propagate = False  # these leaks are on purpose: keep them from the run-wide audit
    try:
        selftest.warning("key %s", "bt_0123456789ab_" + "x" * 30)
        selftest.warning("signing PRIVATE+KEY+name+ab+cd")
        selftest.warning("fine")
    finally:
        selftest.removeHandler(audit)
        selftest.propagate = True
    assert audit.lines == 3
    assert len(audit.violations) == 2
    assert "holds an API key" in audit.violations[0]
    assert "holds a signing key" in audit.violations[1]
    assert "bt_0123456789ab_xxx" not in audit.report()  # the report itself does not repeat them
    assert audit.check_line("plain text") == ["is not JSON (Expecting value: line 1 column 1 (char 0))"]


def test_the_run_wide_audit_is_watching(client):
    assert AUDIT in logging.getLogger().handlers
    lines, requests = AUDIT.lines, AUDIT.request_lines
    client.get("/healthz")
    assert AUDIT.request_lines == requests + 1
    assert AUDIT.lines > lines


@pytest.fixture
def saved_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    named = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate, logging.getLogger(n).level)
        for n in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    }
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        for n, (handlers, propagate, level) in named.items():
            lg = logging.getLogger(n)
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.setLevel(level)
        logging.captureWarnings(False)


def test_configure_logging_sends_server_and_registry_records_as_json(saved_logging):
    buf = io.StringIO()
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # as an earlier in-process server may leave it
    configure_logging("INFO", stream=buf)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    logging.getLogger("uvicorn.access").info("127.0.0.1 GET /x 200")  # the registry logs requests itself
    logging.getLogger("batterytrace.request").info("GET /healthz 200", extra={"status": 200})
    logging.getLogger("batterytrace.x").debug("below the level")
    written = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [x["logger"] for x in written] == ["uvicorn.error", "batterytrace.request"]
    assert written[1]["status"] == 200
