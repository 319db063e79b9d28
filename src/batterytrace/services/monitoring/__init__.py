"""Regulator monitoring: alerts kept current as events arrive, with working-day deadlines.

``install(registry)`` hooks monitoring into the registry's event and refusal observers;
``monitoring_for(registry)`` gives the service (list, acknowledge, resolve, rescan). The rules are
in :mod:`.rules`, the per-batch work in :mod:`.observer` and :mod:`.refusals`.
"""

from __future__ import annotations

from batterytrace.services.monitoring.rules import RULES, Rule
from batterytrace.services.monitoring.service import Monitoring, install, monitoring_for

__all__ = ["RULES", "Monitoring", "Rule", "install", "monitoring_for"]
