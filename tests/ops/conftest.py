"""Fixtures for the operations tests, and the log audit that covers the whole test run."""

from __future__ import annotations

import pytest

from tests.ops import log_audit


def pytest_configure(config: pytest.Config) -> None:
    # Runs while the tests are collected, before any test runs: every record from then on is audited.
    log_audit.install()
    if not config.pluginmanager.has_plugin("batterytrace-log-audit"):
        config.pluginmanager.register(log_audit.AuditPlugin(), "batterytrace-log-audit")
