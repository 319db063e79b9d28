"""The single-event API's ceiling: a bare endpoint of the same framework (FastAPI on uvicorn) that
takes the same request body (the registry's ``EventBody`` model) and answers 201 with it, doing
nothing else: no authentication, middleware, database or log.

    python -m bench.bare --port 8765
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI

from batterytrace.api.app import EventBody

app = FastAPI(title="bare endpoint")


@app.post("/api/v1/events", status_code=201)
def record_event(body: EventBody) -> Any:
    return body.model_dump(exclude_unset=True)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    target = "bench.bare:app" if args.workers > 1 else app
    uvicorn.run(
        target, host=args.host, port=args.port, workers=args.workers, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
