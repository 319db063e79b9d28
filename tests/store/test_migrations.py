"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL,
and upgrading twice is harmless."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from batterytrace.store.db import make_engine
from batterytrace.store.migrate import current_revision, head_revision, is_current, upgrade
from batterytrace.store.tables import metadata


def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)
        assert is_current(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        engine.dispose()
