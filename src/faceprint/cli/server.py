"""`faceprint serve`, `faceprint keys`, `faceprint audit-log` and `faceprint demo`."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from faceprint.config import data_dir, home_dir

WORKER_HEALTHCHECK_SECONDS = 60

DEMO_COLLECTION = "demo"
DEMO_BUCKET = "faceprint-data"
_DEMO_TRAIN = Path("known_identities/face_recognition_examples/examples/knn_examples/train")
_DEMO_PROBE = "known_identities/face_recognition_examples/examples/knn_examples/test/obama1.jpg"


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    group.add_command(serve)
    group.add_command(keys)
    group.add_command(audit_log)
    group.add_command(demo)


def _set_home(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:  # the server's workers read it from the environment
        os.environ["FACEPRINT_HOME"] = str(value.expanduser().resolve())


home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    expose_value=False,
    is_eager=True,
    callback=_set_home,
    help="faceprint home folder (default $FACEPRINT_HOME or ~/.faceprint).",
)


# --- serve -----------------------------------------------------------------------------------------------
def _serve_options(func: Any) -> Any:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on."),
        click.option("--port", default=8080, show_default=True, type=int),
        click.option(
            "--workers",
            default=1,
            show_default=True,
            type=click.IntRange(1, 64),
            help="Server processes sharing the home folder.",
        ),
        click.option(
            "--threads",
            type=click.IntRange(1, 256),
            default=None,
            help="Worker threads per process for the face work (default: CPU count, at least 2).",
        ),
        click.option(
            "--bucket",
            "buckets",
            multiple=True,
            metavar="NAME=PATH",
            help="Serve a local folder as S3 bucket NAME (repeatable).",
        ),
        click.option(
            "--stream",
            "streams",
            multiple=True,
            metavar="NAME=SOURCE",
            help="Serve a live source (rtsp:// or http(s):// URL, /dev/video*, or a file played in real "
            "time) as Kinesis video stream NAME for stream processors (repeatable).",
        ),
        click.option(
            "--log-level",
            default="warning",
            show_default=True,
            type=click.Choice(["critical", "error", "warning", "info", "debug"]),
        ),
        click.option("--access-log/--no-access-log", default=False, show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_server(
    host: str,
    port: int,
    workers: int,
    threads: int | None,
    buckets: tuple[str, ...],
    log_level: str,
    access_log: bool,
    auth: bool = True,
    streams: tuple[str, ...] = (),
) -> None:
    """Start uvicorn; settings travel to every worker through the environment."""
    import uvicorn

    from faceprint.server.s3 import parse_bucket_map

    check_vector_backend()
    os.environ["FACEPRINT_AUTH"] = "1" if auth else "0"
    os.environ.setdefault("FACEPRINT_HOME", str(home_dir()))
    problem = home_problem(Path(os.environ["FACEPRINT_HOME"]))
    if problem:
        click.echo(f"faceprint serve: cannot start: {problem}", err=True)
        sys.exit(1)
    if threads:
        os.environ["FACEPRINT_SERVER_THREADS"] = str(threads)
    if workers > 1:  # each worker process gets its share of the CPUs for ONNX Runtime (unless set)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ.setdefault("FACEPRINT_ONNX_THREADS", str(max(1, cpus // workers)))
    if buckets:
        try:
            parse_bucket_map(",".join(buckets))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--bucket") from None
        previous = os.environ.get("FACEPRINT_BUCKETS", "")
        os.environ["FACEPRINT_BUCKETS"] = ",".join([previous, *buckets]).strip(",")
    from faceprint.streams.sources import STREAMS_ENV, parse_streams

    try:
        parse_streams(",".join(streams))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stream") from None
    try:
        parse_streams(os.environ.get(STREAMS_ENV, ""))
    except ValueError as exc:
        raise click.UsageError(f"{STREAMS_ENV}: {exc}") from None
    if streams:
        previous = os.environ.get(STREAMS_ENV, "")
        os.environ[STREAMS_ENV] = ",".join([previous, *streams]).strip(",")
    click.echo(
        f"faceprint: Rekognition API on http://{host}:{port}/ (REST docs at /docs), "
        f"auth {'on' if auth else 'OFF'}, home {os.environ['FACEPRINT_HOME']}, {workers} worker(s)",
        err=True,
    )
    uvicorn.run(
        "faceprint.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        # A worker busy in native face code can miss uvicorn's 5 s ping and be killed mid-request.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        http="faceprint.server.protocol:DeadlineH11Protocol",  # h11 with a deadline on request headers
    )


def home_problem(home: Path) -> str | None:
    """Why the server could not run on `home` (a read-only folder, an unusable audit log), or None."""
    from faceprint.audit import AuditLog, AuditLogError, key_path
    from faceprint.files import unwritable

    folders = [home, home / "server", home / "collections", home / "collections" / "index", home / "video"]
    problem = unwritable([*folders, key_path(home).parent])
    if problem:
        return problem
    try:
        AuditLog.for_home(home).close()
    except AuditLogError as exc:
        return str(exc)
    return None


def check_vector_backend() -> None:
    """Refuse to start, in one line, when the configured vector backend cannot load (e.g. Milvus without
    the 'cluster' extra raises MissingExtraError) instead of failing on the first request."""
    from faceprint.config import vector_backend as backend

    try:
        name = backend()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if name == "milvus":
        import faceprint.collections.milvus_index  # noqa: F401


@click.command()
@home_option
@_serve_options
@click.option(
    "--auth/--no-auth",
    default=True,
    show_default=True,
    help="Verify SigV4 / Basic credentials (turn off only on a trusted machine).",
)
def serve(auth: bool, **options: Any) -> None:
    """Serve the Rekognition-compatible API (AWS JSON 1.1, SigV4) and the REST API."""
    run_server(auth=auth, **options)


# --- keys ------------------------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Create, list and revoke access keys (AccessKeyId + SecretAccessKey)."""


