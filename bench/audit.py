"""Cost of auditing every request: one audited ListCollections vs the same call with auditing bypassed.

The measured path is the real one: `Collections.list_collections` through `@audited` (one HMAC-chained row
per call, WAL, synchronous=NORMAL). The baseline, measured in the same run on the same home folder, is the
undecorated method (`__wrapped__`). Also reported: rows per second of `AuditLog.append` (one transaction
each) and of `append_many` (batches of 100, one transaction per batch).

    python bench/audit.py [--calls N] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from faceprint.audit import AuditEvent, AuditLog
from faceprint.collections.service import Collections


def _per_call(func, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with Collections(home) as svc:
            for i in range(10):
                svc.create_collection(CollectionId=f"c{i}")
            bare = Collections.list_collections.__wrapped__  # type: ignore[attr-defined]
            baseline = _per_call(lambda: bare(svc), args.calls)
            audited = _per_call(lambda: svc.list_collections(), args.calls)
        log = AuditLog(home / "bench.sqlite")
        event = AuditEvent("SearchFacesByImage", "FPAKBENCH", "c1", 96.5, 3, "req", client="127.0.0.1")
        single = _per_call(lambda: log.append(event), args.calls)
        batch = _per_call(lambda: log.append_many([event] * 100), max(1, args.calls // 100)) / 100
        assert log.verify().ok
        log.close()
    result = {
        "bench": "audit",
        "calls": args.calls,
        "list_collections_ms": round(baseline * 1e3, 4),
        "audited_list_collections_ms": round(audited * 1e3, 4),
        "overhead_ms": round((audited - baseline) * 1e3, 4),
        "ratio_to_baseline": round(audited / baseline, 2),
        "append_rows_per_s": round(1 / single),
        "append_many_rows_per_s": round(1 / batch),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()
