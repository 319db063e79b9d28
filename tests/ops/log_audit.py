"""Every log record of the test run, formatted as the registry writes it, checked as it is written:
each line must be one JSON object, and none may hold an API key or a signing key.

Installed for the whole run by ``tests/ops/conftest.py``; the check runs after the last test of
each process (each xdist worker), and fails that test's teardown if any line broke a rule.
"""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest

from batterytrace.logging_json import JsonFormatter

#: Secrets by shape: an issued API key, and a note signing key (``PRIVATE+KEY+…``).
LEAKS = {
    "an API key": re.compile(r"bt_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}"),
    "a signing key": re.compile(r"PRIVATE\+KEY\+"),
}
MAX_KEPT = 20


class AuditHandler(logging.Handler):
    """Formats each record without masking (a masked leak is still a leak) and checks the line."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter(redact=False))
        self.lines = 0
        self.request_lines = 0
        self.violations: list[str] = []
        self._guard = threading.Lock()

    def check_line(self, line: str) -> list[str]:
        problems = []
        if "\n" in line:
            problems.append("spans several lines")
        try:
            parsed = json.loads(line)
        except ValueError as exc:
            problems.append(f"is not JSON ({exc})")
        else:
            if not isinstance(parsed, dict):
                problems.append("is not a JSON object")
        for what, pattern in LEAKS.items():
            if pattern.search(line):
                problems.append(f"holds {what}")
        return problems

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception as exc:  # noqa: BLE001 - a record the formatter cannot write is a finding
            line, problems = repr(record.msg), [f"cannot be formatted ({exc!r})"]
        else:
            problems = self.check_line(line)
        with self._guard:
            self.lines += 1
            if record.name == "batterytrace.request":
                self.request_lines += 1
            if problems and len(self.violations) < MAX_KEPT:
                shown = line if len(line) < 400 else line[:400] + "…"
                for pattern in LEAKS.values():
                    shown = pattern.sub("<SECRET>", shown)
                self.violations.append(f"{record.name}: line {', '.join(problems)}: {shown}")

    def report(self) -> str:
        return "\n".join(self.violations)


AUDIT = AuditHandler()


def install() -> None:
    root = logging.getLogger()
    if AUDIT not in root.handlers:
        root.addHandler(AUDIT)
    # The registry's own records at INFO and above reach the handlers (the root stays at WARNING
    # for other libraries, as in a default configuration).
    logging.getLogger("batterytrace").setLevel(logging.INFO)


class AuditPlugin:
    """Global hook (not bound to tests/ops): after a process's last test, fail on any bad line."""

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        if nextitem is not None:
            return
        assert not AUDIT.violations, (
            f"{len(AUDIT.violations)} log line(s) of this test run broke the logging rules "
            f"(every line one JSON object, no API key, no signing key):\n{AUDIT.report()}"
        )