def _record_key_change(operation: str, key_id: str, detail: dict[str, Any]) -> None:
    from faceprint import audit

    caller = audit.current_caller()
    event = audit.AuditEvent(
        operation=operation,
        key_id=key_id,
        client=caller.client,
        detail={"via": "cli", "by": caller.principal, **detail},
    )
    audit.log_for(home_dir()).append(event)


@keys.command("create")
@home_option
@click.option("--name", default="", help="A label for the key.")
@click.option(
    "--allow",
    default=None,
    metavar="ACTIONS",
    help="Comma-separated operations the key may call, globs allowed (e.g. 'Search*,DetectFaces'). "
    "Default: all.",
)
@click.option(
    "--collections",
    default=None,
    metavar="PATTERN",
    help="Comma-separated collection id globs the key may use (e.g. 'prod-*'). Default: all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shaped like `aws iam create-access-key`).")
def keys_create(name: str, allow: str | None, collections: str | None, as_json: bool) -> None:
    """Create a key. The secret is printed now and never again."""
    from faceprint.errors import FaceprintError
    from faceprint.server.handlers import REGISTRY
    from faceprint.server.keys import KeyStore, parse_patterns
    from faceprint.server.kinesis import REQUESTS as KINESIS_OPERATIONS

    try:
        allow_patterns = parse_patterns(allow, known=[*REGISTRY, *KINESIS_OPERATIONS])
        collection_patterns = parse_patterns(collections)
    except FaceprintError as exc:
        raise click.UsageError(exc.message) from None
    key, secret = KeyStore(home_dir()).create(name, allow_patterns, collection_patterns)
    _record_key_change(
        "CreateAccessKey",
        key.access_key_id,
        {
            "name": key.name,
            "allow": list(allow_patterns),
            "collections": list(collection_patterns),
        },
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "AccessKey": {
                        "UserName": key.name,
                        "AccessKeyId": key.access_key_id,
                        "Status": key.status,
                        "SecretAccessKey": secret,
                        "CreateDate": _iso(key.created),
                        "Allow": list(allow_patterns),
                        "Collections": list(collection_patterns),
                    }
                },
                indent=2,
            )
        )
        return
    click.echo(f"AccessKeyId:     {key.access_key_id}")
    click.echo(f"SecretAccessKey: {secret}")
    click.echo(
        f"Name: {key.name}   Allow: {','.join(allow_patterns)}   Collections: {','.join(collection_patterns)}"
    )
    click.echo("The secret is shown only this once; store it now.", err=True)


