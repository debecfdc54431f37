"""`faceprint db upgrade`: apply the versioned schema migrations of the configured database."""

from __future__ import annotations

from pathlib import Path

import click

from faceprint.cli.common import print_json


def _upgrade_sqlite(home: Path) -> dict:
    """Open every store of a home folder: SQLite files upgrade themselves when opened."""
    from faceprint.collections.store import MIGRATIONS as COLLECTIONS
    from faceprint.collections.store import SqliteStore
    from faceprint.migrations import latest
    from faceprint.video.jobs import MIGRATIONS as VIDEO
    from faceprint.video.jobs import JobStore

    out = {}
    store = SqliteStore(home / "collections")
    out["collections"] = {"Version": store.db.schema_version, "Latest": latest(COLLECTIONS)}
    store.close()
    jobs = JobStore(home, database_url="")
    out["video"] = {"Version": jobs.db.schema_version, "Latest": latest(VIDEO)}
    jobs.close()
    return out


def register(group: click.Group) -> None:
    @group.group("db")
    def db() -> None:
        """The database: PostgreSQL with FACEPRINT_DATABASE_URL, else the home folder's SQLite files."""

    @db.command("upgrade")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def upgrade(as_json: bool) -> None:
        """Apply pending schema migrations (idempotent: a database already current is left as is)."""
        from faceprint.config import database_url, home_dir
        from faceprint.migrations import SchemaVersionError
        from faceprint.postgres import StorageUnavailableError

        url = database_url()
        try:
            if url:
                from faceprint.postgres import upgrade_all

                schemas = upgrade_all(url)
            else:
                schemas = _upgrade_sqlite(home_dir())
        except (SchemaVersionError, StorageUnavailableError) as exc:
            raise click.ClickException(str(exc)) from None
        result = {"Database": "postgresql" if url else "sqlite", "Schemas": schemas}
        if as_json:
            print_json(result)
            return
        for name, info in schemas.items():
            applied = info.get("Applied")
            done = f", applied {', '.join(str(m['Version']) for m in applied)}" if applied else ""
            click.echo(f"{name}: schema version {info['Version']} of {info['Latest']}{done}")
