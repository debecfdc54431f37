"""`faceprint collections|index|search|faces|users`: face collections from the command line.

Every command that prints results takes `--json` and then prints exactly the Rekognition response of
the same operation (`index` prints one IndexFaces response per image, one JSON object per line; listings
fetch every page and print one response without NextToken). Without `--json` it prints Rich tables.
Errors print one line (`error: Code: message`) and exit with status 2; `index` exits 1 when some
images could not be indexed.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from faceprint.cli.common import cli_errors, print_json
from faceprint.collections.quality import QUALITY_FILTERS
from faceprint.errors import FaceprintError, ResourceNotFoundError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"}
_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False)


# -- shared plumbing ---------------------------------------------------------------------------------


def _index_event(collection: str, resp: dict | None, error: FaceprintError | None) -> Any:
    """The audit row of one image indexed by `faceprint index` (written per committed batch)."""
    from faceprint.audit import current_caller, event

    if error is not None:
        return event("IndexFaces", current_caller(), collection, None, None, error.code)
    face_ids = [r["Face"]["FaceId"] for r in resp["FaceRecords"]][:100] if resp else []
    matches = len(resp["FaceRecords"]) if resp else 0
    return event("IndexFaces", current_caller(), collection, None, matches, "OK", {"face_ids": face_ids})


def _service(home: Path | None, keep_chips: bool | None = None):  # -> Collections (lazy import: fast --help)
    from faceprint.collections.service import Collections

    return Collections(home=home, keep_chips=keep_chips)


def _handle_errors(func: Callable) -> Callable:
    """One-line message and exit status 2 on faceprint (common.cli_errors), database and file errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except sqlite3.Error as exc:
            click.echo(f"error: database: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return cli_errors(wrapper)


def _command(group: click.Group, name: str, json_option: bool = True) -> Callable:
    """Declare a subcommand with --home (and --json) and error handling."""

    def decorate(func: Callable) -> click.Command:
        func = _handle_errors(func)
        if json_option:
            func = click.option(
                "--json", "as_json", is_flag=True, help="Print the Rekognition response as JSON."
            )(func)
        func = click.option(
            "--home",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="faceprint home folder (default $FACEPRINT_HOME or ~/.faceprint).",
        )(func)
        return group.command(name)(func)

    return decorate


def _print_json(response: dict, indent: int | None = 2) -> None:
    """Print a response as JSON (one line when `indent` is None)."""
    if indent is None:
        click.echo(json.dumps(response, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    else:
        print_json(response)


def _all_pages(
    call: Callable[..., dict], key: str | tuple[str, ...], max_results: int | None, **kwargs: Any
) -> dict:
    """Call a paginated operation; without `max_results` follow NextToken and merge the pages."""
    if max_results is not None:
        return call(MaxResults=max_results, **kwargs)
    keys = (key,) if isinstance(key, str) else key
    merged: dict[str, Any] = {}
    token = kwargs.pop("NextToken", None)
    while True:
        page = call(NextToken=token, **kwargs) if token else call(**kwargs)
        for name, value in page.items():
            if name in keys:
                merged.setdefault(name, []).extend(value)
            elif name != "NextToken":
                merged[name] = value
        token = page.get("NextToken")
        if not token:
            return merged


def _pct(value: float) -> str:
    return f"{value:.2f}"


def _fmr(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1e}"


def _faces_table(faces: list[dict], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("FaceId", "ExternalImageId", "Confidence", "UserId"):
        table.add_column(col, overflow="fold")
    for f in faces:
        table.add_row(f["FaceId"], f.get("ExternalImageId", ""), _pct(f["Confidence"]), f.get("UserId", ""))
    return table


def _matches_table(matches: list[dict], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("#", "Similarity", "Est. FMR", "FaceId", "ExternalImageId", "UserId"):
        table.add_column(col, overflow="fold")
    for rank, m in enumerate(matches, 1):
        face = m["Face"]
        table.add_row(
            str(rank),
            _pct(m["Similarity"]),
            _fmr(m["EstimatedFalseMatchRate"]),
            face["FaceId"],
            face.get("ExternalImageId", ""),
            face.get("UserId", ""),
        )
    return table


def _failures_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("FaceId", "UserId", "Reasons"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["FaceId"], r.get("UserId", ""), ", ".join(r["Reasons"]))
    return table


_max_results = click.option(
    "--max-results", type=int, default=None, help="One page of at most N (default: all)."
)
_next_token = click.option("--next-token", default=None, help="Continue a listing from this NextToken.")
_quality = click.option("--quality-filter", type=click.Choice(QUALITY_FILTERS), default=None)


# -- collections -------------------------------------------------------------------------------------


@click.group("collections")
def collections_group() -> None:
    """Create, delete, describe and list collections."""


@_command(collections_group, "create")
@click.argument("name")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
@click.option(
    "--model",
    default=None,
    help="Face model of the collection's vectors [default: $FACEPRINT_MODEL, else dlib-int8]; "
    "see `faceprint models list`.",
)
def collections_create(
    name: str, tags: tuple[str, ...], model: str | None, home: Path | None, as_json: bool
) -> None:
    """Create collection NAME (its faces are embedded with its face model, for good)."""
    pairs = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep:
            raise click.BadParameter(f"{tag!r} is not KEY=VALUE", param_hint="--tag")
        pairs[key] = value
    if model is not None:
        pairs["faceprint:model"] = model
    resp = _service(home).create_collection(CollectionId=name, Tags=pairs or None)
    if as_json:
        _print_json(resp)
    else:
        _out.print(
            f"Created collection [bold]{name}[/] ({resp['CollectionArn']}, model {resp['FaceModelVersion']})"
        )


@_command(collections_group, "migrate")
@click.argument("source")
@click.argument("target")
@click.option(
    "--model", required=True, help="Face model of the new collection (see `faceprint models list`)."
)
def collections_migrate(source: str, target: str, model: str, home: Path | None, as_json: bool) -> None:
    """Re-embed the faces of SOURCE with MODEL into a new collection TARGET, from the crops kept by
    `faceprint index --keep-chips` (SOURCE is left as it was; users are not carried over)."""
    from faceprint.collections.migrate import migrate_collection

    resp = migrate_collection(_service(home), source, target, model)
    if as_json:
        _print_json(resp)
        return
    lost = len(resp["FacesNotFoundInCrop"])
    _out.print(
        f"Migrated [bold]{resp['FacesMigrated']}[/] faces of {source} into [bold]{target}[/] (model {model}, "
        f"FaceModelVersion {resp['FaceModelVersion']})"
        + (f"; {lost} faces not found again in their crop" if lost else "")
    )


@_command(collections_group, "delete")
@click.argument("name")
def collections_delete(name: str, home: Path | None, as_json: bool) -> None:
    """Delete collection NAME with all its faces and users."""
    resp = _service(home).delete_collection(CollectionId=name)
    if as_json:
        _print_json(resp)
    else:
        _out.print(f"Deleted collection [bold]{name}[/]")


@_command(collections_group, "describe")
@click.argument("name")
def collections_describe(name: str, home: Path | None, as_json: bool) -> None:
    """Face and user counts, model version and creation time of collection NAME."""
    resp = _service(home).describe_collection(CollectionId=name)
    if as_json:
        _print_json(resp)
        return
    table = Table(title=f"Collection {name}", title_justify="left", show_header=False)
    created = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(resp["CreationTimestamp"]))
    for key, value in (
        ("FaceCount", f"{resp['FaceCount']:,}"),
        ("UserCount", f"{resp['UserCount']:,}"),
        ("FaceModelVersion", resp["FaceModelVersion"]),
        ("CreationTimestamp", created),
        ("CollectionARN", resp["CollectionARN"]),
    ):
        table.add_row(key, value)
    _out.print(table)


@_command(collections_group, "list")
@_max_results
@_next_token
def collections_list(
    max_results: int | None, next_token: str | None, home: Path | None, as_json: bool
) -> None:
    """List the collections."""
    svc = _service(home)
    kwargs = {"NextToken": next_token} if next_token else {}
    resp = _all_pages(svc.list_collections, ("CollectionIds", "FaceModelVersions"), max_results, **kwargs)
    if as_json:
        _print_json(resp)
        return
    table = Table(title="Collections", title_justify="left")
    for col in ("CollectionId", "FaceModelVersion"):
        table.add_column(col)
    for name, version in zip(resp.get("CollectionIds", []), resp.get("FaceModelVersions", []), strict=True):
        table.add_row(name, version)
    _out.print(table)
    if resp.get("NextToken"):
        _out.print(f"NextToken: {resp['NextToken']}")


# -- index -------------------------------------------------------------------------------------------


def external_image_id(path: Path) -> str:
    """ExternalImageId of a file: its name, with characters Rekognition refuses replaced by '_'."""
    return re.sub(r"[^a-zA-Z0-9_.\-:]", "_", path.name)[:255] or "image"


def image_files(paths: tuple[Path, ...]) -> Iterator[Path]:
    """The given files, and the images under the given folders (recursively, sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield path


class _RateColumn(ProgressColumn):
    """Faces indexed and faces per second."""

    def render(self, task: Task) -> Text:
        faces = task.fields.get("faces", 0)
        elapsed = task.elapsed or 0.0
        rate = faces / elapsed if elapsed > 0 else 0.0
        return Text(f"{faces:,} faces, {rate:.1f} faces/s", style="cyan")


@click.command("index")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--max-faces", type=int, default=None, help="Faces to index per image (1-100, default 100).")
@_quality
@click.option("--attributes", multiple=True, help="DetectionAttributes (DEFAULT or ALL).")
@click.option(
    "--keep-chips",
    is_flag=True,
    help="Also store a wide crop of each face (private), so `collections migrate` can re-embed it with "
    "another model [default: $FACEPRINT_KEEP_CHIPS, off: privacy].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one IndexFaces response per image (JSON lines).")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@_handle_errors
def index_cmd(
    name: str,
    paths: tuple[Path, ...],
    max_faces: int | None,
    quality_filter: str | None,
    attributes: tuple[str, ...],
    keep_chips: bool,
    as_json: bool,
    home: Path | None,
) -> None:
    """Index the faces of image files or folders (recursive) into collection NAME.

    Each image's ExternalImageId is its file name.
    """
    from faceprint import weights

    weights.preload_landmarks()  # overlaps the imports below and the embedder's load
    from faceprint.audit import log_for
    from faceprint.collections.ingest import Indexer
    from faceprint.threads import prefer_one_thread_per_call

    # The indexer runs a detection and an embedder call per worker thread at once: one native thread each
    # uses the CPUs best and degrades gracefully when another process competes for them (bench/RESULTS.md).
    prefer_one_thread_per_call()
    files = list(image_files(paths))
    svc = _service(home, keep_chips=keep_chips or None)
    svc.describe_collection(CollectionId=name)  # fail fast on a missing collection
    audit = log_for(svc.home)  # the process's one handle (a second one's close would drop its locks)
    indexed, failed, reasons = 0, 0, Counter()
    start = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]indexing"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("images"),
        _RateColumn(),
        TimeElapsedColumn(),
        console=_err,
        transient=False,
    )
    requests = (
        {
            "CollectionId": name,
            "Image": path,
            "ExternalImageId": external_image_id(path),
            "MaxFaces": max_faces,
            "QualityFilter": quality_filter,
            "DetectionAttributes": list(attributes) or None,
        }
        for path in files
    )
    try:
        with progress:
            task = progress.add_task("index", total=len(files), faces=0)
            # Each batch comes back committed; it is audited (one append) before anything of it is printed.
            for batch in Indexer(svc).run(requests):
                audit.append_many([_index_event(name, r.response, r.error) for r in batch])
                for result in batch:
                    if isinstance(result.error, ResourceNotFoundError):
                        raise result.error
                    if result.error is not None:
                        failed += 1
                        progress.console.print(
                            f"[yellow]skipped {result.request['Image']}: {result.error.message}[/]"
                        )
                        progress.advance(task)
                        continue
                    resp = result.response
                    if as_json:
                        _print_json(resp, indent=None)
                    indexed += len(resp["FaceRecords"])
                    for face in resp["UnindexedFaces"]:
                        reasons.update(face["Reasons"])
                    progress.update(task, advance=1, faces=indexed)
    finally:
        svc.close()
    seconds = time.perf_counter() - start
    if not as_json:
        table = Table(title=f"Indexed into {name}", title_justify="left", show_header=False)
        table.add_row("images", f"{len(files) - failed:,} of {len(files):,}")
        table.add_row("faces indexed", f"{indexed:,} ({indexed / seconds if seconds else 0:.1f} faces/s)")
        table.add_row("faces not indexed", ", ".join(f"{r}: {n}" for r, n in reasons.most_common()) or "0")
        _out.print(table)
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} image(s) could not be indexed")


# -- search ------------------------------------------------------------------------------------------


@click.command("search")
@click.argument("name")
@click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--face-id", default=None, help="Search with a stored face instead of an image (SearchFaces).")
@click.option("--max-faces", type=int, default=None, help="Matches to return (1-4096, default 100).")
@click.option(
    "--threshold", type=float, default=None, help="FaceMatchThreshold in percent (default: calibrated)."
)
@_quality
@click.option("--json", "as_json", is_flag=True, help="Print the Rekognition response as JSON.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@_handle_errors
def search_cmd(
    name: str,
    image: Path | None,
    face_id: str | None,
    max_faces: int | None,
    threshold: float | None,
    quality_filter: str | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Search collection NAME for the largest face of IMAGE (SearchFacesByImage)."""
    if (image is None) == (face_id is None):
        raise click.UsageError("give an IMAGE or --face-id (not both)")
    if image is not None:
        from faceprint import weights

        weights.preload_landmarks()
    with _service(home) as svc:
        if face_id is not None:
            resp = svc.search_faces(
                CollectionId=name, FaceId=face_id, MaxFaces=max_faces, FaceMatchThreshold=threshold
            )
        else:
            resp = svc.search_faces_by_image(
                CollectionId=name,
                Image=image,
                MaxFaces=max_faces,
                FaceMatchThreshold=threshold,
                QualityFilter=quality_filter,
            )
    if as_json:
        _print_json(resp)
        return
    if resp["FaceMatches"]:
        _out.print(_matches_table(resp["FaceMatches"], f"{len(resp['FaceMatches'])} match(es) in {name}"))
    else:
        _out.print(f"No match in {name}.")
    _out.print(f"Expected false matches at this threshold: {resp['ExpectedFalseMatches']:.2g}")


# -- faces -------------------------------------------------------------------------------------------


@click.group("faces")
def faces_group() -> None:
    """List and delete the faces of a collection."""


@_command(faces_group, "list")
@click.argument("name")
@click.argument("face_ids", nargs=-1)
@click.option("--user-id", default=None, help="Only the faces of this user.")
@_max_results
@_next_token
def faces_list(
    name: str,
    face_ids: tuple[str, ...],
    user_id: str | None,
    max_results: int | None,
    next_token: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """List the faces of collection NAME (optionally only FACE_IDS)."""
    kwargs: dict[str, Any] = {"CollectionId": name}
    if face_ids:
        kwargs["FaceIds"] = list(face_ids)
    if user_id:
        kwargs["UserId"] = user_id
    if next_token:
        kwargs["NextToken"] = next_token
    with _service(home) as svc:
        resp = _all_pages(svc.list_faces, "Faces", max_results, **kwargs)
    if as_json:
        _print_json(resp)
        return
    _out.print(_faces_table(resp["Faces"], f"{len(resp['Faces']):,} face(s) in {name}"))
    if resp.get("NextToken"):
        _out.print(f"NextToken: {resp['NextToken']}")


@_command(faces_group, "delete")
@click.argument("name")
@click.argument("face_ids", nargs=-1, required=True)
def faces_delete(name: str, face_ids: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Delete FACE_IDS from collection NAME."""
    with _service(home) as svc:
        resp = svc.delete_faces(CollectionId=name, FaceIds=list(face_ids))
    if as_json:
        _print_json(resp)
        return
    _out.print(f"Deleted {len(resp.get('DeletedFaces', []))} face(s)")
    if resp["UnsuccessfulFaceDeletions"]:
        _out.print(_failures_table(resp["UnsuccessfulFaceDeletions"], "Not deleted"))


# -- users -------------------------------------------------------------------------------------------


@click.group("users")
def users_group() -> None:
    """Users: several faces of one person, searched as one fused template."""


@_command(users_group, "create")
@click.argument("name")
@click.argument("user_id")
def users_create(name: str, user_id: str, home: Path | None, as_json: bool) -> None:
    """Create user USER_ID in collection NAME."""
    resp = _service(home).create_user(CollectionId=name, UserId=user_id)
    _print_json(resp) if as_json else _out.print(f"Created user [bold]{user_id}[/]")


@_command(users_group, "delete")
@click.argument("name")
@click.argument("user_id")
def users_delete(name: str, user_id: str, home: Path | None, as_json: bool) -> None:
    """Delete user USER_ID (its faces stay in the collection, unassociated)."""
    resp = _service(home).delete_user(CollectionId=name, UserId=user_id)
    _print_json(resp) if as_json else _out.print(f"Deleted user [bold]{user_id}[/]")


@_command(users_group, "list")
@click.argument("name")
@_max_results
@_next_token
def users_list(
    name: str, max_results: int | None, next_token: str | None, home: Path | None, as_json: bool
) -> None:
    """List the users of collection NAME."""
    kwargs: dict[str, Any] = {"CollectionId": name}
    if next_token:
        kwargs["NextToken"] = next_token
    resp = _all_pages(_service(home).list_users, "Users", max_results, **kwargs)
    if as_json:
        _print_json(resp)
        return
    table = Table(title=f"{len(resp.get('Users', [])):,} user(s) in {name}", title_justify="left")
    table.add_column("UserId")
    table.add_column("UserStatus")
    for user in resp.get("Users", []):
        table.add_row(user["UserId"], user["UserStatus"])
    _out.print(table)


@_command(users_group, "associate")
@click.argument("name")
@click.argument("user_id")
@click.argument("face_ids", nargs=-1, required=True)
@click.option("--threshold", type=float, default=None, help="UserMatchThreshold (default 75).")
def users_associate(
    name: str,
    user_id: str,
    face_ids: tuple[str, ...],
    threshold: float | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Associate FACE_IDS with user USER_ID."""
    resp = _service(home).associate_faces(
        CollectionId=name, UserId=user_id, FaceIds=list(face_ids), UserMatchThreshold=threshold
    )
    if as_json:
        _print_json(resp)
        return
    _out.print(f"Associated {len(resp['AssociatedFaces'])} face(s); user status {resp['UserStatus']}")
    if resp["UnsuccessfulFaceAssociations"]:
        _out.print(_failures_table(resp["UnsuccessfulFaceAssociations"], "Not associated"))


@_command(users_group, "disassociate")
@click.argument("name")
@click.argument("user_id")
@click.argument("face_ids", nargs=-1, required=True)
def users_disassociate(
    name: str, user_id: str, face_ids: tuple[str, ...], home: Path | None, as_json: bool
) -> None:
    """Disassociate FACE_IDS from user USER_ID."""
    resp = _service(home).disassociate_faces(CollectionId=name, UserId=user_id, FaceIds=list(face_ids))
    if as_json:
        _print_json(resp)
        return
    _out.print(f"Disassociated {len(resp['DisassociatedFaces'])} face(s); user status {resp['UserStatus']}")
    if resp["UnsuccessfulFaceDisassociations"]:
        _out.print(_failures_table(resp["UnsuccessfulFaceDisassociations"], "Not disassociated"))


@_command(users_group, "search")
@click.argument("name")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--user-id", default=None)
@click.option("--face-id", default=None)
@click.option("--threshold", type=float, default=None, help="UserMatchThreshold (default: calibrated).")
@click.option("--max-users", type=int, default=None, help="Matches to return (1-500, default 100).")
@_quality
def users_search(
    name: str,
    image: Path | None,
    user_id: str | None,
    face_id: str | None,
    threshold: float | None,
    max_users: int | None,
    quality_filter: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Search the users of NAME by --image (SearchUsersByImage), --user-id or --face-id (SearchUsers)."""
    if sum(x is not None for x in (image, user_id, face_id)) != 1:
        raise click.UsageError("give exactly one of --image, --user-id and --face-id")
    with _service(home) as svc:
        if image is not None:
            resp = svc.search_users_by_image(
                CollectionId=name,
                Image=image,
                UserMatchThreshold=threshold,
                MaxUsers=max_users,
                QualityFilter=quality_filter,
            )
        else:
            resp = svc.search_users(
                CollectionId=name,
                UserId=user_id,
                FaceId=face_id,
                UserMatchThreshold=threshold,
                MaxUsers=max_users,
            )
    if as_json:
        _print_json(resp)
        return
    table = Table(title=f"{len(resp['UserMatches'])} user match(es) in {name}", title_justify="left")
    for col in ("#", "Similarity", "Est. FMR", "UserId", "UserStatus"):
        table.add_column(col)
    for rank, m in enumerate(resp["UserMatches"], 1):
        table.add_row(
            str(rank),
            _pct(m["Similarity"]),
            _fmr(m["EstimatedFalseMatchRate"]),
            m["User"]["UserId"],
            m["User"]["UserStatus"],
        )
    _out.print(table)


def register(group: click.Group) -> None:
    """Add `collections`, `index`, `search`, `faces` and `users` to the root command group."""
    for command in (collections_group, index_cmd, search_cmd, faces_group, users_group):
        group.add_command(command)
