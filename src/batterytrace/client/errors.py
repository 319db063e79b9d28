"""Exceptions of the client: the registry's problem documents, and an unreachable registry."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Base class of the client's errors."""


class ProblemError(ClientError):
    """The registry refused the request or an event with an RFC 9457 problem document.

    ``code`` is the registry's stable error code (``lifecycle.not_holder``, ``auth.invalid_key`` …)
    to branch on; ``detail`` says what to fix; ``field`` names the offending field when known.
    """

    def __init__(
        self,
        code: str,
        status: int,
        detail: str,
        field: str | None = None,
        *,
        title: str | None = None,
        request_id: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code} ({status}): {detail}")
        self.code = code
        self.status = status
        self.detail = detail
        self.field = field
        self.title = title
        self.request_id = request_id
        self.body: dict[str, Any] = body if body is not None else {}

    @classmethod
    def from_problem(cls, problem: dict[str, Any], request_id: str | None = None) -> ProblemError:
        status = problem.get("status")
        return cls(
            str(problem.get("code") or "unknown"),
            status if isinstance(status, int) else 0,
            str(problem.get("detail") or problem.get("title") or "no detail given"),
            problem.get("field") if isinstance(problem.get("field"), str) else None,
            title=problem.get("title") if isinstance(problem.get("title"), str) else None,
            request_id=problem.get("request_id") or request_id,
            body=problem,
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> ProblemError:
        rid = response.headers.get("x-request-id")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body:
            return cls.from_problem(body, rid)
        text = (
            response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
        )
        return cls(f"http.{response.status_code}", response.status_code, text, request_id=rid)

    def as_problem(self) -> dict[str, Any]:
        """The problem document (as the registry sent it, when it sent one)."""
        if self.body:
            return dict(self.body)
        out: dict[str, Any] = {"code": self.code, "status": self.status, "detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        return out


class RegistryUnavailableError(ClientError):
    """The registry could not be reached, or kept answering "try later", after every retry.

    Nothing is lost: with an outbox the events wait there for the next ``flush()``; without one,
    ``events`` holds the events not known to be recorded, with their ids, to send again as they are.
    """

    def __init__(self, message: str, *, events: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.events: list[dict[str, Any]] = events or []
