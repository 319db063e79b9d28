"""The docs keep up with the code: every event type, permission, setting, CLI command and error
code is documented. A new one without documentation fails here."""

from __future__ import annotations

from pathlib import Path

import typer

from batterytrace.cli.main import app
from batterytrace.domain.errors import catalog
from batterytrace.domain.model import EventType
from batterytrace.domain.permissions import Permission
from batterytrace.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def docs_text() -> str:
    parts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(parts)


def cli_commands(typer_app: typer.Typer, prefix: str = "") -> list[str]:
    out = []
    for command in typer_app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        out.append(f"{prefix}{name}")
    for group in typer_app.registered_groups:
        out += cli_commands(group.typer_instance, f"{prefix}{group.name} ")
    return out


def test_every_event_type_is_documented():
    text = docs_text()
    missing = [t.value for t in EventType if f"`{t.value}`" not in text]
    assert not missing, f"undocumented event types: {missing}"


def test_every_permission_is_documented():
    text = docs_text()
    missing = [p.value for p in Permission if f"`{p.value}`" not in text]
    assert not missing, f"undocumented permissions: {missing}"


def test_every_setting_is_documented():
    text = docs_text()
    missing = [f"BATTERYTRACE_{n.upper()}" for n in Settings.model_fields if f"BATTERYTRACE_{n.upper()}" not in text]
    assert not missing, f"undocumented settings: {missing}"


def test_every_cli_command_is_documented():
    text = docs_text()
    commands = cli_commands(app)
    assert "code check" in commands
    missing = [c for c in commands if f"batterytrace {c}" not in text]
    assert not missing, f"undocumented commands: {missing}"


def test_every_error_code_is_documented():
    text = docs_text()
    missing = [c for c in catalog() if f"`{c}`" not in text]
    assert not missing, f"undocumented error codes: {missing}"
