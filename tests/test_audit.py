"""The HMAC-chained audit log: what verification detects, checkpoints, legacy logs, corrupt files, and
rows written by library calls (issue 11, items 7 and 10)."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLES
from faceprint.audit import GENESIS, AuditEvent, AuditLog, row_hash
from faceprint.cli import cli


def _log(home: Path, rows: int = 5) -> AuditLog:
    log = AuditLog.for_home(home)
    log.append_many(
        AuditEvent("SearchFacesByImage", "FPAKX", "c1", 99.0, i, f"req-{i}", client="10.0.0.7")
        for i in range(rows)
    )
    return log


def _tamper(home: Path, sql: str) -> None:
    """An attacker with write access to the file goes around the triggers."""
    with sqlite3.connect(home / "server" / "audit.sqlite") as raw:
        raw.executescript(
            f"DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; {sql}"
        )


def _verify(home: Path, against: object = None) -> object:
    log = AuditLog.for_home(home)  # re-creates the dropped triggers
    try:
        return log.verify(against)  # type: ignore[arg-type]
    finally:
        log.close()


def _recompute_unkeyed(home: Path) -> None:
    """Rewrite every row's links with plain sha256, as anyone who can write the file could."""
    with sqlite3.connect(home / "server" / "audit.sqlite") as raw:
        raw.executescript("DROP TRIGGER IF EXISTS audit_no_update;")
        cols = "seq, time, key_id, operation, collection, threshold, matches, request_id, outcome, detail"
        prev = GENESIS
        for row in raw.execute(f"SELECT {cols} FROM audit ORDER BY seq").fetchall():
            values = dict(zip(cols.split(", "), row, strict=True))
            digest = row_hash(prev, values)
            raw.execute("UPDATE audit SET prev_hash=?, hash=? WHERE seq=?", (prev, digest, values["seq"]))
            prev = digest


@pytest.mark.parametrize(
    ("attack", "bad_seq"),
    [
        ("edited", 3),
        ("deleted", 5),  # the row after the gap
        ("reordered", 2),
        ("forged", 6),
        ("recomputed", 1),
    ],
)
def test_verification_detects_each_tampering(tmp_path: Path, attack: str, bad_seq: int) -> None:
    log = _log(tmp_path)
    assert log.verify().ok and log.verify().rows == 5
    key = tmp_path / "server" / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and json.loads(key.read_text())["first_seq"] == 1
    log.close()
    if attack == "edited":
        _tamper(tmp_path, "UPDATE audit SET matches = 0 WHERE seq = 3;")
    elif attack == "deleted":
        _tamper(tmp_path, "DELETE FROM audit WHERE seq = 4;")
    elif attack == "reordered":  # rows 2 and 3 swap places, each keeping its own links
        _tamper(
            tmp_path,
            "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; "
            "UPDATE audit SET seq = 3 WHERE seq = -2;",
        )
    elif attack == "forged":  # a row appended with a plausible link but no key
        head = sqlite3.connect(tmp_path / "server" / "audit.sqlite").execute(
            "SELECT hash FROM audit WHERE seq = 5"
        )
        prev = head.fetchone()[0]
        values = dict.fromkeys(
            ("key_id", "collection", "threshold", "matches", "request_id", "detail"), None
        ) | {"seq": 6, "time": "2026-01-01T00:00:00Z", "operation": "DeleteCollection", "outcome": "OK"}
        _tamper(
            tmp_path,
            f"INSERT INTO audit (seq, time, operation, outcome, prev_hash, hash) VALUES "
            f"(6, '{values['time']}', 'DeleteCollection', 'OK', '{prev}', '{row_hash(prev, values)}');",
        )
    else:
        _recompute_unkeyed(tmp_path)
    check = _verify(tmp_path)
    assert not check.ok and check.bad_seq == bad_seq, check  # type: ignore[attr-defined]


