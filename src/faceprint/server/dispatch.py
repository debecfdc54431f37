"""The request pipeline both APIs share: authenticate, authorise, validate, run, audit, count.

Everything here is synchronous and runs in the server's worker threads, never on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from faceprint import audit
from faceprint.errors import AccessDeniedError, FaceprintError, InternalServerError
from faceprint.files import private_dir
from faceprint.server import schema, sessions, sigv4
from faceprint.server.errors import (
    MissingAuthenticationTokenError,
    UnknownOperationError,
    UnrecognizedClientError,
)
from faceprint.server.handlers import (
    COLLECTIONS_SERVICE,
    REGISTRY,
    STREAMS_SERVICE,
    Operation,
    RequestContext,
    Services,
)
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
    client: str | None = None  # the peer's address


ANONYMOUS = Identity(None, "anonymous", Policy())
KINESIS_TARGET_PREFIX = "Kinesis_20131202."  # the Kinesis read API of stream processor output


def signing_name(req: sigv4.SignedRequest) -> str:
    """The SigV4 service a request is signed for: `kinesis` for the Kinesis read API (its X-Amz-Target,
    which the signature covers, says so), else `rekognition`."""
    target = req.header("x-amz-target") or ""
    return "kinesis" if target.startswith(KINESIS_TARGET_PREFIX) else sigv4.SERVICE


class Dispatcher:
    """One per server process."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        private_dir(settings.home)  # collections, keys, audit log, video results: owner only
        self.keys = KeyStore(settings.home)
        self.audit = audit.log_for(settings.home)
        self.metrics = Metrics()
        self.services = Services(settings.home, LocalBuckets.for_home(settings.home))

    def close(self) -> None:
        self.services.close()

    # --- authentication ---------------------------------------------------------------------------
    def authenticate(
        self, req: sigv4.SignedRequest, payload_hash: str | None = None, request_id: str | None = None
    ) -> Identity:
        """SigV4 (HTTP Basic `AccessKeyId:SecretAccessKey` is `authenticate_basic`, REST API only).

        With `payload_hash` (the declared `x-amz-content-sha256`) only the headers are verified; the caller
        checks the body against the hash once it has arrived. A refused request is audited with its error
        code, before any other work."""
        if not self.settings.auth:
            return dataclasses.replace(ANONYMOUS, client=req.client)
        try:
            auth = sigv4.verify(
                req, self.keys.secret_for, service=signing_name(req), payload_hash=payload_hash
            )
            key = self.keys.get(auth.access_key)
            if key is None:  # revoked between the two reads
                raise UnrecognizedClientError("The security token included in the request is invalid.")
        except FaceprintError as exc:
            self.refused(req, exc, request_id)
            raise
        return Identity(key.access_key_id, key.name, key.policy, auth.region, req.client)

    def authenticate_headers(self, req: sigv4.SignedRequest) -> Identity | None:
        """The caller, from the headers alone when they suffice (authentication off, or SigV4 over a
        declared payload hash); None when the signature covers a body that has not been read yet."""
        if not self.settings.auth:
            return dataclasses.replace(ANONYMOUS, client=req.client)
        declared = sigv4.declared_payload_hash(req)
        return None if declared is None else self.authenticate(req, declared)

    def authenticate_basic(
        self,
        header: str,
        req: sigv4.SignedRequest | None = None,
        request_id: str | None = None,
        operation: str | None = None,
    ) -> Identity:
        """Check `Authorization: Basic base64(AccessKeyId:SecretAccessKey)`."""
        client = req.client if req is not None else None
        if not self.settings.auth:
            return dataclasses.replace(ANONYMOUS, client=client)
        key_id = None
        try:
            try:
                key_id, _, secret = (
                    base64.b64decode(header.split(" ", 1)[1], validate=True).decode().partition(":")
                )
            except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
                raise MissingAuthenticationTokenError("Malformed Basic authorization header") from None
            key = self.keys.check_secret(key_id, secret)
            if key is None:
                raise UnrecognizedClientError("The security token included in the request is invalid.")
        except FaceprintError as exc:
            self.refused(req, exc, request_id, operation, claimed=key_id)
            raise
        return Identity(key.access_key_id, key.name, key.policy, client=client)

    def refused(
        self,
        req: sigv4.SignedRequest | None,
        exc: FaceprintError,
        request_id: str | None = None,
        operation: str | None = None,
        claimed: str | None = None,
    ) -> None:
        """Audit a request that failed authentication: the key id it claimed, its address, the code."""
        if req is not None and claimed is None:
            claimed = _claimed_key(req)
        if operation is None and req is not None:
            target = req.header("x-amz-target") or ""
            operation = target.rpartition(".")[2] if target else f"{req.method} {req.raw_path}"
        caller = audit.Caller(claimed, (req.client if req else None) or "-", request_id, "auth")
        with audit.calling_as(caller):
            audit.record_refusal(self.settings.home, operation or "-", exc.code)

    def authenticate_bearer(self, header: str, req: sigv4.SignedRequest | None = None) -> Identity:
        """Check `Authorization: Bearer <SessionToken>` (a console session, see `sessions.py`)."""
        client = req.client if req is not None else None
        if not self.settings.auth:
            return dataclasses.replace(ANONYMOUS, client=client)
        key_id = None
        try:
            session = sessions.verify(
                self._session_secret(), header.split(" ", 1)[1] if " " in header else ""
            )
            key_id = session.key_id
            key = self.keys.get(session.key_id)
            if key is None:  # revoked since the session began
                raise UnrecognizedClientError("The security token included in the request is invalid.")
        except FaceprintError as exc:
            self.refused(req, exc, claimed=key_id)
            raise
        return Identity(key.access_key_id, key.name, key.policy, client=client)

    def create_session(self, identity: Identity, request_id: str) -> dict[str, Any]:
        """A session token for an identity authenticated by its key (audited as `CreateSession`)."""
        key_id = identity.key_id or "anonymous"
        session = sessions.issue(self._session_secret(), key_id, self.settings.session_ttl)
        caller = audit.Caller(identity.key_id, identity.client or "-", request_id, "rest")
        self.audit.append(audit.event("CreateSession", caller, None, None, None, "OK"))
        return {"SessionToken": session.token, "Expiration": session.expiration}

    def _session_secret(self) -> bytes:
        return self.keys.derived_secret("session")

    # --- operations -------------------------------------------------------------------------------
    def invoke(
        self, name: str, params: dict[str, Any], identity: Identity, request_id: str, via: str = "aws"
    ) -> dict[str, Any]:
        """Run one operation for `identity`; raises a FaceprintError with the wire code on failure.

        Exactly one audit row per request: the core writes it when the operation reaches the core;
        a request refused before (unknown operation, policy, validation) is recorded here."""
        caller = audit.Caller(identity.key_id, identity.client or "-", request_id, via)
        collection = audit.collection_of(params) if isinstance(params, dict) else None
        collection = collection if isinstance(collection, str) else None
        with audit.calling_as(caller):
            try:
                result = self._invoke(name, params, identity, request_id, collection)
            except FaceprintError as exc:
                if not caller.recorded:
                    audit.record_refusal(self.settings.home, name, exc.code, collection)
                raise
            if not caller.recorded:
                audit.record_refusal(self.settings.home, name, "OK", collection)
        return result

    def _invoke(
        self,
        name: str,
        params: dict[str, Any],
        identity: Identity,
        request_id: str,
        collection: str | None,
    ) -> dict[str, Any]:
        op = REGISTRY.get(name)
        if op is None:
            raise UnknownOperationError(f"Unknown operation {name}")
        self._authorize(op, identity, collection)
        valid = schema.validate(name, params)
        if op.resource_collections is not None:  # e.g. a video job's collection
            for other in op.resource_collections(valid, self.services):
                self._authorize(op, identity, other, scoped=True)
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
        result = self._restrict(op, identity, result or {}, self.services)
        if name == "IndexFaces":
            self.metrics.add_faces_indexed(len(result.get("FaceRecords") or []))
        return result

    def search_every_face(
        self, params: dict[str, Any], identity: Identity, request_id: str, via: str = "rest"
    ) -> dict[str, Any]:
        """SearchFacesByImage for every face of the image in one request, audited as one search per face.

        Authorised and validated as SearchFacesByImage; the core's `search_faces_in_image` does the work
        (one decode and detection, one embedding per face that passes the quality filter) and writes one
        SearchFacesByImage audit row per face. A request refused before the core is recorded here.
        """
        op = REGISTRY["SearchFacesByImage"]
        collection = params.get("CollectionId") if isinstance(params.get("CollectionId"), str) else None
        caller = audit.Caller(identity.key_id, identity.client or "-", request_id, via)
        with audit.calling_as(caller):
            try:
                self._authorize(op, identity, collection)
                valid = schema.validate(op.name, params)
                service = self.services.instance(COLLECTIONS_SERVICE, op.name)
                try:
                    return service.search_faces_in_image(
                        **{**valid, "Image": self.services.image(valid["Image"])}
                    )
                except FaceprintError:
                    raise
                except Exception as exc:
                    log.exception("request %s: search of every face failed", request_id)
                    raise InternalServerError(
                        f"Internal server error (request {request_id}): {type(exc).__name__}"
                    ) from exc
            except FaceprintError as exc:
                if not caller.recorded:
                    audit.record_refusal(self.settings.home, op.name, exc.code, collection)
                raise

    def _authorize(
        self, op: Operation, identity: Identity, collection: str | None, scoped: bool | None = None
    ) -> None:
        policy = identity.policy
        scoped = op.collection_scoped if scoped is None else scoped
        resource = "*"
        if scoped and collection is not None:
            resource = f"arn:aws:rekognition:{identity.region}:{ACCOUNT}:collection/{collection}"
        allowed = policy.allows_action(op.name) and (
            not scoped or collection is None or policy.allows_collection(collection)
        )
        if not allowed:
            raise AccessDeniedError(
                f"User: arn:aws:iam::{ACCOUNT}:user/{identity.name} is not authorized to perform: "
                f"rekognition:{op.name} on resource: {resource} because no identity-based policy allows "
                f"the rekognition:{op.name} action"
            )

    @staticmethod
    def _restrict(
        op: Operation, identity: Identity, result: dict[str, Any], services: Services
    ) -> dict[str, Any]:
        """ListCollections and ListStreamProcessors show a key only the collections (and processors of
        collections) its policy allows."""
        if identity.policy.collections == ("*",) or op.name not in (
            "ListCollections",
            "ListStreamProcessors",
        ):
            return result
        if op.name == "ListStreamProcessors":
            owners = services.instance(STREAMS_SERVICE, op.name).list_collections_of_processors()
            out = dict(result)
            out["StreamProcessors"] = [
                p
                for p in result.get("StreamProcessors") or []
                if identity.policy.allows_collection(owners.get(p["Name"], ""))
            ]
            return out
        ids = result.get("CollectionIds") or []
        versions = result.get("FaceModelVersions") or [None] * len(ids)
        kept = [(c, v) for c, v in zip(ids, versions, strict=False) if identity.policy.allows_collection(c)]
        out = dict(result)
        out["CollectionIds"] = [c for c, _ in kept]
        if "FaceModelVersions" in result:
            out["FaceModelVersions"] = [v for _, v in kept]
        return out


def _claimed_key(req: sigv4.SignedRequest) -> str | None:
    """The access key id a request claims (unverified), for the audit row of a refused request."""
    header = req.header("authorization") or ""
    try:
        return sigv4.parse_authorization(header).access_key if header.startswith(sigv4.ALGORITHM) else None
    except FaceprintError:
        return None
