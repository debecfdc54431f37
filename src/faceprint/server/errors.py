"""Errors that only the HTTP layer raises: authentication and protocol failures, as AWS names them.

They are not in Rekognition's model, so botocore raises a plain `ClientError` with these codes, exactly
as it does against AWS. All are HTTP 400 except ThrottlingException (a `fault`, so 5xx and retried).
"""

from __future__ import annotations

from faceprint.errors import FaceprintError


class MissingAuthenticationTokenError(FaceprintError):
    code = "MissingAuthenticationTokenException"
    status = 400


class IncompleteSignatureError(FaceprintError):
    code = "IncompleteSignatureException"
    status = 400


class InvalidSignatureError(FaceprintError):
    code = "InvalidSignatureException"
    status = 400


class UnrecognizedClientError(FaceprintError):
    code = "UnrecognizedClientException"
    status = 400


class UnknownOperationError(FaceprintError):
    code = "UnknownOperationException"
    status = 400


class SerializationError(FaceprintError):
    code = "SerializationException"
    status = 400


class ThrottlingError(FaceprintError):
    code = "ThrottlingException"
    status = 503


class RequestTimeoutError(FaceprintError):
    """The request body did not arrive in time (or the client went away while sending it)."""

    code = "RequestTimeoutException"
    status = 408
