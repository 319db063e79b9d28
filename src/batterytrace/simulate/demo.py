"""The demonstration registry that ``batterytrace serve`` loads on an empty database: a small data
set from the national simulator (:mod:`batterytrace.simulate.national`), with the named
enterprises of every role, history from 2018 to today, and one battery for every stage of life."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC

from batterytrace.services.registry import Registry
from batterytrace.simulate.national import SimConfig, load

#: Vehicle packs in the demo (their modules and second-life products come on top).
DEMO_PACKS = 150
DEMO_SEED = 2026


@dataclass
class DemoResult:
    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (id, roles, key)
    batteries: int = 0
    events: int = 0
    rejected: int = 0
    samples: dict[str, str] = field(default_factory=dict)  # story -> battery code


def load_demo(
    registry: Registry,
    *,
    batteries: int = DEMO_PACKS,
    seed: int = DEMO_SEED,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Fill an empty registry with the demo data set (up to the registry's clock) and return the
    demo API keys and sample batteries. ``progress`` is called with the events recorded so far."""
    end = registry.clock().astimezone(UTC).replace(microsecond=0)
    config = SimConfig(batteries=batteries, seed=seed, end=end)

    def report(phase: str, done: int, total: int) -> None:
        if progress is not None and phase == "recording":
            progress(done)

    result = load(registry, config, progress=report)
    return DemoResult(
        keys=result.keys,
        batteries=result.batteries,
        events=result.events,
        rejected=result.rejected,
        samples=result.samples,
    )
