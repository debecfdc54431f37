"""The REST endpoints the web console uses, beyond search and index (`rest.py`).

Each answers the Rekognition response of the operation it runs (PascalCase members, as the AWS endpoint
and the CLI's `--json` do), plus faceprint's own members where noted; errors are `rest.error_response`.
Every endpoint authenticates before it reads the body's content; the ones that touch faces run through the
dispatcher, so they are authorised by the key's policy and audited like the AWS operations.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from faceprint import audit
from faceprint import similarity as sim
from faceprint.errors import AccessDeniedError, FaceprintError, InvalidParameterError, ResourceNotFoundError
from faceprint.files import write_atomically
from faceprint.server import rest
from faceprint.server.dispatch import ACCOUNT, Identity
from faceprint.server.handlers import COLLECTIONS_SERVICE, VIDEO_SERVICE
from faceprint.server.runtime import Server, modeled
from faceprint.server.sigv4 import SignedRequest

Work = Callable[[SignedRequest, Identity, str], Any]
UPLOAD_BUCKET = "console-uploads"  # videos uploaded through the console: $FACEPRINT_HOME/buckets/<this>/
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
AUDIT_PAGE_MAX = 1000
CURVE_STEP = 0.5  # Similarity step of the calibration curve's points


def json_body(req: SignedRequest) -> dict[str, Any]:
    """The request's JSON object (an empty body is {})."""
    if not req.body.strip():
        return {}
    try:
        value = json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidParameterError("the body must be a JSON object")
    return value


def query(req: SignedRequest) -> dict[str, str]:
    return dict(parse_qsl(req.query_string))


def _check_action(identity: Identity, action: str) -> None:
    """Authorise a faceprint action that is not a Rekognition operation (e.g. `GetAuditLog`)."""
    if not identity.policy.allows_action(action):
        raise AccessDeniedError(
            f"User: arn:aws:iam::{ACCOUNT}:user/{identity.name} is not authorized to perform: "
            f"faceprint:{action} because no identity-based policy allows the {action} action"
        )


def _page(fields: dict[str, str], params: dict[str, Any], max_results: int | None = None) -> dict[str, Any]:
    if fields.get("next_token"):
        params["NextToken"] = fields["next_token"]
    value = rest.number(fields, "max_results", int)
    if value is not None or max_results is not None:
        params["MaxResults"] = value if value is not None else max_results
    return params


def _threshold(fields: dict[str, Any], name: str, member: str, params: dict[str, Any]) -> dict[str, Any]:
    value = fields.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        params[member] = float(value)
    elif isinstance(value, str) and value.strip():
        params[member] = rest.number(fields, name, float)
    return params


def _record(rec: Any) -> dict[str, Any]:
    out = rec.as_dict()
    if isinstance(out.get("detail"), str):
        with contextlib.suppress(ValueError):
            out["detail"] = json.loads(out["detail"])
    return out


_FIGURE = re.compile(r'<img src="([^"/\\]+\.(png|svg|jpg))"')
_FIGURE_TYPES = {"png": "image/png", "svg": "image/svg+xml", "jpg": "image/jpeg"}


def inline_figures(report: Path) -> str:
    """The report's HTML with the figures beside it inlined as data: URIs, so that the console can open
    it as one self-contained document (a fetched page cannot fetch its own images with the session)."""
    html = report.read_text(encoding="utf-8", errors="replace")

    def inline(match: re.Match[str]) -> str:
        figure = report.parent / match.group(1)
        if not figure.is_file():
            return match.group(0)
        data = base64.b64encode(figure.read_bytes()).decode()
        return f'<img src="data:{_FIGURE_TYPES[match.group(2)]};base64,{data}"'

    return _FIGURE.sub(inline, html)