@keys.command("list")
@home_option
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List keys (never their secrets)."""
    from faceprint.server.keys import KeyStore

    stored = KeyStore(home_dir()).list()
    if as_json:
        click.echo(json.dumps({"AccessKeys": [k.public() for k in stored]}, indent=2))
        return
    from rich.table import Table

    table = Table("AccessKeyId", "Name", "Status", "Created", "Allow", "Collections")
    for k in stored:
        table.add_row(
            k.access_key_id,
            k.name,
            k.status,
            _iso(k.created),
            ",".join(k.policy.allow),
            ",".join(k.policy.collections),
        )
    _console().print(table)


@keys.command("revoke")
@home_option
@click.argument("access_key_id")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked key as JSON.")
def keys_revoke(access_key_id: str, as_json: bool) -> None:
    """Revoke a key; every server process stops accepting it at once."""
    from faceprint.errors import FaceprintError
    from faceprint.server.keys import KeyStore

    try:
        key = KeyStore(home_dir()).revoke(access_key_id)
    except FaceprintError as exc:
        raise click.ClickException(exc.message) from None
    _record_key_change("RevokeAccessKey", key.access_key_id, {"name": key.name})
    if as_json:
        click.echo(json.dumps({"AccessKeyId": key.access_key_id, "UserName": key.name, "Status": "Revoked"}))
        return
    click.echo(f"revoked {key.access_key_id} ({key.name})")


# --- audit-log -------------------------------------------------------------------------------------------
def parse_since(text: str, now: datetime | None = None) -> str:
    """'30m', '2h', '7d' ago, or an ISO date/time, as the audit table's UTC ISO format."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        when = now - timedelta(**{unit: int(match.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                "use e.g. 30m, 2h, 7d or an ISO date/time", param_hint="--since"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@click.command("audit-log")
@home_option
@click.option("--since", default=None, help="Only rows from then on: 30m, 2h, 7d, or an ISO date/time.")
@click.option("--limit", type=int, default=None, help="Only the last N rows.")
@click.option("--verify", is_flag=True, help="Verify the HMAC chain; exit status 1 if it is broken.")
@click.option(
    "--against",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --verify: a checkpoint file (from --checkpoint --json); detects a cut or replaced tail.",
)
@click.option(
    "--checkpoint", is_flag=True, help="Print a signed head (rows, last HMAC, time) to keep elsewhere."
)
@click.option("--json", "as_json", is_flag=True)
def audit_log(
    since: str | None, limit: int | None, verify: bool, against: Path | None, checkpoint: bool, as_json: bool
) -> None:
    """Print the audit log (every operation on faces, refused requests, key changes) and verify its chain."""
    import sqlite3

    from faceprint.audit import AuditLog, AuditLogError, Checkpoint, Verification

    verify = verify or against is not None
    cp = None
    if against is not None:
        try:
            cp = Checkpoint.from_dict(json.loads(against.read_text()))
        except (OSError, ValueError, AuditLogError) as exc:
            click.echo(f"error: cannot read the checkpoint {against}: {exc}", err=True)
            sys.exit(2)
    records: list[Any] = []
    try:
        log = AuditLog.for_home(home_dir())
    except AuditLogError as exc:
        if not verify:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        check: Verification | None = Verification(False, 0, "", None, str(exc))
    else:
        try:
            if checkpoint:
                head = log.checkpoint()
                if as_json:
                    click.echo(json.dumps(head.as_dict()))
                else:
                    click.echo(
                        f"checkpoint: {head.rows} rows, head {head.head}, at {head.time}, "
                        f"signature {head.signature}"
                    )
                return
            check = log.verify(cp) if verify else None
            records = log.records(parse_since(since) if since else None, limit)
        except (sqlite3.Error, AuditLogError) as exc:
            if not verify:
                click.echo(f"error: the audit log is unreadable: {exc}", err=True)
                sys.exit(2)
            check = Verification(False, 0, "", None, f"the audit file is corrupt: {exc}")
        finally:
            log.close()
    if as_json:
        out: dict[str, Any] = {"records": [r.as_dict() for r in records]}
        if check is not None:
            out["verification"] = check.as_dict()
        click.echo(json.dumps(out, indent=2))
    else:
        _print_records(records)
        if check is not None:
            click.echo(_verdict(check))
    if check is not None and not check.ok:
        sys.exit(1)


def _verdict(check: Any) -> str:
    """One line: OK (saying how much is a legacy unkeyed chain) or where and why the chain is broken."""
    if check.ok:
        legacy = (
            f"; rows 1-{check.legacy_rows} are a legacy sha256 chain (written before the HMAC key: "
            "anyone who could write the file could have recomputed them)"
            if check.legacy_rows
            else ""
        )
        return f"chain OK: {check.rows} rows, head {check.head}{legacy}"
    where = f"at row {check.bad_seq}" if check.bad_seq is not None else f"after {check.rows} rows"
    return f"chain BROKEN {where}: {check.reason} ({check.rows} rows verified)"


