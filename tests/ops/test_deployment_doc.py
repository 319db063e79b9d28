"""The deployment guide keeps up with the code: every command and option it runs exists, every
setting it names is real, its metrics table is what /metrics exposes, and its request-log example
has the fields the registry writes."""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import click
import typer
from prometheus_client.parser import text_string_to_metric_families

from batterytrace.cli.main import app
from batterytrace.services import metrics
from batterytrace.settings import Settings
from tests import factories as f

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
#: Variables read by ``batterytrace push`` (the client side), not by the registry's settings.
CLIENT_VARIABLES = {"BATTERYTRACE_URL", "BATTERYTRACE_API_KEY", "BATTERYTRACE_OUTBOX"}
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "2>&1", "<", "do", "done"}


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", guide(), re.S)


def command_lines() -> list[list[str]]:
    """Every ``batterytrace`` invocation in the guide's shell blocks, as its argument list."""
    found = []
    for block in code_blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:
                continue
            for i, token in enumerate(tokens):
                name = token.removeprefix("ExecStart=")
                if i and tokens[i - 1].startswith("-"):
                    continue  # an option's value (a user, a role, a database name)
                if name in ("batterytrace", "batterytrace-admin") or name.endswith("/bin/batterytrace"):
                    args = tokens[i + 1 :]
                    if name == "batterytrace-admin" and args[:1] == ["--release"]:
                        args = args[2:]
                    cut = next((k for k, a in enumerate(args) if a in SHELL_STOP), len(args))
                    found.append(args[:cut])
    return found


def test_every_command_and_option_in_the_guide_exists():
    root = typer.main.get_command(app)
    lines = command_lines()
    assert len(lines) >= 15
    used = set()
    for args in lines:
        command = root
        rest = list(args)
        while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
            sub = command.get_command(click.Context(command), rest[0])
            if sub is None:
                break
            command, rest = sub, rest[1:]
        if rest and rest[0] == '"$@"':
            continue  # the wrapper script passes its arguments on
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
        for token in rest:
            if token.startswith("--"):
                assert token.split("=", 1)[0] in options, f"{args}: {command.name} has no option {token}"
        used.add(command.name)
    assert {
        "serve",
        "bootstrap",
        "upgrade",
        "current",
        "keygen",
        "rotate-key",
        "verify",
        "push",
        "restore",
    } <= used


def test_the_workers_never_load_demo_data():
    (unit,) = [line for line in guide().splitlines() if line.startswith("ExecStart=") and " serve " in line]
    assert "serve --no-demo" in unit


def test_every_setting_named_exists_and_the_ops_settings_are_documented():
    named = set(re.findall(r"BATTERYTRACE_[A-Z_]+[A-Z]", guide()))
    real = {f"BATTERYTRACE_{n.upper()}" for n in Settings.model_fields}
    assert named - real - CLIENT_VARIABLES == set()
    assert {"BATTERYTRACE_LOG_LEVEL", "BATTERYTRACE_READINESS_TIMEOUT_SECONDS"} <= named


def test_public_site_refuses_metrics_and_readiness():
    (site,) = [b for b in code_blocks("sh") if "upstream batterytrace" in b]
    assert "location = /metrics { deny all; }" in site
    assert "location = /readyz  { deny all; }" in site
    assert "proxy_set_header X-Request-ID $request_id;" in site


def test_metrics_table_is_what_the_registry_exposes(client, cast):
    # make every labelled series appear at least once
    code = f.code()
    event = f.event("manufactured", code, 0, f.MANUFACTURED)
    cast.maker.event(event)
    cast.maker.event(event)
    cast.maker.event(f.event("manufactured", code, 1, f.MANUFACTURED))
    with metrics.track_import("jsonl", 1) as progress:
        progress.advance(accepted=1)
    exposed = {
        fam.name
        for fam in text_string_to_metric_families(client.get("/metrics").text)
        if fam.name.startswith("batterytrace_")
    }
    documented = set()
    for row in guide().split("| metric | type | labels | meaning |", 1)[1].split("\n\n", 1)[0].splitlines():
        documented |= {
            re.sub(r"_total$", "", name)
            for name in re.findall(
                r"`(batterytrace_[a-z_]+)`", row.split("|")[1] if row.count("|") > 2 else ""
            )
        }
    assert documented == exposed


def test_request_log_example_has_the_fields_written(client):
    (example,) = code_blocks("json")
    documented = set(json.loads(example))
    lines: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    handler = Keep()
    logging.getLogger("batterytrace.request").addHandler(handler)
    try:
        client.get("/healthz")
    finally:
        logging.getLogger("batterytrace.request").removeHandler(handler)
    from batterytrace.logging_json import JsonFormatter

    written = set(json.loads(JsonFormatter().format(lines[0])))
    assert documented == written
