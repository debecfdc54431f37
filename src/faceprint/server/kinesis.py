"""The Kinesis Data Streams read API on the server's endpoint: `X-Amz-Target: Kinesis_20131202.<Op>`.

An unmodified boto3 `kinesis` client with `endpoint_url` reads stream processors' output here: AWS JSON
1.1 (what botocore 1.44 sends for Kinesis; it does not use CBOR), SigV4 with signing name `kinesis`.
Operations: ListShards, DescribeStreamSummary, GetShardIterator, GetRecords. Requests are checked against
botocore's Kinesis model (InvalidArgumentException, Kinesis's modeled error for it). A key needs the
operation in its policy (`--allow 'GetRecords,GetShardIterator,...'` or `*`) and, for every processor
writing to the stream, its collection. GetRecords calls that return records are audited.
"""

from __future__ import annotations

from typing import Any

from faceprint.audit import AuditEvent
from faceprint.errors import AccessDeniedError, InvalidArgumentError, InvalidParameterError
from faceprint.server import schema
from faceprint.server.dispatch import ACCOUNT, KINESIS_TARGET_PREFIX, Dispatcher, Identity
from faceprint.server.errors import UnknownOperationError
from faceprint.server.handlers import STREAMS_SERVICE
from faceprint.server.schema import Bool, Int, Str, Struct

TARGET_PREFIX = KINESIS_TARGET_PREFIX

STREAM_NAME = Str(1, 128, r"[a-zA-Z0-9_.-]+")
STREAM_ARN = Str(1, 2048, r"arn:aws.*:kinesis:.*:\d{12}:stream/\S+")
STREAM_ID = Str(1, 24, r"[a-z0-9]{20}-[a-z0-9]{3}")
SHARD_ID = Str(1, 128, r"[a-zA-Z0-9_.-]+")
TIMESTAMP = schema.Num()
_SELECTOR = {"StreamName": STREAM_NAME, "StreamARN": STREAM_ARN, "StreamId": STREAM_ID}

REQUESTS: dict[str, Struct] = {
    "ListShards": Struct(
        {
            **_SELECTOR,
            "NextToken": Str(1, 1048576),
            "ExclusiveStartShardId": SHARD_ID,
            "MaxResults": Int(1, 10000),
            "StreamCreationTimestamp": TIMESTAMP,
            "ShardFilter": Struct(
                {
                    "Type": Str(
                        enum=(
                            "AFTER_SHARD_ID",
                            "AT_TRIM_HORIZON",
                            "FROM_TRIM_HORIZON",
                            "AT_LATEST",
                            "AT_TIMESTAMP",
                            "FROM_TIMESTAMP",
                        )
                    ),
                    "ShardId": SHARD_ID,
                    "Timestamp": TIMESTAMP,
                },
                frozenset({"Type"}),
            ),
        }
    ),
    "DescribeStreamSummary": Struct(dict(_SELECTOR)),
    "GetShardIterator": Struct(
        {
            **_SELECTOR,
            "ShardId": SHARD_ID,
            "ShardIteratorType": Str(
                enum=("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
            ),
            "StartingSequenceNumber": Str(pattern=r"^(0|([1-9]\d{0,128}))$"),
            "Timestamp": TIMESTAMP,
            "DryRun": Bool(),
        },
        frozenset({"ShardId", "ShardIteratorType"}),
    ),
    "GetRecords": Struct(
        {
            "ShardIterator": Str(1, 512),
            "Limit": Int(1, 10000),
            "StreamARN": STREAM_ARN,
            "StreamId": STREAM_ID,
            "DryRun": Bool(),
        },
        frozenset({"ShardIterator"}),
    ),
}


def operation_name(target: str) -> str:
    name = target[len(TARGET_PREFIX) :]
    if name not in REQUESTS:
        raise UnknownOperationError(f"Unknown operation {target}: faceprint serves {', '.join(REQUESTS)}")
    return name


def invoke(
    dispatcher: Dispatcher, name: str, params: dict[str, Any], identity: Identity, request_id: str
) -> dict:
    """Authorise, validate and run one Kinesis read operation."""
    service = dispatcher.services.instance(STREAMS_SERVICE, name)
    reader = service.output_streams()
    policy = identity.policy
    denied = AccessDeniedError(
        f"User: arn:aws:iam::{ACCOUNT}:user/{identity.name} is not authorized to perform: kinesis:{name}"
    )
    if not policy.allows_action(name):
        raise denied
    try:
        valid = REQUESTS[name].check(params, "")
    except InvalidParameterError as exc:
        raise InvalidArgumentError(exc.message) from None
    collections = reader.stream_collections(valid)
    if not all(policy.allows_collection(c) for c in collections):
        raise AccessDeniedError(
            f"{denied.message} on resource: a stream written by processors of collection(s) "
            f"{', '.join(sorted(collections))} that the key's policy does not allow"
        )
    result = getattr(reader, _snake(name))(**valid)
    if name == "GetRecords" and result["Records"]:
        dispatcher.audit.append(
            AuditEvent(
                operation="GetRecords",
                key_id=identity.key_id,
                collection=",".join(sorted(collections)) or None,
                matches=len(result["Records"]),
                request_id=request_id,
                client=identity.client,
                detail={
                    "via": "kinesis",
                    "first_sequence_number": result["Records"][0]["SequenceNumber"],
                    "last_sequence_number": result["Records"][-1]["SequenceNumber"],
                },
            )
        )
    return result


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
