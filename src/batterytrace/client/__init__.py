"""A small Python client for enterprises that report to the registry.

    from batterytrace.client import Client, ProblemError

    with Client("https://registry.example", api_key, outbox_dir="/var/lib/acme/outbox") as client:
        outcomes = client.record_many(events)      # batched; retried with the same event ids
        report = client.flush()                     # delivers whatever is still waiting
        battery = client.get_battery("0ABPE01A1B2C3DGBL0000001")

Events are dicts shaped as in the registry's API (``id``, ``type``, ``battery`` or ``vin``,
``time``, ``region``, ``data``). This package depends on httpx only, not on the registry's server.
"""

from __future__ import annotations

from batterytrace.client.api import Client, FlushReport, Outcome, with_id
from batterytrace.client.errors import ClientError, ProblemError, RegistryUnavailableError
from batterytrace.client.outbox import Outbox, OutboxError

__all__ = [
    "Client",
    "ClientError",
    "FlushReport",
    "Outbox",
    "OutboxError",
    "Outcome",
    "ProblemError",
    "RegistryUnavailableError",
    "with_id",
]
