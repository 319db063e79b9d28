"""The client: sends events to the registry in batches, retries with the same event ids, and
keeps events in an on-disk outbox until the registry has answered for them."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from batterytrace.client.errors import ClientError, ProblemError, RegistryUnavailableError
from batterytrace.client.outbox import Entry, Outbox

log = logging.getLogger("batterytrace.client")

#: Statuses worth trying again with the same request: the registry recorded nothing.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"
EPCIS_CAPTURE = "/api/v1/epcis/capture"
USER_AGENT = "batterytrace-client/1"


@dataclass(frozen=True)
class Outcome:
    """What became of one event: ``accepted`` (with the stored event), ``rejected`` (with the
    registry's problem), or ``pending`` (waiting in the outbox for the registry)."""

    id: str
    status: Literal["accepted", "rejected", "pending"]
    event: dict[str, Any] | None = None
    problem: ProblemError | None = None


@dataclass
class FlushReport:
    """The result of delivering the outbox."""

    accepted: int = 0
    rejected: list[Outcome] = field(default_factory=list)
    pending: int = 0
    #: Why delivery stopped with events still pending (the registry unreachable, or a refusal of
    #: the whole request such as an invalid API key); ``None`` when everything was delivered.
    error: ClientError | None = None

    @property
    def delivered(self) -> int:
        return self.accepted + len(self.rejected)


def with_id(event: dict[str, Any]) -> dict[str, Any]:
    """The event with an ``id`` (a new UUID if it had none); the caller's dict is not changed."""
    if not isinstance(event, dict):
        raise TypeError("an event is a dict, as in the registry's API")
    if isinstance(event.get("id"), str) and event["id"]:
        return event
    return {**event, "id": str(uuid.uuid4())}


class Client:
    """A client of the registry's REST API for an enterprise that reports events.

    ``outbox_dir``: with it, every event is first written to that directory (and flushed to the
    disk), then delivered; what the registry cannot take now waits there for the next ``flush()``,
    across restarts. Without it, an unreachable registry raises :class:`RegistryUnavailableError`.

    ``retries``: how many times a request is sent again after a network error or a "try later"
    answer (429, 5xx), waiting ``backoff`` seconds, doubling up to ``max_backoff``. Retries send
    the same events with the same ids, which the registry records once.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        outbox_dir: str | Path | None = None,
        batch_size: int = 500,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, application/problem+json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.outbox = Outbox(outbox_dir, segment_size=batch_size) if outbox_dir is not None else None

    # --- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- sending with retries ----------------------------------------------------------------------

    def _wait(self, attempt: int, response: httpx.Response | None) -> None:
        delay = min(self.max_backoff, self.backoff * (2**attempt)) * random.uniform(0.5, 1.0)  # noqa: S311
        if response is not None:
            after = response.headers.get("retry-after", "")
            if after.isdigit():
                delay = min(self.max_backoff, float(after))
        self._sleep(delay)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying network errors and "try later" answers; raise
        :class:`ProblemError` for a refusal and :class:`RegistryUnavailableError` when retries run out."""
        last = "no answer"
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise ProblemError.from_response(response)
                last = str(ProblemError.from_response(response))
            if attempt < self.retries:
                log.warning("registry unavailable (%s); retry %d of %d", last, attempt + 1, self.retries)
                self._wait(attempt, response)
        raise RegistryUnavailableError(
            f"the registry did not answer after {self.retries + 1} attempts: {last}"
        )

    # --- events -------------------------------------------------------------------------------------

    def _post_batch(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self._request("POST", BATCH, json={"events": list(events), "atomic": False})
        results = response.json().get("results")
        if not isinstance(results, list) or len(results) != len(events):
            raise ClientError("the registry's batch answer does not list one result per event")
        rid = response.headers.get("x-request-id")
        for result in results:  # a refused event's problem names the request it came back in
            if rid and isinstance(result, dict) and isinstance(result.get("error"), dict):
                result["error"].setdefault("request_id", rid)
        return results

    @staticmethod
    def _outcome(event: dict[str, Any], result: dict[str, Any]) -> Outcome:
        if result.get("status") == "accepted":
            return Outcome(event["id"], "accepted", event=result.get("event"))
        problem = result.get("error") if isinstance(result.get("error"), dict) else {}
        return Outcome(event["id"], "rejected", problem=ProblemError.from_problem(problem or {}))

    @staticmethod
    def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
        for start in range(0, len(items), size):
            yield items[start : start + size]

    def record(self, event: dict[str, Any]) -> Outcome:
        """Record one event (an id is added if it has none) and return its outcome: ``accepted``,
        or ``pending`` in the outbox while the registry is unreachable. A refusal raises
        :class:`ProblemError` with the registry's code."""
        (outcome,) = self.record_many([event])
        if outcome.problem is not None:
            raise outcome.problem
        return outcome

    def record_many(self, events: Iterable[dict[str, Any]]) -> list[Outcome]:
        """Record events in order, ``batch_size`` to a request; one outcome per event, in order.
        Refused events come back as ``rejected`` outcomes carrying the problem; a refusal of the
        whole request (an invalid key, say) raises :class:`ProblemError`."""
        prepared = [with_id(e) for e in events]
        if self.outbox is not None:
            self.outbox.add(prepared)
            wanted = {e["id"] for e in prepared}
            seen: dict[str, Outcome] = {}
            report = self._deliver(wanted, seen)
            if isinstance(report.error, ProblemError):  # e.g. an invalid key: the events wait
                raise report.error
            return [seen.get(e["id"], Outcome(e["id"], "pending")) for e in prepared]
        outcomes: list[Outcome] = []
        for n, chunk in enumerate(self._chunks(prepared, self.batch_size)):
            try:
                results = self._post_batch(chunk)
            except RegistryUnavailableError as exc:
                exc.events = list(prepared[n * self.batch_size :])
                raise
            outcomes.extend(self._outcome(e, r) for e, r in zip(chunk, results, strict=True))
        return outcomes

    def flush(self, on_batch: Callable[[FlushReport], None] | None = None) -> FlushReport:
        """Deliver what waits in the outbox, oldest first. Stops at the first request the registry
        cannot take (network down, invalid key …); the report says why and how many still wait.
        ``on_batch`` is called with the running report after each batch (for progress bars)."""
        if self.outbox is None:
            return FlushReport()
        return self._deliver(None, {}, on_batch)

    def _deliver(
        self,
        wanted: set[str] | None,
        seen: dict[str, Outcome],
        on_batch: Callable[[FlushReport], None] | None = None,
    ) -> FlushReport:
        assert self.outbox is not None
        report = FlushReport()
        with self.outbox.delivering() as mine:
            if not mine:  # another process is delivering this outbox right now
                report.pending = self.outbox.count()
                return report
            entries = self.outbox.pending()
            while True:
                batch: list[Entry] = []
                for entry in entries:
                    batch.append(entry)
                    if len(batch) >= self.batch_size:
                        break
                if not batch:
                    break
                try:
                    results = self._post_batch([e.event for e in batch])
                except ClientError as exc:
                    report.error = exc
                    break
                answered: list[Entry] = []
                refused: list[tuple[Entry, dict[str, Any]]] = []
                retry_later = False
                for entry, result in zip(batch, results, strict=True):
                    outcome = self._outcome(entry.event, result)
                    problem = outcome.problem
                    if problem is not None and problem.status in RETRY_STATUSES:
                        retry_later = True  # not recorded; stays in the outbox
                        continue
                    answered.append(entry)
                    if problem is not None:
                        refused.append((entry, problem.as_problem()))
                        report.rejected.append(outcome)
                    else:
                        report.accepted += 1
                    if wanted is None or entry.id in wanted:
                        seen[entry.id] = outcome
                self.outbox.settle(answered, refused)
                if on_batch is not None:
                    on_batch(report)
                if retry_later:
                    report.error = RegistryUnavailableError(
                        "the registry asked to send some events again later"
                    )
                    break
        report.pending = self.outbox.count()
        return report

    # --- reading ------------------------------------------------------------------------------------

    def get_battery(self, code: str) -> dict[str, Any]:
        """A battery as this enterprise may see it; :class:`ProblemError` ``battery.unknown`` if the
        code is not registered."""
        result: dict[str, Any] = self._request("GET", f"/api/v1/batteries/{quote(code, safe='')}").json()
        return result

    def battery_events(self, code: str) -> list[dict[str, Any]]:
        """The events of a battery, oldest first, as this enterprise may see them."""
        body = self._request("GET", f"/api/v1/batteries/{quote(code, safe='')}/events").json()
        events: list[dict[str, Any]] = body.get("events", [])
        return events

    # --- standards ----------------------------------------------------------------------------------

    def capture_epcis(self, document: dict[str, Any]) -> dict[str, Any]:
        """Upload a GS1 EPCIS 2.0 JSON-LD document (``EPCISDocument``) to the registry's capture
        endpoint; returns the registry's answer. Resending the same document is safe when its
        events carry ``eventID``s, which the registry uses as event ids."""
        response = self._request(
            "POST",
            EPCIS_CAPTURE,
            content=json.dumps(document, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/ld+json"},
        )
        if not response.content:
            return {}
        result: dict[str, Any] = response.json()
        return result