def test_a_checkpoint_detects_a_cut_tail_and_is_kept_as_json(tmp_path: Path) -> None:
    _log(tmp_path).close()
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    out = runner.invoke(cli, ["audit-log", *home, "--checkpoint", "--json"])
    assert out.exit_code == 0, out.output
    checkpoint = json.loads(out.output)
    assert checkpoint["rows"] == 5 and set(checkpoint) == {"rows", "head", "time", "signature"}
    saved = tmp_path / "checkpoint.json"
    saved.write_text(out.output)
    assert runner.invoke(cli, ["audit-log", *home, "--verify", "--against", str(saved)]).exit_code == 0

    _tamper(tmp_path, "DELETE FROM audit WHERE seq >= 4;")
    assert runner.invoke(cli, ["audit-log", *home, "--verify"]).exit_code == 0  # the table alone is fine
    cut = runner.invoke(cli, ["audit-log", *home, "--verify", "--against", str(saved)])
    assert cut.exit_code == 1 and "rows were removed from the tail" in cut.output
    saved.write_text(json.dumps({**checkpoint, "rows": 3}))  # a checkpoint edited to match
    forged = runner.invoke(cli, ["audit-log", *home, "--verify", "--against", str(saved)])
    assert forged.exit_code == 1 and "signature is not valid" in forged.output


def test_a_legacy_log_stays_readable_and_continues_with_the_hmac_chain(tmp_path: Path) -> None:
    path = tmp_path / "server" / "audit.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as old:  # the schema and sha256 links faceprint wrote before the HMAC chain
        old.execute(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, key_id TEXT, operation TEXT "
            "NOT NULL, collection TEXT, threshold REAL, matches INTEGER, request_id TEXT, outcome TEXT NOT "
            "NULL, detail TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
        )
        prev = GENESIS
        for seq in (1, 2):
            values = {"seq": seq, "time": f"2025-01-0{seq}T00:00:00Z", "key_id": None}
            values |= {"operation": "IndexFaces", "collection": "c", "threshold": None, "matches": 1}
            values |= {"request_id": None, "outcome": "OK", "detail": None}
            digest = row_hash(prev, values)
            old.execute(
                "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (*values.values(), prev, digest)
            )
            prev = digest
    log = _log(tmp_path, rows=2)
    check = log.verify()
    assert check.ok and check.rows == 4 and check.legacy_rows == 2
    log.close()
    out = CliRunner().invoke(cli, ["audit-log", "--home", str(tmp_path), "--verify"])
    assert out.exit_code == 0 and "rows 1-2 are a legacy sha256 chain" in out.output
    _recompute_unkeyed(tmp_path)  # downgrading the keyed rows to the legacy chain is found
    assert _verify(tmp_path).bad_seq == 3  # type: ignore[attr-defined]


def test_a_corrupt_audit_file_gets_a_verdict_not_a_traceback(tmp_path: Path) -> None:
    _log(tmp_path).close()
    path = tmp_path / "server" / "audit.sqlite"
    for extra in path.parent.glob("audit.sqlite-*"):
        extra.unlink()
    data = bytearray(path.read_bytes())
    data[100:4000] = b"\xff" * 3900  # the schema page overwritten
    path.write_bytes(bytes(data))
    out = CliRunner().invoke(cli, ["audit-log", "--home", str(tmp_path), "--verify"])
    assert out.exit_code == 1 and not isinstance(out.exception, Exception), out.output
    assert "chain BROKEN" in out.output and "Traceback" not in out.output
    path.write_bytes(b"not a database at all" * 100)
    out = CliRunner().invoke(cli, ["audit-log", "--home", str(tmp_path), "--verify", "--json"])
    assert out.exit_code == 1 and json.loads(out.output)["verification"]["ok"] is False


def test_library_calls_are_audited_as_the_local_user(home: Path) -> None:
    from faceprint.collections.service import Collections
    from faceprint.errors import ResourceNotFoundError
    from faceprint.operations import detect_faces

    with Collections(home) as svc:
        svc.create_collection(CollectionId="lib")
        svc.index_faces(CollectionId="lib", Image=EXAMPLES / "obama.jpg")
        svc.list_faces(CollectionId="lib")
        with pytest.raises(ResourceNotFoundError):
            svc.describe_collection(CollectionId="missing")
    detect_faces(EXAMPLES / "obama.jpg")
    log = AuditLog.for_home(home)
    rows = [(r.operation, r.collection, r.matches, r.outcome, r.client) for r in log.records()]
    assert rows == [
        ("CreateCollection", "lib", None, "OK", "local"),
        ("IndexFaces", "lib", 1, "OK", "local"),
        ("ListFaces", "lib", 1, "OK", "local"),
        ("DescribeCollection", "missing", None, "ResourceNotFoundException", "local"),
        ("DetectFaces", None, 1, "OK", "local"),
    ]
    assert all(r.key_id.startswith("local:") for r in log.records()) and log.verify().ok
    log.close()
