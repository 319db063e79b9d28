"""The single-event API's ceiling: a bare endpoint of the same framework (FastAPI on uvicorn) that
takes the same request body (the registry's ``EventBody`` model) and answers 201 with it, doing
nothing else: no authentication, middleware, database or log.

    python -m bench.bare --port 8765
    python -m uvicorn bench.bare:app --port 8765 --workers 3 --log-level warning --no-access-log
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
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
