"""Typed errors of the core. Each maps 1:1 to a Rekognition error code on the wire."""

from __future__ import annotations


class FaceprintError(Exception):
    """Base class: `code` is the Rekognition `__type`, `status` its HTTP status."""

    code = "InternalServerError"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameterError(FaceprintError):
    code = "InvalidParameterException"
    status = 400


class InvalidImageFormatError(FaceprintError):
    code = "InvalidImageFormatException"
    status = 400


class ImageTooLargeError(FaceprintError):
    code = "ImageTooLargeException"
    status = 400


class ResourceNotFoundError(FaceprintError):
    code = "ResourceNotFoundException"
    status = 400


class ResourceAlreadyExistsError(FaceprintError):
    code = "ResourceAlreadyExistsException"
    status = 400


class ConflictError(FaceprintError):
    code = "ConflictException"
    status = 400


class ServiceQuotaExceededError(FaceprintError):
    code = "ServiceQuotaExceededException"
    status = 400


class IdempotentParameterMismatchError(FaceprintError):
    code = "IdempotentParameterMismatchException"
    status = 400


class InvalidPaginationTokenError(FaceprintError):
    code = "InvalidPaginationTokenException"
    status = 400


class InvalidS3ObjectError(FaceprintError):
    code = "InvalidS3ObjectException"
    status = 400


class AccessDeniedError(FaceprintError):
    code = "AccessDeniedException"
    status = 400


class LimitExceededError(FaceprintError):
    code = "LimitExceededException"
    status = 400


class VideoTooLargeError(FaceprintError):
    code = "VideoTooLargeException"
    status = 400


class InternalServerError(FaceprintError):
    code = "InternalServerError"
    status = 500


class ResourceInUseError(FaceprintError):
    """A stream processor is in a state that does not allow the operation (or the name is taken)."""

    code = "ResourceInUseException"
    status = 400


class InvalidArgumentError(FaceprintError):
    """Kinesis Data Streams' InvalidArgumentException (the read API of a processor's output)."""

    code = "InvalidArgumentException"
    status = 400


class ExpiredIteratorError(FaceprintError):
    """Kinesis Data Streams: the shard iterator is older than 5 minutes."""

    code = "ExpiredIteratorException"
    status = 400
