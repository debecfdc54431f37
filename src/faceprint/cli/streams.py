"""`faceprint streams create|start|stop|list|describe|delete|tail`: stream processors of the home folder.

The commands change the processors in the home's store; the `faceprint serve` that shares the home (and
registered the stream with `--stream NAME=SOURCE`) runs them. `--json` prints the response of the
Rekognition operation; `tail` prints matches as they arrive (with `--json`, one record document a line).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import click

from faceprint.cli.common import cli_errors, print_json
from faceprint.config import home_dir


def _service() -> Any:
    from faceprint.streams.service import StreamProcessors

    return StreamProcessors(home_dir())


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _show(response: dict, as_json: bool, text: str) -> None:
    if as_json:
        print_json(response)
    else:
        click.echo(text)


@click.group("streams")
def streams_group() -> None:
    """Live face search: stream processors reading a `serve --stream` source, writing matches."""


@streams_group.command("create")
@click.argument("name")
@click.option(
    "--stream", "stream", required=True, help="Source NAME registered with `serve --stream NAME=...`."
)
@click.option("--collection", required=True, help="Collection to search.")
@click.option("--output", default=None, help="Output stream name (default: the processor's NAME).")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    default=None,
    help="FaceMatchThreshold (default: calibrated for the collection's size).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the CreateStreamProcessor response.")
@cli_errors
def create_command(
    name: str, stream: str, collection: str, output: str | None, threshold: float | None, as_json: bool
) -> None:
    """Create stream processor NAME (STOPPED) searching COLLECTION in the faces of STREAM."""
    from faceprint.streams.service import account, region

    settings: dict[str, Any] = {"CollectionId": collection}
    if threshold is not None:
        settings["FaceMatchThreshold"] = threshold
    with _service() as service:
        response = service.create_stream_processor(
            Input={
                "KinesisVideoStream": {
                    "Arn": f"arn:aws:kinesisvideo:{region()}:{account()}:stream/{stream}/0"
                }
            },
            Output={
                "KinesisDataStream": {
                    "Arn": f"arn:aws:kinesis:{region()}:{account()}:stream/{output or name}"
                }
            },
            Name=name,
            Settings={"FaceSearch": settings},
            RoleArn=f"arn:aws:iam::{account()}:role/faceprint",
        )
    _show(response, as_json, response["StreamProcessorArn"])


@streams_group.command("start")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the StartStreamProcessor response.")
@cli_errors
def start_command(name: str, as_json: bool) -> None:
    """Start NAME (a running `faceprint serve` on this home picks it up)."""
    import getpass

    with _service() as service:
        response = service.start_stream_processor(Name=name, StartedBy=f"local:{getpass.getuser()}")
    _show(response, as_json, f"{name}: STARTING (session {response['SessionId']})")


@streams_group.command("stop")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the StopStreamProcessor response ({}).")
@cli_errors
def stop_command(name: str, as_json: bool) -> None:
    """Stop NAME."""
    with _service() as service:
        response = service.stop_stream_processor(Name=name)
        status = service.describe_stream_processor(Name=name)["Status"]
    _show(response, as_json, f"{name}: {status}")


@streams_group.command("delete")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the DeleteStreamProcessor response ({}).")
@cli_errors
def delete_command(name: str, as_json: bool) -> None:
    """Delete NAME (stopped or failed; its output records stay until retention removes them)."""
    with _service() as service:
        response = service.delete_stream_processor(Name=name)
    _show(response, as_json, f"deleted {name}")


@streams_group.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the DescribeStreamProcessor response.")
@cli_errors
def describe_command(name: str, as_json: bool) -> None:
    """Status (and why), source, collection and output of NAME."""
    with _service() as service:
        response = service.describe_stream_processor(Name=name)
    if as_json:
        print_json(response)
        return
    settings = response["Settings"]["FaceSearch"]
    threshold = settings.get("FaceMatchThreshold", "calibrated default")
    click.echo(
        f"{response['Name']}: {response['Status']}"
        + (f" ({response['StatusMessage']})" if "StatusMessage" in response else "")
    )
    click.echo(f"  input:      {response['Input']['KinesisVideoStream']['Arn']}")
    click.echo(f"  collection: {settings['CollectionId']} (FaceMatchThreshold {threshold})")
    click.echo(f"  output:     {response['Output']['KinesisDataStream']['Arn']}")
    click.echo(
        f"  created {_when(response['CreationTimestamp'])}, updated {_when(response['LastUpdateTimestamp'])}"
    )


@streams_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the ListStreamProcessors response (all pages).")
@cli_errors
def list_command(as_json: bool) -> None:
    """Every stream processor and its status."""
    with _service() as service:
        response = service.list_stream_processors()
        items = list(response["StreamProcessors"])
        while "NextToken" in response:
            response = service.list_stream_processors(NextToken=response["NextToken"])
            items += response["StreamProcessors"]
    if as_json:
        print_json({"StreamProcessors": items})
        return
    for item in items:
        click.echo(f"{item['Name']}\t{item['Status']}")


@streams_group.command("tail")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One record (the JSON document) per line.")
@click.option("--from-start", is_flag=True, help="Begin with the oldest retained record (TRIM_HORIZON).")
@click.option("--max-records", type=click.IntRange(1), default=None, help="Exit after this many records.")
@cli_errors
def tail_command(name: str, as_json: bool, from_start: bool, max_records: int | None) -> None:
    """Print the matches of processor NAME as they arrive (Ctrl-C ends)."""
    from faceprint.audit import AuditEvent, local_user, log_for
    from faceprint.streams.kinesis import SHARD_ID

    with _service() as service:
        described = service.describe_stream_processor(Name=name)
        output = service.store.get(name).output
        reader = service.output_streams()
        kind = "TRIM_HORIZON" if from_start else "LATEST"
        iterator = reader.get_shard_iterator(StreamName=output, ShardId=SHARD_ID, ShardIteratorType=kind)
        iterator = iterator["ShardIterator"]
        audit = log_for(home_dir())
        seen = 0
        try:
            while max_records is None or seen < max_records:
                page = reader.get_records(ShardIterator=iterator, Limit=100)
                iterator = page["NextShardIterator"]
                mine = [r for r in page["Records"] if r["PartitionKey"] == name][
                    : (max_records or 1 << 30) - seen
                ]
                if mine:
                    audit.append(
                        AuditEvent(
                            operation="GetRecords",
                            key_id=local_user(),
                            client="local",
                            collection=described["Settings"]["FaceSearch"]["CollectionId"],
                            matches=len(mine),
                            detail={"via": "cli", "stream_processor": name},
                        )
                    )
                for record in mine:
                    _print_record(json.loads(record["Data"]), as_json)
                seen += len(mine)
                if not page["Records"]:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            pass


def _print_record(document: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(document, separators=(",", ":")))
        return
    video = document["InputInformation"]["KinesisVideo"]
    when = _when(video["ProducerTimestamp"] + video["FrameOffsetInSeconds"])
    for face in document["FaceSearchResponse"]:
        matches = face["MatchedFaces"]
        if matches:
            best = matches[0]
            who = best["Face"].get("ExternalImageId") or best["Face"].get("UserId") or best["Face"]["FaceId"]
            click.echo(f"{when}  {who}  similarity {best['Similarity']:.1f}")
        else:
            click.echo(f"{when}  no match")


def register(group: click.Group) -> None:
    """Add the `streams` command group to the root group."""
    group.add_command(streams_group)
