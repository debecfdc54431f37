"""The request pipeline both APIs share: authenticate, authorise, validate, run, audit, count.

Everything here is synchronous and runs in the server's worker threads, never on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

from faceprint.audit import AuditEvent, AuditLog
from faceprint.errors import AccessDeniedError, FaceprintError, InternalServerError
from faceprint.files import private_dir
from faceprint.server import schema, sigv4
from faceprint.server.errors import (
    MissingAuthenticationTokenError,
    UnknownOperationError,
    UnrecognizedClientError,
)
from faceprint.server.handlers import REGISTRY, Operation, RequestContext, Services
from faceprint.server.keys import KeyStore, Policy
from faceprint.server.metrics import Metrics
from faceprint.server.s3 import LocalBuckets
from faceprint.server.settings import ServerSettings

log = logging.getLogger("faceprint.server")
ACCOUNT = "000000000000"


@dataclass(frozen=True)
class Identity:
    """Who is calling: a verified key, or anonymous when authentication is off."""

    key_id: str | None
    name: str
    policy: Policy
    region: str = "us-east-1"


ANONYMOUS = Identity(None, "anonymous", Policy())


class Dispatcher:
    """One per server process."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        private_dir(settings.home)  # collections, keys, audit log, video results: owner only
        self.keys = KeyStore(settings.home)
        self.audit = AuditLog.for_home(settings.home)
        self.metrics = Metrics()
        self.services = Services(settings.home, LocalBuckets.for_home(settings.home))

    def close(self) -> None:
        self.services.close()
        self.audit.close()

    # --- authentication ---------------------------------------------------------------------------
    def authenticate(self, req: sigv4.SignedRequest, payload_hash: str | None = None) -> Identity:
        """SigV4 (HTTP Basic `AccessKeyId:SecretAccessKey` is `authenticate_basic`, REST API only).

        With `payload_hash` (the declared `x-amz-content-sha256`) only the headers are verified; the caller
        checks the body against the hash once it has arrived."""
        if not self.settings.auth:
            return ANONYMOUS
        auth = sigv4.verify(req, self.keys.secret_for, payload_hash=payload_hash)
        key = self.keys.get(auth.access_key)
        if key is None:  # revoked between the two reads
            raise UnrecognizedClientError("The security token included in the request is invalid.")
        return Identity(key.access_key_id, key.name, key.policy, auth.region)

    def authenticate_headers(self, req: sigv4.SignedRequest) -> Identity | None:
        """The caller, from the headers alone when they suffice (authentication off, or SigV4 over a
        declared payload hash); None when the signature covers a body that has not been read yet."""
        if not self.settings.auth:
            return ANONYMOUS
        declared = sigv4.declared_payload_hash(req)
        return None if declared is None else self.authenticate(req, declared)

    def authenticate_basic(self, header: str) -> Identity:
        """Check `Authorization: Basic base64(AccessKeyId:SecretAccessKey)`."""
        if not self.settings.auth:
            return ANONYMOUS
        try:
            key_id, _, secret = (
                base64.b64decode(header.split(" ", 1)[1], validate=True).decode().partition(":")
            )
        except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
            raise MissingAuthenticationTokenError("Malformed Basic authorization header") from None
        key = self.keys.check_secret(key_id, secret)
        if key is None:
            raise UnrecognizedClientError("The security token included in the request is invalid.")
        return Identity(key.access_key_id, key.name, key.policy)

    # --- operations -------------------------------------------------------------------------------
    def invoke(
        self, name: str, params: dict[str, Any], identity: Identity, request_id: str, via: str = "aws"
    ) -> dict[str, Any]:
        """Run one operation for `identity`; raises a FaceprintError with the wire code on failure."""
        op = REGISTRY.get(name)
        if op is None:
            raise UnknownOperationError(f"Unknown operation {name}")
        collection = params.get("CollectionId") if isinstance(params.get("CollectionId"), str) else None
        threshold = None
        try:
            self._authorize(op, identity, collection)
            valid = schema.validate(name, params)
            if op.threshold:
                threshold = valid.get(op.threshold)
            ctx = RequestContext(request_id, self.services, identity.key_id, identity.region)
            try:
                result = op.handler(valid, ctx)
            except FaceprintError:
                raise
            except Exception as exc:
                log.exception("request %s: %s failed", request_id, name)
                raise InternalServerError(
                    f"Internal server error (request {request_id}): {type(exc).__name__}"
                ) from exc
            result = self._restrict(op, identity, result or {})
        except FaceprintError as exc:
            if op.audit or isinstance(exc, AccessDeniedError):
                self._audit(op, identity, request_id, collection, threshold, None, exc.code, via)
            raise
        if op.audit:
            matches = len(result.get(op.matches) or []) if op.matches else None
            if op.threshold and threshold is None:  # the core's (calibrated) default, if it reports it
                threshold = result.get(op.threshold)
            self._audit(op, identity, request_id, collection, threshold, matches, "OK", via, valid, result)
        if name == "IndexFaces":
            self.metrics.add_faces_indexed(len(result.get("FaceRecords") or []))
        return result

    def _authorize(self, op: Operation, identity: Identity, collection: str | None) -> None:
        policy = identity.policy
        resource = "*"
        if op.collection_scoped and collection is not None:
            resource = f"arn:aws:rekognition:{identity.region}:{ACCOUNT}:collection/{collection}"
        allowed = policy.allows_action(op.name) and (
            not op.collection_scoped or collection is None or policy.allows_collection(collection)
        )
        if not allowed:
            raise AccessDeniedError(
                f"User: arn:aws:iam::{ACCOUNT}:user/{identity.name} is not authorized to perform: "
                f"rekognition:{op.name} on resource: {resource} because no identity-based policy allows "
                f"the rekognition:{op.name} action"
            )

    @staticmethod
    def _restrict(op: Operation, identity: Identity, result: dict[str, Any]) -> dict[str, Any]:
        """ListCollections shows a key only the collections its policy allows."""
        if op.name != "ListCollections" or identity.policy.collections == ("*",):
            return result
        ids = result.get("CollectionIds") or []
        versions = result.get("FaceModelVersions") or [None] * len(ids)
        kept = [(c, v) for c, v in zip(ids, versions, strict=False) if identity.policy.allows_collection(c)]
        out = dict(result)
        out["CollectionIds"] = [c for c, _ in kept]
        if "FaceModelVersions" in result:
            out["FaceModelVersions"] = [v for _, v in kept]
        return out

    def _audit(
        self,
        op: Operation,
        identity: Identity,
        request_id: str,
        collection: str | None,
        threshold: float | None,
        matches: int | None,
        outcome: str,
        via: str,
        params: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        detail: dict[str, Any] = {"via": via}
        if params and result is not None:
            detail.update(_audit_detail(op.name, params, result))
        self.audit.append(
            AuditEvent(
                operation=op.name,
                key_id=identity.key_id,
                collection=collection,
                threshold=threshold,
                matches=matches,
                request_id=request_id,
                outcome=outcome,
                detail=detail,
            )
        )


def _audit_detail(name: str, params: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The ids an auditor needs to follow up (matched and changed faces and users, at most 100 each)."""
    detail: dict[str, Any] = {}
    if name in ("SearchFaces", "SearchFacesByImage"):
        detail["face_ids"] = [m.get("Face", {}).get("FaceId") for m in result.get("FaceMatches") or []][:100]
    elif name in ("SearchUsers", "SearchUsersByImage"):
        detail["user_ids"] = [m.get("User", {}).get("UserId") for m in result.get("UserMatches") or []][:100]
    elif name == "IndexFaces":
        detail["face_ids"] = [r.get("Face", {}).get("FaceId") for r in result.get("FaceRecords") or []][:100]
        if "ExternalImageId" in params:
            detail["external_image_id"] = params["ExternalImageId"]
    elif name == "DeleteFaces":
        detail["face_ids"] = list(result.get("DeletedFaces") or [])[:100]
    threshold_member = REGISTRY[name].threshold
    if threshold_member and threshold_member not in params and threshold_member not in result:
        detail["threshold"] = "default"
    for member in ("UserId", "FaceId"):
        if isinstance(params.get(member), str):
            detail[member.lower().replace("id", "_id")] = params[member]
    return detail