def routes(server: Server) -> list[Route]:
    """The console's REST routes, bound to this process's server."""
    dispatcher = server.dispatcher
    home = Path(server.settings.home)

    async def handle(request: Request, label: str, work: Work, sessions: bool = True) -> Response:
        request_id = str(uuid.uuid4())
        start = time.perf_counter()
        try:
            async with server.authenticated(
                request, lambda req: rest.authenticate_headers(server, req, sessions), dispatcher.authenticate
            ) as (req, identity):
                result = await server.run(work, req, identity, request_id)
            response: Response = (
                result
                if isinstance(result, Response)
                else JSONResponse(result, headers={"x-request-id": request_id})
            )
            code = "OK"
        except Exception as exc:
            error = modeled(exc, request_id)
            response, code = rest.error_response(error, request_id), error.code
        server.metrics.observe("rest", label, code, time.perf_counter() - start)
        return response

    def operation(name: str, build: Callable[[SignedRequest, Request], dict[str, Any]]) -> Callable:
        async def endpoint(request: Request) -> Response:
            def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
                return dispatcher.invoke(name, build(req, request), identity, request_id, "rest")

            return await handle(request, name, work)

        return endpoint

    def cid(request: Request) -> str:
        return request.path_params["collection_id"]

    def _scorer_of(version: str | None) -> Any:
        """The scorer of the face model of FaceModelVersion `version` (a clear error if it is gone)."""
        from faceprint.models import model_for_version

        try:
            return model_for_version(str(version)).scorer()
        except ResourceNotFoundError as exc:
            raise InvalidParameterError(exc.message) from None

    # --- sessions ----------------------------------------------------------------------------------
    async def create_session(request: Request) -> Response:
        return await handle(
            request,
            "CreateSession",
            lambda req, identity, rid: dispatcher.create_session(identity, rid),
            sessions=False,
        )

    # --- collections -------------------------------------------------------------------------------
    async def describe_collection(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            params = {"CollectionId": cid(request)}
            out = dispatcher.invoke("DescribeCollection", params, identity, request_id, "rest")
            count = int(out.get("FaceCount") or 0)
            scorer = _scorer_of(out.get("FaceModelVersion"))
            threshold = scorer.default_search_threshold(count)
            fmr = scorer.false_match_rate(threshold)
            return {
                **out,
                "DefaultFaceMatchThreshold": threshold,
                "ExpectedFalseMatchesPerSearch": None if fmr is None else fmr * count,
                "TargetFalseMatchesPerSearch": sim.SEARCH_TARGET_FPIR,
                "Calibration": "calibrated" if scorer.calibrated else "uncalibrated",
            }

        return await handle(request, "DescribeCollection", work)

    def _create_params(req: SignedRequest, request: Request) -> dict[str, Any]:
        body = json_body(req)
        params: dict[str, Any] = {"CollectionId": body.get("CollectionId")}
        if body.get("Model") is not None:  # the collection's face model: the faceprint:model tag
            params["Tags"] = {"faceprint:model": body.get("Model")}
        return params

    create_collection = operation("CreateCollection", _create_params)
    delete_collection = operation("DeleteCollection", lambda req, request: {"CollectionId": cid(request)})

    async def list_faces(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            params = _page(query(req), {"CollectionId": cid(request)})
            out = dispatcher.invoke("ListFaces", params, identity, request_id, "rest")
            faces = out.get("Faces") or []
            if faces:  # faceprint's extra members: when each face was indexed, whether a chip was kept
                dates = collections().face_index_dates(
                    CollectionId=cid(request), FaceIds=[f["FaceId"] for f in faces]
                )
                out["Faces"] = [{**f, **dates.get(f["FaceId"], {})} for f in faces]
            return out

        return await handle(request, "ListFaces", work)

    async def face_chip(request: Request) -> Response:
        face_id = request.path_params["face_id"]

        def work(req: SignedRequest, identity: Identity, request_id: str) -> Response:
            params = {"CollectionId": cid(request), "FaceIds": [face_id], "MaxResults": 1}
            dispatcher.invoke("ListFaces", params, identity, request_id, "rest")  # authorises the key
            chip = collections().face_chip(CollectionId=cid(request), FaceId=face_id)
            caller = audit.Caller(identity.key_id, identity.client or "-", request_id, "rest")
            event = audit.event("GetFaceChip", caller, cid(request), None, None, "OK", {"face_id": face_id})
            dispatcher.audit.append(event)
            return Response(chip, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

        return await handle(request, "GetFaceChip", work)

    def collections() -> Any:
        return dispatcher.services.instance(COLLECTIONS_SERVICE, "ListFaces")

    delete_faces = operation(
        "DeleteFaces",
        lambda req, request: {"CollectionId": cid(request), "FaceIds": json_body(req).get("FaceIds")},
    )
    list_users = operation(
        "ListUsers", lambda req, request: _page(query(req), {"CollectionId": cid(request)})
    )
    create_user = operation(
        "CreateUser",
        lambda req, request: {"CollectionId": cid(request), "UserId": json_body(req).get("UserId")},
    )
    delete_user = operation(
        "DeleteUser",
        lambda req, request: {"CollectionId": cid(request), "UserId": request.path_params["user_id"]},
    )
    associate_faces = operation(
        "AssociateFaces",
        lambda req, request: {
            "CollectionId": cid(request),
            "UserId": request.path_params["user_id"],
            "FaceIds": json_body(req).get("FaceIds"),
        },
    )

    # --- search every face, compare ----------------------------------------------------------------
    async def search_every_face(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            data, fields = rest.image_and_fields(req)
            params: dict[str, Any] = {"CollectionId": cid(request), "Image": {"Bytes": data}}
            _threshold(fields, "threshold", "FaceMatchThreshold", params)
            max_faces = rest.number(fields, "max_faces", int)
            if max_faces is not None:
                params["MaxFaces"] = max_faces
            if fields.get("quality_filter"):
                params["QualityFilter"] = fields["quality_filter"]
            return dispatcher.search_every_face(params, identity, request_id)

        return await handle(request, "SearchFacesInImage", work)

    async def compare(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            files, fields = rest.form(req)
            missing = [name for name in ("source", "target") if name not in files]
            if missing:
                raise InvalidParameterError(f"multipart file field(s) {', '.join(missing)} required")
            params: dict[str, Any] = {
                "SourceImage": {"Bytes": files["source"]},
                "TargetImage": {"Bytes": files["target"]},
            }
            _threshold(fields, "threshold", "SimilarityThreshold", params)
            if fields.get("quality_filter"):
                params["QualityFilter"] = fields["quality_filter"]
            out = dispatcher.invoke("CompareFaces", params, identity, request_id, "rest")
            return {
                **out,
                "DefaultSimilarityThreshold": sim.default_compare_threshold(),
                "DefaultFalseMatchRate": sim.COMPARE_TARGET_FMR,
            }

        return await handle(request, "CompareFaces", work)

    # --- video -------------------------------------------------------------------------------------
    def _store_upload(name: str, data: bytes) -> dict[str, str]:
        suffix = Path(name).suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise InvalidParameterError(f"the video must be one of {', '.join(VIDEO_SUFFIXES)}")
        if not data:
            raise InvalidParameterError("the uploaded video is empty")
        folder = home / "buckets" / UPLOAD_BUCKET
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = f"{uuid.uuid4()}{suffix}"
        write_atomically(folder / key, lambda fh: fh.write(data))  # mode 0600
        return {"Bucket": UPLOAD_BUCKET, "Name": key}

    async def start_video_search(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            kind = (req.header("content-type") or "").split(";")[0].strip().lower()
            if kind != "multipart/form-data":
                body = json_body(req)
                params = {k: body[k] for k in ("CollectionId", "Video", "FaceMatchThreshold") if k in body}
                return dispatcher.invoke("StartFaceSearch", params, identity, request_id, "rest")
            files, fields = rest.form(req)
            collection = fields.get("collection_id") or ""
            _check_action(identity, "StartFaceSearch")  # before anything is written to disk
            if not identity.policy.allows_collection(collection):
                raise AccessDeniedError(
                    f"User: arn:aws:iam::{ACCOUNT}:user/{identity.name} is not authorized to perform: "
                    f"rekognition:StartFaceSearch on collection {collection}"
                )
            if "video" not in files:
                raise InvalidParameterError("multipart file field 'video' is required")
            params = {"CollectionId": collection}
            _threshold(fields, "threshold", "FaceMatchThreshold", params)
            s3_object = _store_upload(fields.get("filename") or "upload.mp4", files["video"])
            params["Video"] = {"S3Object": s3_object}
            try:
                return dispatcher.invoke("StartFaceSearch", params, identity, request_id, "rest")
            except FaceprintError:
                (home / "buckets" / UPLOAD_BUCKET / s3_object["Name"]).unlink(missing_ok=True)
                raise

        return await handle(request, "StartFaceSearch", work)

    async def get_video_search(request: Request) -> Response:
        job_id = request.path_params["job_id"]

        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            params = _page(query(req), {"JobId": job_id}, max_results=1000)
            out = dispatcher.invoke("GetFaceSearch", params, identity, request_id, "rest")
            job = dispatcher.services.instance(VIDEO_SERVICE, "GetFaceSearch").job(job_id)
            return {**out, "Progress": job.progress if job is not None else None}

        return await handle(request, "GetFaceSearch", work)

    # --- audit log, accuracy -----------------------------------------------------------------------
    async def audit_log(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            _check_action(identity, "GetAuditLog")
            fields = query(req)
            limit = rest.number(fields, "limit", int)
            limit = 200 if limit is None else limit
            if not 1 <= limit <= AUDIT_PAGE_MAX:
                raise InvalidParameterError(f"'limit' must be 1 to {AUDIT_PAGE_MAX}")
            since, until = fields.get("since") or None, fields.get("until") or None
            operations = {o for o in (fields.get("operation") or "").split(",") if o}
            records = [
                r
                for r in dispatcher.audit.records(since)
                if (until is None or r.time <= until) and (not operations or r.operation in operations)
            ]
            check = dispatcher.audit.verify()
            return {
                "Records": [_record(r) for r in reversed(records[-limit:])],
                "Matched": len(records),
                "Verification": {
                    "Ok": check.ok,
                    "Rows": check.rows,
                    "Head": check.head,
                    "BadSeq": check.bad_seq,
                    "Reason": check.reason,
                },
            }

        return await handle(request, "GetAuditLog", work)

    async def collection_calibration(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            params = {"CollectionId": cid(request)}
            described = dispatcher.invoke("DescribeCollection", params, identity, request_id, "rest")
            scorer = _scorer_of(described.get("FaceModelVersion"))
            table = scorer.table  # the collection's model's own table: never another model's
            count = int(described.get("FaceCount") or 0)
            common = {
                "CollectionId": cid(request),
                "FaceModelVersion": described.get("FaceModelVersion"),
                "DefaultCompareThreshold": scorer.default_compare_threshold(),
                "DefaultFaceMatchThreshold": scorer.default_search_threshold(count),
                "FaceCount": count,
            }
            if table is None:
                return {
                    **common,
                    "Calibration": "uncalibrated",
                    "CalibrationModelVersion": None,
                    "Points": [],
                    "Note": "this collection's face model is not calibrated: false match rates unknown",
                }
            steps = int(100 / CURVE_STEP)
            points = [
                {
                    "Similarity": s,
                    "FalseMatchRate": table.false_match_rate(s),
                    "FalseNonMatchRate": table.false_non_match_rate(s),
                }
                for s in (i * CURVE_STEP for i in range(steps + 1))
            ]
            return {
                **common,
                "Calibration": "calibrated",
                "CalibrationModelVersion": table.model_version,
                "Dataset": table.provenance.get("dataset"),
                "TailFrom": table.tail_from,
                "Points": points,
            }

        return await handle(request, "GetCalibration", work)

    def _report() -> Path:
        return home / "reports" / "audit.html"

    async def reports(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> dict[str, Any]:
            path = _report()
            if not path.is_file():
                return {"AuditReport": None}
            return {"AuditReport": {"Url": "/v1/reports/audit.html", "Modified": os.path.getmtime(path)}}

        return await handle(request, "ListReports", work)

    async def audit_report(request: Request) -> Response:
        def work(req: SignedRequest, identity: Identity, request_id: str) -> Response:
            path = _report()
            if not path.is_file():
                raise ResourceNotFoundError("no `faceprint audit` report under the home folder (reports/)")
            return HTMLResponse(inline_figures(path), headers={"Cache-Control": "no-store"})

        return await handle(request, "GetReport", work)

    prefix = "/v1/collections/{collection_id}"
    return [
        Route("/v1/sessions", create_session, methods=["POST"]),
        Route("/v1/collections", create_collection, methods=["POST"]),
        Route(prefix, describe_collection, methods=["GET"]),
        Route(prefix, delete_collection, methods=["DELETE"]),
        Route(f"{prefix}/faces", list_faces, methods=["GET"]),
        Route(f"{prefix}/faces", delete_faces, methods=["DELETE"]),
        Route(prefix + "/faces/{face_id}/chip", face_chip, methods=["GET"]),
        Route(f"{prefix}/users", list_users, methods=["GET"]),
        Route(f"{prefix}/users", create_user, methods=["POST"]),
        Route(prefix + "/users/{user_id}", delete_user, methods=["DELETE"]),
        Route(prefix + "/users/{user_id}/faces", associate_faces, methods=["POST"]),
        Route(f"{prefix}/search-faces", search_every_face, methods=["POST"]),
        Route(f"{prefix}/calibration", collection_calibration, methods=["GET"]),
        Route("/v1/compare", compare, methods=["POST"]),
        Route("/v1/video-searches", start_video_search, methods=["POST"]),
        Route("/v1/video-searches/{job_id}", get_video_search, methods=["GET"]),
        Route("/v1/audit-log", audit_log, methods=["GET"]),
        Route("/v1/reports", reports, methods=["GET"]),
        Route("/v1/reports/audit.html", audit_report, methods=["GET"]),
    ]


# --- OpenAPI (merged into rest.OPENAPI, so /openapi.json and /docs list these too) -------------------------
def _doc(summary: str, description: str, *params: str) -> dict[str, Any]:
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    return {
        "summary": summary,
        "description": description,
        "parameters": parameters,
        "responses": {"200": {"description": "The operation's Rekognition response"}, **rest.ERRORS},
    }


_C = "/v1/collections/{collection_id}"
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/v1/sessions": {
        "post": _doc(
            "Start a console session",
            "Basic or SigV4 only; returns SessionToken (send as `Authorization: Bearer`) and Expiration. "
            "An expired token answers 401 ExpiredTokenException.",
        )
    },
    "/v1/collections": {"post": _doc("Create a collection", 'CreateCollection; JSON {"CollectionId"}')},
    _C: {
        "get": _doc(
            "Describe a collection",
            "DescribeCollection + DefaultFaceMatchThreshold and ExpectedFalseMatchesPerSearch",
            "collection_id",
        ),
        "delete": _doc("Delete a collection", "DeleteCollection", "collection_id"),
    },
    f"{_C}/faces": {
        "get": _doc(
            "List faces", "ListFaces (max_results, next_token) + IndexedAt, HasChip", "collection_id"
        ),
        "delete": _doc("Delete faces", 'DeleteFaces; JSON {"FaceIds": [...]}', "collection_id"),
    },
    _C + "/faces/{face_id}/chip": {
        "get": _doc("A face's kept chip (JPEG)", "Audited as GetFaceChip", "collection_id", "face_id")
    },
    f"{_C}/users": {
        "get": _doc("List users", "ListUsers", "collection_id"),
        "post": _doc("Create a user", 'CreateUser; JSON {"UserId"}', "collection_id"),
    },
    _C + "/users/{user_id}": {"delete": _doc("Delete a user", "DeleteUser", "collection_id", "user_id")},
    _C + "/users/{user_id}/faces": {
        "post": _doc("Associate faces", 'AssociateFaces; JSON {"FaceIds"}', "collection_id", "user_id")
    },
    f"{_C}/search-faces": {
        "post": _doc(
            "Search every face of an image",
            "Multipart image (+ threshold, max_faces, quality_filter); one SearchFacesByImage audit record "
            "per face",
            "collection_id",
        )
    },
    f"{_C}/calibration": {
        "get": _doc(
            "Calibration curve", "FMR and FNMR by Similarity for the collection's model", "collection_id"
        )
    },
    "/v1/compare": {
        "post": _doc("Compare two photos", "CompareFaces; multipart source, target (+ threshold)")
    },
    "/v1/video-searches": {
        "post": _doc(
            "Start a video face search", "StartFaceSearch: JSON with an S3Object, or a multipart upload"
        )
    },
    "/v1/video-searches/{job_id}": {
        "get": _doc("Video face search status and results", "GetFaceSearch + Progress", "job_id")
    },
    "/v1/audit-log": {
        "get": _doc("The audit log", "since, until, operation, limit; with the chain's verification status")
    },
    "/v1/reports": {
        "get": _doc("Reports under the home folder", "The last `faceprint audit` report, if any")
    },
    "/v1/reports/audit.html": {"get": _doc("The last audit report", "HTML")},
}
for _path, _methods in OPENAPI_PATHS.items():
    rest.OPENAPI["paths"].setdefault(_path, {}).update(_methods)
