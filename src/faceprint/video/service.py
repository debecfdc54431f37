"""Rekognition Video's face operations, transport-free: StartFaceDetection, GetFaceDetection,
StartFaceSearch and GetFaceSearch.

`VideoJobs` takes keyword arguments named like the Rekognition request members and returns dicts in the
response shapes of the wire contract. Start* validate the request, resolve the video and queue a durable
job; a `Worker` (a thread started with `start_worker()`, or a separate `faceprint video worker` process)
runs it. `Video` is `{"S3Object": {"Bucket": b, "Name": n}}`, resolved by default to the local file
`<home>/buckets/<b>/<n>`; the command line may also pass a plain path.

faceprint's choices: NotificationChannel is validated and accepted but no SNS message is sent (poll Get*);
FaceAttributes ALL returns the DEFAULT attributes (the only ones faceprint computes); Person.BoundingBox is
the face's box (there is no body detector); FaceMatchThreshold defaults to the calibrated 1:N threshold of
the collection's size, like SearchFacesByImage, and every FaceMatch carries `EstimatedFalseMatchRate`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceprint import audit
from faceprint.config import home_dir
from faceprint.errors import (
    IdempotentParameterMismatchError,
    InvalidParameterError,
    InvalidS3ObjectError,
    LimitExceededError,
    ResourceNotFoundError,
)
from faceprint.pagination import PaginationTokens
from faceprint.rekognition import CLIENT_TOKEN_RE, COLLECTION_ID_RE
from faceprint.video.decode import probe
from faceprint.video.jobs import (
    FACE_DETECTION,
    FACE_SEARCH,
    IN_PROGRESS,
    SUCCEEDED,
    Job,
    JobStore,
)
from faceprint.video.pipeline import PipelineConfig
from faceprint.video.worker import Worker

JOB_TAG_RE = re.compile(r"[a-zA-Z0-9_.\-:+=/]{1,1024}")
JOB_ID_RE = re.compile(r"[a-zA-Z0-9\-_]{1,64}")
BUCKET_RE = re.compile(r"[0-9A-Za-z.\-_]{3,255}")
SNS_ARN_RE = re.compile(r"^arn:aws:sns:.*:\w{12}:.+$")
ROLE_ARN_RE = re.compile(r"arn:aws:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
MAX_RESULTS = 1000
DEFAULT_MAX_ACTIVE_JOBS = 20  # Rekognition Video's default quota of concurrent jobs

VideoResolver = Callable[[Any], Path]


def bucket_resolver(home: Path) -> VideoResolver:
    """Resolve `{"S3Object": {"Bucket", "Name"}}` to `<home>/buckets/<Bucket>/<Name>` (never outside it)."""
    root = (Path(home) / "buckets").resolve()

    def resolve(video: Any) -> Path:
        s3 = video.get("S3Object") if isinstance(video, dict) else None
        if not isinstance(s3, dict):
            raise InvalidParameterError("Video must be {'S3Object': {'Bucket': ..., 'Name': ...}}")
        bucket, name = s3.get("Bucket"), s3.get("Name")
        if not isinstance(bucket, str) or not BUCKET_RE.fullmatch(bucket):
            raise InvalidParameterError("Video.S3Object.Bucket must be 3-255 characters of [0-9A-Za-z.-_]")
        if not isinstance(name, str) or not 1 <= len(name) <= 1024 or "\x00" in name:
            raise InvalidParameterError("Video.S3Object.Name must be 1-1024 characters")
        path = Path(os.path.normpath(root / bucket / name))  # lexical: symlinks a bucket holds are fine
        if not path.is_relative_to(root / bucket) or not path.is_file():
            raise InvalidS3ObjectError(f"unable to get object s3://{bucket}/{name}")
        return path

    return resolve


def _optional(value: Any, regex: re.Pattern, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise InvalidParameterError(f"{name} {value!r} does not match {regex.pattern}")
    return value


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= float(value) <= 100:
        raise InvalidParameterError(f"FaceMatchThreshold must be a number between 0 and 100, got {value!r}")
    return float(value)


def _max_results(value: Any) -> int:
    if value is None:
        return MAX_RESULTS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(f"MaxResults must be an integer >= 1, got {value!r}")
    return min(int(value), MAX_RESULTS)  # Rekognition returns at most 1000 results for larger values


def _notification(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("SNSTopicArn"), str):
        raise InvalidParameterError("NotificationChannel must have SNSTopicArn and RoleArn")
    if not SNS_ARN_RE.match(value["SNSTopicArn"]):
        raise InvalidParameterError("NotificationChannel.SNSTopicArn is not an SNS topic ARN")
    if not isinstance(value.get("RoleArn"), str) or not ROLE_ARN_RE.fullmatch(value["RoleArn"]):
        raise InvalidParameterError("NotificationChannel.RoleArn is not an IAM role ARN")
    return {"SNSTopicArn": value["SNSTopicArn"], "RoleArn": value["RoleArn"]}


def _token_scope(job_id: str, sort: str) -> str:
    """A NextToken is valid for one job and one sort order."""
    return f"{hashlib.sha256(job_id.encode()).hexdigest()[:16]}:{sort}"


class VideoJobs:
    """The four Rekognition Video face operations over one home folder (`$FACEPRINT_HOME` by default)."""

    def __init__(
        self,
        home: Path | str | None = None,
        resolver: VideoResolver | None = None,
        config: PipelineConfig | None = None,
        max_active_jobs: int | None = None,
    ) -> None:
        self.home = Path(home).expanduser() if home is not None else home_dir()
        self.store = JobStore(self.home)
        self.resolver = resolver or bucket_resolver(self.home)
        self.config = config
        self.max_active_jobs = max_active_jobs or int(
            os.environ.get("FACEPRINT_VIDEO_MAX_JOBS", DEFAULT_MAX_ACTIVE_JOBS)
        )
        self._tokens = PaginationTokens(self.store.token_key())
        self._worker: Worker | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start_worker(self) -> Worker:
        """Run jobs in a background thread of this process (the server's worker)."""
        if self._worker is None:
            self._worker = Worker(self.home, config=self.config, store=self.store)
        self._worker.start()
        return self._worker

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=5.0)
        self.store.close()

    def __enter__(self) -> VideoJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start ----------------------------------------------------------------------------------------

    def _source(self, video: Any) -> tuple[Path, dict | None]:
        """The local file of a Video member, and the member to echo in Get* responses."""
        if video is None:
            raise InvalidParameterError("Video is required")
        if isinstance(video, str | Path):
            path = Path(video).expanduser()
            if not path.is_file():
                raise InvalidS3ObjectError(f"video not found: {path.name}")
            return path.resolve(), None
        path = self.resolver(video)
        return path, {"S3Object": dict(video["S3Object"])}

    def _start(
        self,
        kind: str,
        video: Any,
        token: Any,
        tag: Any,
        params: dict,
    ) -> dict:
        token = audit.scoped_token(_optional(token, CLIENT_TOKEN_RE, "ClientRequestToken"))
        tag = _optional(tag, JOB_TAG_RE, "JobTag")
        path, echo = self._source(video)
        digest = hashlib.sha256(
            json.dumps(
                {"kind": kind, "video": echo or str(path), "tag": tag, **params}, sort_keys=True
            ).encode()
        ).hexdigest()
        if token is not None:  # a retry returns the job made the first time, without probing again
            earlier = self.store.find_token(kind, token)
            if earlier is not None:
                if earlier[1] != digest:
                    raise IdempotentParameterMismatchError(
                        "ClientRequestToken was already used with other parameters"
                    )
                return {"JobId": earlier[0]}
        info = probe(path)
        try:
            job_id, created = self.store.create(
                kind,
                str(path),
                {**params, "Requester": audit.current_caller().principal},
                echo,
                tag,
                token,
                digest,
                info.metadata(),
                max_active=self.max_active_jobs,
            )
        except KeyError:
            raise IdempotentParameterMismatchError(
                "ClientRequestToken was already used with other parameters"
            ) from None
        except OverflowError:
            raise LimitExceededError(
                f"{self.max_active_jobs} video jobs are already in progress; retry when one has finished"
            ) from None
        if created and self._worker is not None:
            self._worker.wake.set()
        return {"JobId": job_id}

    @audit.audited("StartFaceDetection")
    def start_face_detection(
        self,
        *,
        Video: Any,
        ClientRequestToken: str | None = None,
        NotificationChannel: dict | None = None,
        FaceAttributes: str | None = None,
        JobTag: str | None = None,
    ) -> dict:
        """StartFaceDetection: queue a face detection job on a stored video; returns {"JobId"}."""
        if FaceAttributes is not None and FaceAttributes not in ("DEFAULT", "ALL"):
            raise InvalidParameterError(f"FaceAttributes must be DEFAULT or ALL, got {FaceAttributes!r}")
        params = {
            "FaceAttributes": FaceAttributes or "DEFAULT",
            "NotificationChannel": _notification(NotificationChannel),
        }
        return self._start(FACE_DETECTION, Video, ClientRequestToken, JobTag, params)

    @audit.audited("StartFaceSearch", threshold="FaceMatchThreshold")
    def start_face_search(
        self,
        *,
        Video: Any,
        CollectionId: str,
        ClientRequestToken: str | None = None,
        FaceMatchThreshold: float | None = None,
        NotificationChannel: dict | None = None,
        JobTag: str | None = None,
    ) -> dict:
        """StartFaceSearch: queue a search of a collection for the faces in a stored video."""
        collection = _optional(CollectionId, COLLECTION_ID_RE, "CollectionId")
        if collection is None:
            raise InvalidParameterError("CollectionId is required")
        self._check_collection(collection)
        params = {
            "CollectionId": collection,
            "FaceMatchThreshold": _threshold(FaceMatchThreshold),
            "NotificationChannel": _notification(NotificationChannel),
        }
        return self._start(FACE_SEARCH, Video, ClientRequestToken, JobTag, params)

    def _check_collection(self, collection_id: str) -> None:
        from faceprint.collections.service import Collections

        with Collections(self.home) as collections:
            collections.describe_collection(CollectionId=collection_id)  # ResourceNotFoundError if absent

    # -- get ------------------------------------------------------------------------------------------

    def _job(self, job_id: Any, kind: str) -> Job:
        if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
            raise InvalidParameterError("JobId must be 1-64 characters of [a-zA-Z0-9-_]")
        job = self.store.get(job_id)
        if job is None or job.kind != kind:
            raise ResourceNotFoundError(f"no {kind} job {job_id}")
        return job

    @staticmethod
    def _envelope(job: Job) -> dict:
        out: dict[str, Any] = {"JobStatus": job.status}
        if job.status_message:
            out["StatusMessage"] = job.status_message
        if job.status == SUCCEEDED and job.metadata:
            out["VideoMetadata"] = job.metadata
        out["JobId"] = job.job_id
        if job.video is not None:
            out["Video"] = job.video
        if job.job_tag is not None:
            out["JobTag"] = job.job_tag
        return out

    @audit.audited("GetFaceDetection", matches="Faces")
    def get_face_detection(
        self, *, JobId: str, MaxResults: int | None = None, NextToken: str | None = None
    ) -> dict:
        """GetFaceDetection: status, and when SUCCEEDED, the faces by time, paginated."""
        job = self._job(JobId, FACE_DETECTION)
        limit = _max_results(MaxResults)
        offset = self._tokens.parse(NextToken, _token_scope(job.job_id, "F"))
        out = self._envelope(job)
        if job.status != SUCCEEDED:
            return out
        rows = self.store.faces_page(job.job_id, offset, limit + 1)
        out["Faces"] = [{"Timestamp": ts, "Face": detail} for ts, detail in rows[:limit]]
        if len(rows) > limit:
            out["NextToken"] = self._tokens.make(_token_scope(job.job_id, "F"), offset + limit)
        return out

    @audit.audited("GetFaceSearch", matches="Persons")
    def get_face_search(
        self,
        *,
        JobId: str,
        MaxResults: int | None = None,
        NextToken: str | None = None,
        SortBy: str | None = None,
    ) -> dict:
        """GetFaceSearch: status, and when SUCCEEDED, every tracked person at every sampled time with the
        collection's FaceMatches for that person (empty when none), sorted by TIMESTAMP or INDEX."""
        if SortBy is not None and SortBy not in ("INDEX", "TIMESTAMP"):
            raise InvalidParameterError(f"SortBy must be INDEX or TIMESTAMP, got {SortBy!r}")
        job = self._job(JobId, FACE_SEARCH)
        sort = SortBy or "TIMESTAMP"
        limit = _max_results(MaxResults)
        offset = self._tokens.parse(NextToken, _token_scope(job.job_id, sort[0]))
        out = self._envelope(job)
        if job.status != SUCCEEDED:
            return out
        rows = self.store.persons_page(job.job_id, offset, limit + 1, by_index=sort == "INDEX")
        page = rows[:limit]
        matches = self.store.person_matches(job.job_id, [index for _, index, _ in page])
        out["Persons"] = [
            {
                "Timestamp": ts,
                "Person": {"Index": index, "BoundingBox": detail["BoundingBox"], "Face": detail},
                "FaceMatches": matches.get(index, []),
            }
            for ts, index, detail in page
        ]
        if len(rows) > limit:
            out["NextToken"] = self._tokens.make(_token_scope(job.job_id, sort[0]), offset + limit)
        return out

    def job_collections(self, job_id: str) -> list[str]:
        """What a caller needs the policy of to read a job: the job's collection (a search); for a job
        another caller started without a collection (a detection), every collection ("*")."""
        job = self.store.get(job_id)
        if job is None:
            return []
        collection = job.params.get("CollectionId")
        if collection:
            return [collection]
        requester = job.params.get("Requester")
        return [] if requester in (None, audit.current_caller().principal) else ["*"]

    # -- helpers for the command line -----------------------------------------------------------------

    def job(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def is_running(self, job_id: str) -> bool:
        job = self.store.get(job_id)
        return job is not None and job.status == IN_PROGRESS
