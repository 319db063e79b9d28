"""Building the registry from settings: engine, schema, signing key, log, and the services that
observe accepted events."""

from __future__ import annotations

from batterytrace.services.log import Log, load_signer
from batterytrace.services.monitoring import install as install_monitoring
from batterytrace.services.registry import Registry
from batterytrace.settings import Settings
from batterytrace.store.db import make_engine
from batterytrace.store.migrate import upgrade


def build_registry(settings: Settings, *, migrate: bool = True) -> Registry:
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    signer = load_signer(settings)
    registry = Registry(engine, settings, Log(settings.log_origin, signer))
    install_extensions(registry)
    return registry


def install_extensions(registry: Registry) -> None:
    """Services that observe accepted events (``Registry.observers``), one line each."""
    install_monitoring(registry)
