"""ASGI entry point for process managers (``uvicorn batterytrace.api.asgi:app``): settings come
from the environment when the worker starts."""

from __future__ import annotations

from batterytrace.api.app import create_app
from batterytrace.logging_json import configure_logging
from batterytrace.services.factory import build_registry
from batterytrace.settings import Settings

_settings = Settings()
configure_logging(_settings.log_level)
app = create_app(build_registry(_settings))
