"""Rekognition's stream processor operations, transport-free, for face search on local live sources.

`StreamProcessors` takes keyword arguments named like the Rekognition request members and returns dicts
in the response shapes of botocore's model: CreateStreamProcessor, DescribeStreamProcessor,
ListStreamProcessors, StartStreamProcessor, StopStreamProcessor, DeleteStreamProcessor and
UpdateStreamProcessor. Statuses: STOPPED -> (Start) STARTING -> RUNNING -> (Stop) STOPPING -> STOPPED;
FAILED when the source cannot be read; UPDATING while a running processor takes new settings.

faceprint's choices: only face search (`Settings.FaceSearch`) is offered, written to a Kinesis data stream
that faceprint serves itself (`faceprint.streams.kinesis`); `ConnectedHome` settings and `S3Destination`
are InvalidParameterException. `FaceMatchThreshold` defaults to faceprint's calibrated 1:N threshold for
the collection's size when the session starts (Rekognition: 80, and values under 80 become 80; faceprint
honours any value from 0 to 100). RoleArn, KmsKeyId, NotificationChannel and DataSharingPreference are
validated and stored but unused (no IAM, KMS or SNS here). RegionsOfInterest are applied: only faces whose
centre lies in a region are searched. StartSelector is accepted and ignored (live sources start now).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceprint import audit
from faceprint.config import home_dir
from faceprint.errors import (
    InvalidParameterError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
)
from faceprint.pagination import PaginationTokens
from faceprint.streams.runner import StreamRunner, new_session_id
from faceprint.streams.sources import data_stream_name, streams_from_env, video_stream_name
from faceprint.streams.store import (
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    UPDATING,
    Processor,
    StreamStore,
)

NAME_RE = re.compile(r"[a-zA-Z0-9_.\-]{1,128}")
if TYPE_CHECKING:
    from faceprint.streams.kinesis import OutputStreams

DEFAULT_MAX_PROCESSORS = 128
DEFAULT_PAGE = 1000
_INTERNAL = ("StartedBy",)  # config members that are not part of the request


def region() -> str:
    return os.environ.get("FACEPRINT_REGION", "us-east-1")


def account() -> str:
    return os.environ.get("FACEPRINT_ACCOUNT_ID", "000000000000")


def processor_arn(name: str) -> str:
    return f"arn:aws:rekognition:{region()}:{account()}:streamprocessor/{name}"


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= float(value) <= 100:
        raise InvalidParameterError(f"FaceMatchThreshold must be a number between 0 and 100, got {value!r}")
    return float(value)


class StreamProcessors:
    """The seven stream processor operations over one home folder (`$FACEPRINT_HOME` by default).

    `sources` are the local streams Input ARNs may name (default: `FACEPRINT_STREAMS`, plus what a
    running server registered in the store)."""

    def __init__(self, home: Path | str | None = None, sources: dict[str, str] | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else home_dir()
        self.store = StreamStore(self.home)
        self.sources = dict(sources) if sources is not None else streams_from_env()
        self.max_processors = int(os.environ.get("FACEPRINT_STREAM_MAX_PROCESSORS", DEFAULT_MAX_PROCESSORS))
        self._tokens = PaginationTokens(self.store.token_key())
        self._runner: StreamRunner | None = None
        self._outputs: OutputStreams | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start_runner(self) -> StreamRunner:
        """Register this process's sources and run processors in a background thread (the server's)."""
        self.store.register_sources(self.sources)
        if self._runner is None:
            self._runner = StreamRunner(self.home, self.sources, store=self.store)
        self._runner.start()
        return self._runner

    def close(self) -> None:
        if self._runner is not None:
            self._runner.stop()
        self.store.close()

    def output_streams(self) -> OutputStreams:
        """The Kinesis read API over this home's output streams."""
        if self._outputs is None:
            from faceprint.streams.kinesis import OutputStreams

            self._outputs = OutputStreams(self.store)
        return self._outputs

    def __enter__(self) -> StreamProcessors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wake(self) -> None:
        if self._runner is not None:
            self._runner.wake.set()

    def _known_sources(self) -> dict[str, str]:
        return {**self.store.sources(), **self.sources}

    def _get(self, name: Any) -> Processor:
        if not isinstance(name, str) or not name:
            raise InvalidParameterError("Name is required")
        found = self.store.get(name)
        if found is None:
            raise ResourceNotFoundError(f"stream processor {name!r} does not exist")
        return found

    def processor_collection(self, name: Any) -> str | None:
        """The collection a processor searches (what the key's policy must allow), None if unknown."""
        found = self.store.get(name) if isinstance(name, str) else None
        return found.collection_id if found is not None else None

    # -- operations -----------------------------------------------------------------------------------

    @audit.audited("CreateStreamProcessor")
    def create_stream_processor(
        self,
        *,
        Input: dict,
        Output: dict,
        Name: str,
        Settings: dict,
        RoleArn: str,
        Tags: dict | None = None,
        NotificationChannel: dict | None = None,
        KmsKeyId: str | None = None,
        RegionsOfInterest: list | None = None,
        DataSharingPreference: dict | None = None,
    ) -> dict:
        """CreateStreamProcessor: a STOPPED face-search processor from a local stream to an output stream."""
        if not isinstance(Name, str) or not NAME_RE.fullmatch(Name):
            raise InvalidParameterError(f"Name {Name!r} must be 1-128 characters of [a-zA-Z0-9_.-]")
        video_arn = ((Input or {}).get("KinesisVideoStream") or {}).get("Arn")
        if not isinstance(video_arn, str):
            raise InvalidParameterError("Input.KinesisVideoStream.Arn is required")
        source = video_stream_name(video_arn)
        if source not in self._known_sources():
            raise InvalidParameterError(
                f"Kinesis video stream {source!r} is not registered with this server: start it with "
                f"`faceprint serve --stream {source}=SOURCE` (or FACEPRINT_STREAMS)"
            )
        if (Output or {}).get("S3Destination") is not None:
            raise InvalidParameterError(
                "Output.S3Destination is for ConnectedHome processors, not face search"
            )
        data_arn = ((Output or {}).get("KinesisDataStream") or {}).get("Arn")
        if not isinstance(data_arn, str):
            raise InvalidParameterError(
                "Output.KinesisDataStream.Arn is required for a face search processor"
            )
        output = data_stream_name(data_arn)
        settings = Settings or {}
        if settings.get("ConnectedHome") is not None:
            raise InvalidParameterError(
                "Settings.ConnectedHome (label detection) is not offered by faceprint; use FaceSearch"
            )
        face_search = settings.get("FaceSearch")
        if not isinstance(face_search, dict) or not isinstance(face_search.get("CollectionId"), str):
            raise InvalidParameterError("Settings.FaceSearch.CollectionId is required")
        _threshold(face_search.get("FaceMatchThreshold"))
        collection = face_search["CollectionId"]
        self._check_collection(collection)
        config = {
            "Input": {"KinesisVideoStream": {"Arn": video_arn}},
            "Output": {"KinesisDataStream": {"Arn": data_arn}},
            "Settings": {"FaceSearch": dict(face_search)},
            "RoleArn": RoleArn,
            "Tags": Tags,
            "NotificationChannel": NotificationChannel,
            "KmsKeyId": KmsKeyId,
            "RegionsOfInterest": RegionsOfInterest,
            "DataSharingPreference": DataSharingPreference,
        }
        try:
            self.store.create(Name, config, source, collection, output, self.max_processors)
        except KeyError:
            raise ResourceInUseError(f"a stream processor named {Name!r} already exists") from None
        except OverflowError:
            raise LimitExceededError(
                f"{self.max_processors} stream processors exist already (FACEPRINT_STREAM_MAX_PROCESSORS)"
            ) from None
        return {"StreamProcessorArn": processor_arn(Name)}

    def _check_collection(self, collection_id: str) -> None:
        from faceprint.collections.service import Collections

        with Collections(self.home) as collections:
            collections.describe_collection(CollectionId=collection_id)  # ResourceNotFoundError if absent

    @audit.audited("DescribeStreamProcessor")
    def describe_stream_processor(self, *, Name: str) -> dict:
        """DescribeStreamProcessor: status, reason, times and the configuration."""
        found = self._get(Name)
        out: dict[str, Any] = {
            "Name": found.name,
            "StreamProcessorArn": processor_arn(found.name),
            "Status": found.status,
        }
        if found.status_message:
            out["StatusMessage"] = found.status_message
        out["CreationTimestamp"] = found.created
        out["LastUpdateTimestamp"] = found.updated
        for member, value in found.config.items():
            if value is not None and member not in _INTERNAL and member != "Tags":
                out[member] = value
        return out

    @audit.audited("ListStreamProcessors", matches="StreamProcessors")
    def list_stream_processors(self, *, NextToken: str | None = None, MaxResults: int | None = None) -> dict:
        """ListStreamProcessors: names and statuses, by name, paginated."""
        limit = DEFAULT_PAGE if MaxResults is None else int(MaxResults)
        if limit < 1:
            raise InvalidParameterError(f"MaxResults must be at least 1, got {MaxResults}")
        offset = self._tokens.parse(NextToken, "streamprocessors")
        page = self.store.page(offset, limit + 1)
        out: dict[str, Any] = {
            "StreamProcessors": [{"Name": p.name, "Status": p.status} for p in page[:limit]]
        }
        if len(page) > limit:
            out["NextToken"] = self._tokens.make("streamprocessors", offset + limit)
        return out

    def list_collections_of_processors(self) -> dict[str, str]:
        """Processor name -> collection (to filter ListStreamProcessors by a key's policy)."""
        return {p.name: p.collection_id for p in self.store.page(0, 1 << 30)}

    @audit.audited("StartStreamProcessor")
    def start_stream_processor(
        self,
        *,
        Name: str,
        StartSelector: dict | None = None,
        StopSelector: dict | None = None,
        StartedBy: str | None = None,
    ) -> dict:
        """StartStreamProcessor: STOPPED or FAILED -> STARTING; a runner opens the source and makes it
        RUNNING. Returns the new SessionId."""
        found = self._get(Name)
        self._check_collection(found.collection_id)
        stop_after = None
        if StopSelector and StopSelector.get("MaxDurationInSeconds") is not None:
            stop_after = time.time() + float(StopSelector["MaxDurationInSeconds"])
        session = new_session_id()
        try:
            self.store.transition(
                found.name,
                (STOPPED, FAILED),
                STARTING,
                session_id=session,
                stop_after=stop_after,
                config={**found.config, "StartedBy": StartedBy},
            )
        except ValueError as exc:
            raise ResourceInUseError(
                f"stream processor {found.name!r} is {exc.args[0]}; only a STOPPED or FAILED one can start"
            ) from None
        self._wake()
        return {"SessionId": session}

    @audit.audited("StopStreamProcessor")
    def stop_stream_processor(self, *, Name: str) -> dict:
        """StopStreamProcessor: a running processor stops (STOPPING until its runner has let go)."""
        found = self._get(Name)
        try:
            self.store.stop(found.name)
        except ValueError as exc:
            raise ResourceInUseError(
                f"stream processor {found.name!r} is {exc.args[0]}; only a running one can be stopped"
            ) from None
        self._wake()
        return {}

    @audit.audited("DeleteStreamProcessor")
    def delete_stream_processor(self, *, Name: str) -> dict:
        """DeleteStreamProcessor: only a STOPPED or FAILED processor (its output stream's records stay)."""
        found = self._get(Name)
        try:
            self.store.delete(found.name)
        except ValueError as exc:
            raise ResourceInUseError(
                f"stream processor {found.name!r} is {exc.args[0]}; stop it before deleting it"
            ) from None
        return {}

    @audit.audited("UpdateStreamProcessor")
    def update_stream_processor(
        self,
        *,
        Name: str,
        SettingsForUpdate: dict | None = None,
        RegionsOfInterestForUpdate: list | None = None,
        DataSharingPreferenceForUpdate: dict | None = None,
        ParametersToDelete: list | None = None,
    ) -> dict:
        """UpdateStreamProcessor: regions of interest and data sharing (botocore's model offers no face
        search member to update). A RUNNING processor is UPDATING until its runner has the new regions."""
        found = self._get(Name)
        if SettingsForUpdate and SettingsForUpdate.get("ConnectedHomeForUpdate") is not None:
            raise InvalidParameterError(
                f"stream processor {found.name!r} searches faces: ConnectedHomeForUpdate does not apply"
            )
        deletions = set(ParametersToDelete or [])
        if "ConnectedHomeMinConfidence" in deletions:
            raise InvalidParameterError(
                "ConnectedHomeMinConfidence does not apply to a face search processor"
            )
        config = dict(found.config)
        if RegionsOfInterestForUpdate is not None:
            config["RegionsOfInterest"] = RegionsOfInterestForUpdate
        if "RegionsOfInterest" in deletions:
            if RegionsOfInterestForUpdate is not None:
                raise InvalidParameterError("RegionsOfInterest cannot be both updated and deleted")
            config["RegionsOfInterest"] = None
        if DataSharingPreferenceForUpdate is not None:
            config["DataSharingPreference"] = DataSharingPreferenceForUpdate
        if found.status == RUNNING:
            target, allowed = UPDATING, (RUNNING,)
        else:
            target, allowed = found.status, (STOPPED, FAILED)
        try:
            self.store.transition(found.name, allowed, target, found.status_message, config=config)
        except ValueError as exc:
            raise ResourceInUseError(
                f"stream processor {found.name!r} is {exc.args[0]}; update it when it is RUNNING or stopped"
            ) from None
        self._wake()
        return {}
