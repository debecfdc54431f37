"""`S3Object` references resolved against local folders instead of Amazon S3.

A bucket is `$FACEPRINT_HOME/buckets/<Bucket>/` unless mapped to another folder (`FACEPRINT_BUCKETS=
"name=/path,other=/path2"` or `faceprint serve --bucket name=/path`). Object names are paths inside the
bucket; names that escape it, missing objects and versions (local buckets are unversioned) are
`InvalidS3ObjectException`, as S3 access failures are on AWS.
"""

from __future__ import annotations

import os
from pathlib import Path

from faceprint.errors import ImageTooLargeError, InvalidParameterError, InvalidS3ObjectError

S3_IMAGE_MAX_BYTES = 15 * 1024 * 1024  # Rekognition's limit for images read from S3 (dev guide)


def parse_bucket_map(text: str | None) -> dict[str, Path]:
    """Parse "name=/path,other=/path2" (also accepts ';' or newlines as separators)."""
    mapping: dict[str, Path] = {}
    for item in (text or "").replace(";", ",").replace("\n", ",").split(","):
        if not item.strip():
            continue
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"bucket mapping '{item}' is not NAME=PATH")
        mapping[name.strip()] = Path(path.strip()).expanduser()
    return mapping


class LocalBuckets:
    """Resolves (Bucket, Name, Version) to a file."""

    def __init__(self, root: Path, mapping: dict[str, Path] | None = None) -> None:
        self.root = Path(root)
        self.mapping = dict(mapping or {})

    @classmethod
    def for_home(cls, home: Path) -> LocalBuckets:
        return cls(Path(home) / "buckets", parse_bucket_map(os.environ.get("FACEPRINT_BUCKETS")))

    def bucket_dir(self, bucket: str) -> Path:
        folder = self.mapping.get(bucket, self.root / bucket)
        if not folder.is_dir():
            raise InvalidS3ObjectError(
                f"Unable to get object metadata from S3. Bucket '{bucket}' does not exist."
            )
        return folder

    def resolve(self, s3_object: dict[str, str]) -> Path:
        """The file an `S3Object` {Bucket, Name, Version?} names."""
        bucket, name = s3_object.get("Bucket", ""), s3_object.get("Name", "")
        if s3_object.get("Version") not in (None, "null"):
            raise InvalidS3ObjectError(
                f"Unable to get object metadata from S3. Local bucket '{bucket}' has no versions."
            )
        if "\x00" in bucket or "\x00" in name:
            raise InvalidParameterError("S3Object Bucket and Name must not contain NUL characters")
        folder = self.bucket_dir(bucket).resolve()
        path = (folder / name.lstrip("/")).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise InvalidS3ObjectError(
                f"Unable to get object metadata from S3. Check object key, region and/or access permissions. "
                f"(s3://{bucket}/{name})"
            )
        return path

    def read(self, s3_object: dict[str, str], max_bytes: int = S3_IMAGE_MAX_BYTES) -> bytes:
        """The object's bytes; larger than `max_bytes` is ImageTooLargeException."""
        path = self.resolve(s3_object)
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageTooLargeError(f"S3 object is {size:,} bytes; the limit is {max_bytes:,} bytes")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InvalidS3ObjectError(
                f"Unable to read S3 object s3://{s3_object['Bucket']}/{s3_object['Name']}: {exc.strerror}"
            ) from None
