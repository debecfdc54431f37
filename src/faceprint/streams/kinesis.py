"""The part of the Kinesis Data Streams API a consumer needs to read a stream processor's output.

ListShards, DescribeStreamSummary, GetShardIterator (TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER,
AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP) and GetRecords, over the output streams of the store, transport-free
(the server offers them on its endpoint as Kinesis_20131202.*). Every output stream has one shard,
`shardId-000000000000`; sequence numbers are decimal strings that grow by one per record. A shard
iterator is signed and carries its stream, position and issue time; like Kinesis, it expires after
5 minutes (ExpiredIteratorException) and GetRecords answers at most 10,000 records or about 10 MB.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime
from typing import Any

from faceprint.errors import ExpiredIteratorError, InvalidArgumentError, ResourceNotFoundError
from faceprint.streams.runner import retention_hours
from faceprint.streams.service import account, region
from faceprint.streams.sources import DATA_ARN_RE
from faceprint.streams.store import StreamStore

SHARD_ID = "shardId-000000000000"
MAX_HASH_KEY = str(2**128 - 1)
ITERATOR_SECONDS = 300.0
MAX_RECORDS = 10_000
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
ITERATOR_TYPES = ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:{region()}:{account()}:stream/{name}"


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
    raise InvalidArgumentError(f"Timestamp {value!r} is not a time")


class OutputStreams:
    """Read access to the output streams (Kinesis data streams) of one home folder."""

    def __init__(self, store: StreamStore) -> None:
        self.store = store
        self._key = hashlib.sha256(b"faceprint-shard-iterator" + store.token_key()).digest()

    # -- naming ---------------------------------------------------------------------------------------

    def _stream(self, name: Any = None, arn: Any = None) -> str:
        """The output stream a request names (StreamName or StreamARN); ResourceNotFound if unknown."""
        if isinstance(arn, str):
            match = DATA_ARN_RE.match(arn)
            if match is None:
                raise InvalidArgumentError(
                    f"StreamARN {arn!r} is not arn:aws:kinesis:REGION:ACCOUNT:stream/NAME"
                )
            if isinstance(name, str) and name != match.group(4):
                raise InvalidArgumentError("StreamName and StreamARN name different streams")
            name = match.group(4)
        if not isinstance(name, str):
            raise InvalidArgumentError("Either StreamName or StreamARN is required")
        if self.store.output_created(name) is None:
            raise ResourceNotFoundError(f"Stream {name} under account {account()} not found.")
        return name

    def stream_collections(self, params: dict[str, Any]) -> list[str]:
        """The collections whose matches a request would read (the caller's policy must allow each)."""
        name = params.get("StreamName")
        arn = params.get("StreamARN")
        if "ShardIterator" in params and isinstance(params["ShardIterator"], str):
            try:
                name = self._parse_iterator(params["ShardIterator"], check_age=False)[0]
            except InvalidArgumentError:
                return []
            arn = None
        try:
            return self.store.output_collections(self._stream(name, arn))
        except (InvalidArgumentError, ResourceNotFoundError):
            return []

    # -- iterators ------------------------------------------------------------------------------------

    def _make_iterator(self, stream: str, position: int) -> str:
        payload = json.dumps([stream, int(position), round(time.time(), 3)], separators=(",", ":")).encode()
        tag = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(payload + tag).decode()

    def _parse_iterator(self, iterator: Any, check_age: bool = True) -> tuple[str, int]:
        bad = InvalidArgumentError("Invalid ShardIterator.")
        if not isinstance(iterator, str) or not 1 <= len(iterator) <= 512:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(iterator.encode())
        except (ValueError, TypeError):
            raise bad from None
        payload, tag = raw[:-16], raw[-16:]
        if len(raw) <= 16 or not hmac.compare_digest(
            tag, hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        ):
            raise bad
        stream, position, issued = json.loads(payload)
        if check_age and time.time() - issued > ITERATOR_SECONDS:
            raise ExpiredIteratorError(
                f"Iterator expired. The iterator was created at time {issued} while right now it is "
                f"{time.time():.3f} which is further in the future than the tolerated delay of "
                f"{int(ITERATOR_SECONDS * 1000)} milliseconds."
            )
        return stream, int(position)

    # -- operations -----------------------------------------------------------------------------------

    def list_shards(
        self,
        *,
        StreamName: str | None = None,
        StreamARN: str | None = None,
        NextToken: str | None = None,
        ExclusiveStartShardId: str | None = None,
        MaxResults: int | None = None,
        StreamCreationTimestamp: Any = None,
        ShardFilter: dict | None = None,
        StreamId: str | None = None,
    ) -> dict:
        """ListShards: the one shard of the stream."""
        if NextToken is not None:
            if StreamName is not None or StreamARN is not None:
                raise InvalidArgumentError("NextToken and StreamName/StreamARN cannot be given together")
            raise InvalidArgumentError("NextToken is not valid: this stream has a single shard")
        self._stream(StreamName, StreamARN)
        shards = (
            [] if ExclusiveStartShardId is not None and ExclusiveStartShardId >= SHARD_ID else [self._shard()]
        )
        if ShardFilter and ShardFilter.get("Type") == "AFTER_SHARD_ID":
            shards = [s for s in shards if s["ShardId"] > str(ShardFilter.get("ShardId", ""))]
        return {"Shards": shards}

    @staticmethod
    def _shard() -> dict:
        return {
            "ShardId": SHARD_ID,
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": MAX_HASH_KEY},
            "SequenceNumberRange": {"StartingSequenceNumber": "1"},
        }

    def describe_stream_summary(
        self, *, StreamName: str | None = None, StreamARN: str | None = None, StreamId: str | None = None
    ) -> dict:
        """DescribeStreamSummary: an ACTIVE stream with one open shard and the configured retention."""
        stream = self._stream(StreamName, StreamARN)
        return {
            "StreamDescriptionSummary": {
                "StreamName": stream,
                "StreamARN": stream_arn(stream),
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                "RetentionPeriodHours": max(1, round(retention_hours())),
                "StreamCreationTimestamp": self.store.output_created(stream),
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                "EncryptionType": "NONE",
                "OpenShardCount": 1,
                "ConsumerCount": 0,
            }
        }

    def get_shard_iterator(
        self,
        *,
        ShardId: str,
        ShardIteratorType: str,
        StreamName: str | None = None,
        StreamARN: str | None = None,
        StartingSequenceNumber: str | None = None,
        Timestamp: Any = None,
        StreamId: str | None = None,
        DryRun: bool | None = None,
    ) -> dict:
        """GetShardIterator: where GetRecords starts reading."""
        stream = self._stream(StreamName, StreamARN)
        if ShardId != SHARD_ID:
            raise ResourceNotFoundError(
                f"Shard {ShardId} in stream {stream} under account {account()} does not exist"
            )
        if ShardIteratorType not in ITERATOR_TYPES:
            raise InvalidArgumentError(f"ShardIteratorType must be one of {', '.join(ITERATOR_TYPES)}")
        if ShardIteratorType in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if not isinstance(StartingSequenceNumber, str) or not StartingSequenceNumber.isdigit():
                raise InvalidArgumentError(
                    f"StartingSequenceNumber (a sequence number) is required for {ShardIteratorType}"
                )
            number = int(StartingSequenceNumber)
            if number >= self.store.next_seq(stream):
                raise InvalidArgumentError(
                    f"StartingSequenceNumber {StartingSequenceNumber} used in GetShardIterator on shard "
                    f"{SHARD_ID} in stream {stream} under account {account()} is invalid because it did not "
                    "come from this stream."
                )
            position = number if ShardIteratorType == "AT_SEQUENCE_NUMBER" else number + 1
        elif ShardIteratorType == "TRIM_HORIZON":
            position = 0
        elif ShardIteratorType == "LATEST":
            position = self.store.next_seq(stream)
        else:
            if Timestamp is None:
                raise InvalidArgumentError("Timestamp is required for AT_TIMESTAMP")
            position = self.store.first_seq_since(stream, _epoch(Timestamp))
        return {"ShardIterator": self._make_iterator(stream, position)}

    def get_records(
        self,
        *,
        ShardIterator: str,
        Limit: int | None = None,
        StreamARN: str | None = None,
        StreamId: str | None = None,
        DryRun: bool | None = None,
    ) -> dict:
        """GetRecords: records from the iterator's position on, and the iterator to continue with."""
        stream, position = self._parse_iterator(ShardIterator)
        if StreamARN is not None and self._stream(None, StreamARN) != stream:
            raise InvalidArgumentError("StreamARN does not name the stream of the ShardIterator")
        if self.store.output_created(stream) is None:
            raise ResourceNotFoundError(f"Stream {stream} under account {account()} not found.")
        limit = MAX_RECORDS if Limit is None else int(Limit)
        if not 1 <= limit <= MAX_RECORDS:
            raise InvalidArgumentError(f"Limit must be between 1 and {MAX_RECORDS}")
        rows = self.store.records(stream, position, limit)
        out, size = [], 0
        for row in rows:
            if out and size + len(row.data) > MAX_RESPONSE_BYTES:
                break
            size += len(row.data)
            out.append(row)
        next_position = out[-1].seq + 1 if out else position
        latest = self.store.latest_arrival(stream)
        behind = 0
        if out and latest is not None and out[-1].seq + 1 < self.store.next_seq(stream):
            behind = max(0, round((latest - out[-1].arrival) * 1000))
        return {
            "Records": [
                {
                    "SequenceNumber": str(r.seq),
                    "ApproximateArrivalTimestamp": r.arrival,
                    "Data": r.data,
                    "PartitionKey": r.partition_key,
                }
                for r in out
            ],
            "NextShardIterator": self._make_iterator(stream, next_position),
            "MillisBehindLatest": behind,
        }