def _print_records(records: list[Any]) -> None:
    from rich.table import Table

    table = Table(
        "seq",
        "time",
        "key",
        "client",
        "operation",
        "collection",
        "threshold",
        "matches",
        "outcome",
        "request id",
    )
    for r in records:
        table.add_row(
            str(r.seq),
            r.time,
            r.key_id or "-",
            r.client or "-",
            r.operation,
            r.collection or "-",
            "-" if r.threshold is None else f"{r.threshold:g}",
            "-" if r.matches is None else str(r.matches),
            r.outcome,
            r.request_id or "-",
        )
    _console().print(table)


# --- demo ------------------------------------------------------------------------------------------------
def prepare_demo_collection(echo: Any = click.echo) -> int:
    """Create and fill the demo collection if it does not exist (or holds another model version's faces,
    e.g. after an upgrade: it is rebuilt from the demo images); returns the number of faces indexed."""
    from faceprint.errors import ResourceNotFoundError

    try:
        from faceprint.collections.service import Collections
    except ModuleNotFoundError:
        echo("collections are not available in this build; serving without a demo collection", err=True)
        return 0
    with Collections(home_dir()) as service:
        try:
            found = service.describe_collection(CollectionId=DEMO_COLLECTION)
            if found["FaceModelVersion"] == service.engine.model_version:
                return 0
            echo(
                f"rebuilding demo collection '{DEMO_COLLECTION}' for model {service.engine.model_version}",
                err=True,
            )
            service.delete_collection(CollectionId=DEMO_COLLECTION)
        except ResourceNotFoundError:
            pass
        train = data_dir() / _DEMO_TRAIN
        images = sorted(p for p in train.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        if not images:
            echo(f"no demo images under {train}; set FACEPRINT_DATA_DIR", err=True)
            return 0
        service.create_collection(CollectionId=DEMO_COLLECTION)
        indexed = 0
        for path in images:  # a few seconds, once: later runs find the collection and skip this
            result = service.index_faces(
                CollectionId=DEMO_COLLECTION,
                Image=path.read_bytes(),
                ExternalImageId=path.parent.name,
                MaxFaces=1,
            )
            indexed += len(result.get("FaceRecords", []))
    echo(
        f"demo collection '{DEMO_COLLECTION}': {indexed} faces from {len(images)} images in {train}", err=True
    )
    return indexed


def _demo_key() -> tuple[str, str]:
    from faceprint.server.keys import KeyStore

    store = KeyStore(home_dir())
    for old in store.list():
        if old.name == "demo" and old.active:
            store.revoke(old.access_key_id)
            _record_key_change("RevokeAccessKey", old.access_key_id, {"name": "demo"})
    key, secret = store.create("demo")
    _record_key_change(
        "CreateAccessKey", key.access_key_id, {"name": "demo", "allow": ["*"], "collections": ["*"]}
    )
    return key.access_key_id, secret


@click.command()
@home_option
@_serve_options
def demo(**options: Any) -> None:
    """Create a demo collection and key (if needed), print how to use them, and serve."""
    prepare_demo_collection()
    key_id, secret = _demo_key()
    url = f"http://{options['host']}:{options['port']}"
    probe = data_dir() / _DEMO_PROBE
    options["buckets"] = (*options["buckets"], f"{DEMO_BUCKET}={data_dir()}")
    click.echo(f"""
faceprint demo: collection '{DEMO_COLLECTION}' (face_recognition example people), a fresh key 'demo'.

  export AWS_ACCESS_KEY_ID={key_id}
  export AWS_SECRET_ACCESS_KEY={secret}
  export AWS_DEFAULT_REGION=us-east-1

AWS CLI:
  aws rekognition list-collections --endpoint-url {url}
  aws rekognition search-faces-by-image --collection-id {DEMO_COLLECTION} --endpoint-url {url} \\
      --image-bytes fileb://{probe}
  aws rekognition search-faces-by-image --collection-id {DEMO_COLLECTION} --endpoint-url {url} \\
      --image '{{"S3Object":{{"Bucket":"{DEMO_BUCKET}","Name":"{_DEMO_PROBE}"}}}}'

boto3:
  import boto3
  rek = boto3.client("rekognition", endpoint_url="{url}")
  rek.search_faces_by_image(CollectionId="{DEMO_COLLECTION}", Image={{"Bytes": open("{probe}", "rb").read()}})

REST:  curl -u {key_id}:$AWS_SECRET_ACCESS_KEY -F image=@{probe} {url}/v1/collections/{DEMO_COLLECTION}/search
Web page: {url}/    Docs:  {url}/docs    Metrics: {url}/metrics    Audit: faceprint audit-log --verify
""")
    run_server(**options)


def _console() -> Any:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=240)  # no truncation in pipes and files


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
