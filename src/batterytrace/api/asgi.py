"""ASGI entry point for process managers (``uvicorn batterytrace.api.asgi:app``): settings come
from the environment when the worker starts."""

from __future__ import annotations

from batterytrace.api.app import create_app
from batterytrace.services.factory import build_registry
from batterytrace.settings import Settings

app = create_app(build_registry(Settings()))
