"""One settings object, read from ``BATTERYTRACE_*`` environment variables when the
application starts (never at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATTERYTRACE_", extra="ignore")

    #: SQLAlchemy URL. Default: a SQLite file in the working directory.
    database_url: str = "sqlite:///batterytrace.sqlite"
    #: Path of the log's Ed25519 signing key (note private-key format).
    signing_key: Path | None = None
    #: ``development`` creates a missing signing key; ``production`` refuses to start without one.
    env: Literal["development", "production", "test"] = "development"
    #: Name of the log in its checkpoints (the origin line) and of its signing key.
    log_origin: str = "batterytrace.example/log"
    #: Public base URL, used in passport links and QR codes.
    base_url: str = "http://127.0.0.1:8000"
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    #: Most events in one batch request.
    max_batch: int = Field(default=10_000, ge=1)
    #: Largest page in list endpoints.
    max_page_size: int = Field(default=1000, ge=1)
    #: Requests per minute per API key (0: no limit).
    rate_limit_per_minute: int = Field(default=0, ge=0)
    #: Requests of one API key processed at once (0: no limit); one more is answered 429.
    max_requests_in_flight_per_key: int = Field(default=16, ge=0)
    #: Key that signs the web pages' session and form (CSRF) cookies, 32 bytes or more. In
    #: development one is made per process when it is not set; production refuses to start without.
    session_secret: SecretStr | None = Field(default=None, min_length=32)
    #: Hours a web session lasts after logging in.
    session_hours: int = Field(default=8, ge=1, le=24 * 30)
    #: Least severe level written to the JSON log (DEBUG, INFO, WARNING, ERROR).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Seconds a readiness check waits for the database before reporting it unreachable.
    readiness_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    #: Policy profile whose deadlines and thresholds raise alerts (see ``data/policy.toml``).
    monitoring_profile: str = "CN-2026"
    #: Listing alerts first re-scans running deadlines when the last scan is older than this.
    alert_rescan_seconds: int = Field(default=300, ge=0)

    def signing_key_path(self) -> Path:
        return self.signing_key if self.signing_key is not None else Path("batterytrace-signing.key")
