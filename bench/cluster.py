"""Cluster mode: ingest with 1 and 2 `faceprint serve` nodes, and search on 1M faces in Milvus vs FAISS.

Starts a throw-away PostgreSQL 15 (tests/pg_server.py) and a real Milvus standalone server
(tests/milvus_server.py, PyPI milvus 2.3.5), both on this machine.

Ingest: N LFW images through real boto3 (SigV4) IndexFaces, `--clients` threads spread round-robin over
1 node, then over 2 nodes (each its own home, one PostgreSQL database and one Milvus server shared). Reported
per setup: faces/s, and CPU seconds per face of every process involved (nodes, PostgreSQL, Milvus): this
machine has 2 cores, so 2 nodes share them and faces/s cannot double; CPU s/face says what a node costs.

Search: `--n` unit vectors in one Milvus collection with faceprint's index parameters
(milvus_index.INDEX_PARAMS, SEARCH_PARAMS), and the same vectors in faceprint's in-process FaissIndex.
The true mates are real LFW model-2.0 vectors from the accuracy cache (people outside the cohort), the rest
bench/search.py's synthetic distractors fitted on them. Single queries (other real images of the mates'
people), one at a time: Milvus' SHORTLIST re-ranked exactly (as the service re-ranks it) vs FaissIndex
top-10; p50/p99 ms and mate_recall_at_1 (the true mate ranked first), the share of queries whose mate is
in Milvus' shortlist, and the latency under Strong vs Bounded consistency (what Strong costs).
`--ticks` first measures what Strong costs (vs Bounded) at each Milvus `proxy.timeTickInterval`: a Strong
search waits for the server's next time tick. The main run uses `--tick-ms` (20, as docs/deployment.md
advises). `--compare-n` also builds HNSW on that many vectors beside IVF_PQ (the choice of index type).

    flock /tmp/fp-heavy.lock .venv/bin/python bench/cluster.py [--images 120] [--n 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test servers: pg_server, milvus_server

from _lfw_embeddings import model_lfw_embeddings  # noqa: E402
from faceprint.collections.milvus_index import CONSISTENCY, INDEX_PARAMS, SEARCH_PARAMS  # noqa: E402
from faceprint.collections.service import SHORTLIST  # noqa: E402
from faceprint.collections.vector_index import FaissIndex  # noqa: E402
from faceprint.config import data_dir  # noqa: E402
from faceprint.engine import unit_rows  # noqa: E402
from faceprint.server.launcher import start_server  # noqa: E402
from milvus_server import milvus_server  # noqa: E402
from pg_server import postgres_server  # noqa: E402
from search import DistractorModel, distractors, percentiles_ms  # noqa: E402
from server import tree_cpu_seconds  # noqa: E402

K = 10
COLLECTION = "cluster-bench"


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def lfw_images(n: int) -> list[tuple[str, bytes]]:
    root = data_dir() / "lfw" / "lfw-deepfunneled"
    people = sorted(p for p in root.iterdir() if p.is_dir())
    out = []
    for person in people:
        for path in sorted(person.glob("*.jpg"))[:2]:
            out.append((f"{person.name}-{path.stem[-4:]}", path.read_bytes()))
            if len(out) == n:
                return out
    return out


# -- ingest -------------------------------------------------------------------------------------------


def ingest(
    nodes: int, images: list[tuple[str, bytes]], clients: int, env: dict[str, str], pids: list[int]
) -> dict:
    import boto3
    from botocore.config import Config

    from faceprint.server.keys import KeyStore

    base = Path(tempfile.mkdtemp(prefix="faceprint-bench-cluster-"))
    os.environ.update(env)
    key, secret = KeyStore(base / "keys").create(f"bench-{nodes}")
    servers = [start_server(base / f"node{i}", "--workers", "1", env=env, timeout=120) for i in range(nodes)]
    try:
        cfg = Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=120)
        made = [
            boto3.client(
                "rekognition",
                endpoint_url=servers[i % nodes].url,
                region_name="us-east-1",
                aws_access_key_id=key.access_key_id,
                aws_secret_access_key=secret,
                config=cfg,
            )
            for i in range(clients)
        ]
        coll = f"{COLLECTION}-{nodes}"
        made[0].create_collection(CollectionId=coll)
        for i, c in enumerate(made):  # warm up each node (models load lazily)
            c.detect_faces(Image={"Bytes": images[i % len(images)][1]})

        def cpu() -> float:
            return sum(tree_cpu_seconds(s.process.pid) for s in servers) + sum(map(tree_cpu_seconds, pids))

        faces, errors, lock, todo = [0], [0], threading.Lock(), list(enumerate(images))

        def work(c: Any) -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    _, (ext, data) = todo.pop()
                try:
                    resp = c.index_faces(
                        CollectionId=coll, Image={"Bytes": data}, ExternalImageId=ext, MaxFaces=1
                    )
                    with lock:
                        faces[0] += len(resp["FaceRecords"])
                except Exception:
                    with lock:
                        errors[0] += 1

        c0, t0 = cpu(), time.perf_counter()
        threads = [threading.Thread(target=work, args=(c,)) for c in made]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, used = time.perf_counter() - t0, cpu() - c0
        count = made[0].describe_collection(CollectionId=coll)["FaceCount"]
    finally:
        for s in servers:
            s.stop()
    row = {
        "nodes": nodes,
        "images": len(images),
        "faces": faces[0],
        "face_count": count,
        "errors": errors[0],
        "seconds": round(wall, 2),
        "faces_per_s": round(faces[0] / wall, 2),
        "cpu_s_per_face": round(used / max(faces[0], 1), 4),
    }
    log(f"ingest {nodes} node(s): {row}")
    return row


# -- search -------------------------------------------------------------------------------------------


def search_bench(uri: str, n: int, queries_n: int, seed: int, compare_n: int, reuse: str = "") -> dict:
    from pymilvus import DataType, MilvusClient

    emb = model_lfw_embeddings()  # the vectors the service stores (model 2.0, unit length), non-cohort people
    vectors, labels = unit_rows(emb.vectors).astype(np.float32), emb.labels
    model = DistractorModel.fit(vectors, labels)
    first = np.r_[True, labels[1:] != labels[:-1]]
    second = np.r_[False, first[:-1]] & ~first
    mates, mate_labels = vectors[first], labels[first]
    rng = np.random.default_rng(seed)
    qrows = np.sort(rng.choice(np.flatnonzero(second), min(queries_n, int(second.sum())), replace=False))
    queries, truth = vectors[qrows], np.searchsorted(mate_labels, labels[qrows])
    everything = np.empty((n, 128), np.float32)
    everything[: len(mates)] = mates
    pos = len(mates)
    for block in distractors(model, n - len(mates), 1 << 18, seed):
        everything[pos : pos + len(block)] = unit_rows(block)
        pos += len(block)
    ids = np.arange(n, dtype=np.int64)
    client = MilvusClient(uri=uri, timeout=120)
    out: dict[str, Any] = {"n": n, "queries": len(queries), "shortlist": SHORTLIST}

    def build(kind: str, count: int) -> tuple[str, float]:
        name = f"bench_{kind.lower()}_{count}"
        if client.has_collection(name):
            client.drop_collection(name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=128)
        client.create_collection(name, schema=schema, consistency_level=CONSISTENCY)
        t0 = time.perf_counter()
        for s in range(0, count, 10_000):
            rows = everything[s : s + 10_000].tolist()
            client.insert(name, [{"id": s + r, "vector": v} for r, v in enumerate(rows)])
        client.flush(name)
        params = client.prepare_index_params()
        params.add_index(field_name="vector", index_type=kind, metric_type="L2", params=INDEX_PARAMS[kind])
        client.create_index(name, params)
        while True:
            info = client.describe_index(name, client.list_indexes(name)[0])
            if info.get("state") == "Finished" and int(info.get("indexed_rows", 0)) >= count:
                break
            time.sleep(2)
        client.load_collection(name)
        took = time.perf_counter() - t0
        log(f"milvus {kind}: {count:,} vectors inserted, indexed and loaded in {took:.0f} s")
        return name, took

    def milvus_run(name: str, kind: str, count: int, consistency: str) -> dict:
        params = {"metric_type": "L2", "params": dict(SEARCH_PARAMS[kind])}
        if "ef" in params["params"]:
            params["params"]["ef"] = max(params["params"]["ef"], SHORTLIST)
        times, top1, listed = [], [], []
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            hits = client.search(
                name, data=[q.tolist()], limit=SHORTLIST, search_params=params, consistency_level=consistency
            )[0]
            cand = np.asarray([h["id"] for h in hits], dtype=np.int64)
            exact = ((everything[cand] - q) ** 2).sum(axis=1)  # the service re-ranks on stored vectors
            best = cand[np.argmin(exact)] if len(cand) else -1
            if i >= 10:
                times.append(time.perf_counter() - t0)
            top1.append(best == truth[i])
            listed.append(truth[i] in set(cand.tolist()))
        p50, p99 = percentiles_ms(times)
        row = {
            "index": kind,
            "n": count,
            "consistency": consistency,
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "mate_recall_at_1": round(float(np.mean(top1)), 4),
            "mate_in_shortlist": round(float(np.mean(listed)), 4),
        }
        log(f"milvus search: {row}")
        return row

    if reuse:  # a collection of these same vectors that an earlier run of this bench built on this server
        name = reuse
        client.load_collection(name)
    else:
        name, took = build("IVF_PQ", n)
        out["milvus_build_s"] = round(took, 1)
    out["milvus"] = milvus_run(name, "IVF_PQ", n, CONSISTENCY)
    out["milvus_bounded"] = milvus_run(name, "IVF_PQ", n, "Bounded")
    out["strong_cost_p50_ms"] = round(out["milvus"]["p50_ms"] - out["milvus_bounded"]["p50_ms"], 2)
    client.drop_collection(name)

    t0 = time.perf_counter()
    index = FaissIndex(128)
    index.add(ids, everything)
    out["faiss_build_s"] = round(time.perf_counter() - t0, 1)
    times, top1 = [], []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        found = index.search(q[None], K)[1][0]
        if i >= 10:
            times.append(time.perf_counter() - t0)
        top1.append(found[0] == truth[i])
    p50, p99 = percentiles_ms(times)
    out["faiss"] = {
        "index": index.kind,
        "n": n,
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "mate_recall_at_1": round(float(np.mean(top1)), 4),
    }
    log(f"faiss search: {out['faiss']}")
    del index
    out["p50_ratio_milvus_to_faiss"] = round(out["milvus"]["p50_ms"] / max(out["faiss"]["p50_ms"], 1e-6), 2)
    if compare_n:
        compared = []
        for kind in ("IVF_PQ", "HNSW"):
            name, took = build(kind, compare_n)
            row = milvus_run(name, kind, compare_n, CONSISTENCY)
            row["build_s"] = round(took, 1)
            compared.append(row)
            client.drop_collection(name)
        out["compare"] = compared
    client.close()
    return out


def tick_costs(ticks: list[int], n: int = 2000, queries: int = 100) -> list[dict]:
    """What Strong consistency costs per Milvus time-tick setting: single top-10 searches on a small FLAT
    collection at Strong and at Bounded, one server per setting (started one after the other)."""
    from pymilvus import DataType, MilvusClient

    rng = np.random.default_rng(1)
    x = unit_rows(rng.standard_normal((n, 128)).astype(np.float32))
    rows = []
    for tick in ticks:
        with milvus_server(extra=(f"proxy.timeTickInterval={tick}",)) as mv:
            client = MilvusClient(uri=mv.uri, timeout=60)
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=128)
            params = client.prepare_index_params()
            params.add_index(field_name="vector", index_type="FLAT", metric_type="L2", params={})
            client.create_collection(
                "tick", schema=schema, index_params=params, consistency_level=CONSISTENCY
            )
            client.insert("tick", [{"id": i, "vector": v} for i, v in enumerate(x.tolist())])
            row: dict[str, Any] = {"time_tick_ms": tick}
            for level in ("Strong", "Bounded"):
                times = []
                for q in x[: queries + 10]:
                    t0 = time.perf_counter()
                    client.search("tick", data=[q.tolist()], limit=K, consistency_level=level)
                    times.append(time.perf_counter() - t0)
                p50, p99 = percentiles_ms(times[10:])
                row[f"{level.lower()}_p50_ms"], row[f"{level.lower()}_p99_ms"] = round(p50, 2), round(p99, 2)
            row["strong_cost_p50_ms"] = round(row["strong_p50_ms"] - row["bounded_p50_ms"], 2)
            log(f"time tick {tick} ms: {row}")
            rows.append(row)
            client.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=120, help="LFW images indexed per ingest setup")
    ap.add_argument("--clients", type=int, default=4, help="boto3 client threads during ingest")
    ap.add_argument("--n", type=int, default=1_000_000, help="faces in the search collection")
    ap.add_argument("--queries", type=int, default=500, help="real query images")
    ap.add_argument("--compare-n", type=int, default=0, help="also build IVF_PQ and HNSW on this many")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument(
        "--milvus-uri", default="", help="search only, on this running server's --reuse collection"
    )
    ap.add_argument("--reuse", default="", help="an IVF_PQ collection an earlier run built (bench_ivf_pq_N)")
    ap.add_argument(
        "--ticks", default="200,20", help="time-tick settings whose Strong cost is measured first"
    )
    ap.add_argument(
        "--tick-ms",
        type=int,
        default=20,
        help="Milvus proxy.timeTickInterval (docs/deployment.md; 200 by default)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    result: dict[str, Any] = {"benchmark": "cluster", "load_before": os.getloadavg()[0]}
    if args.ticks and not args.milvus_uri:
        result["strong_cost_by_time_tick"] = tick_costs([int(t) for t in args.ticks.split(",")])
    if args.milvus_uri:
        result["search"] = search_bench(
            args.milvus_uri, args.n, args.queries, args.seed, args.compare_n, args.reuse
        )
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return
    result["milvus_time_tick_ms"] = args.tick_ms
    tick = (f"proxy.timeTickInterval={args.tick_ms}",)
    with postgres_server() as pg, milvus_server(extra=tick) as mv:
        milvus_pid = mv.proc.pid if mv.proc else 0
        pg_pid = int((pg.data / "postmaster.pid").read_text().split()[0])
        if not args.skip_ingest:
            images = lfw_images(args.images)
            rows = []
            for nodes in (1, 2):
                url = pg.create_database(f"bench{nodes}")
                shared = Path(tempfile.mkdtemp(prefix="faceprint-bench-shared-"))
                env = {
                    "FACEPRINT_DATABASE_URL": url,
                    "FACEPRINT_MASTER_KEY_FILE": str(shared / "master.key"),
                    "FACEPRINT_AUDIT_KEY": str(shared / "audit.key"),
                    "FACEPRINT_VECTOR_BACKEND": "milvus",
                    "FACEPRINT_MILVUS_URI": mv.uri,
                    "FACEPRINT_MILVUS_PREFIX": f"bench{nodes}",
                    "FACEPRINT_ONNX_THREADS": "1",
                }
                upgrade = [sys.executable, "-m", "faceprint", "db", "upgrade"]
                subprocess.run(upgrade, env={**os.environ, **env}, capture_output=True, check=True)
                rows.append(ingest(nodes, images, args.clients, env, [milvus_pid, pg_pid]))
            result["ingest"] = rows
            result["ingest_ratio_2_to_1_nodes"] = round(rows[1]["faces_per_s"] / rows[0]["faces_per_s"], 2)
        result["search"] = search_bench(mv.uri, args.n, args.queries, args.seed, args.compare_n)
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
