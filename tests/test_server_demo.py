"""`faceprint demo` (what `make run` starts): demo collection, a printed key that works, quick restarts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import DATA, KNN
from faceprint.server.launcher import RunningServer, start_server

pytestmark = pytest.mark.slow


def printed_key(server: RunningServer) -> tuple[str, str]:
    log = server.log()
    key_id = re.search(r"export AWS_ACCESS_KEY_ID=(\S+)", log)
    secret = re.search(r"export AWS_SECRET_ACCESS_KEY=(\S+)", log)
    assert key_id and secret, log
    return key_id.group(1), secret.group(1)


def client(server: RunningServer, key: tuple[str, str]) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )


def test_demo_serves_a_searchable_collection_and_restarts_without_reindexing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with start_server(home, command="demo") as first:
        key = printed_key(first)
        rek = client(first, key)
        faces = rek.list_faces(CollectionId="demo")["Faces"]
        assert {f["ExternalImageId"] for f in faces} >= {"obama", "biden", "alex_lacamoire"}
        probe = {"Bytes": (KNN / "test" / "obama1.jpg").read_bytes()}
        best = rek.search_faces_by_image(CollectionId="demo", Image=probe)["FaceMatches"][0]
        assert best["Face"]["ExternalImageId"] == "obama"
        name = str((KNN / "test" / "alex_lacamoire1.jpg").relative_to(DATA))
        s3 = {"S3Object": {"Bucket": "faceprint-data", "Name": name}}
        best = rek.search_faces_by_image(CollectionId="demo", Image=s3)["FaceMatches"][0]
        assert best["Face"]["ExternalImageId"] == "alex_lacamoire"
        assert "demo collection 'demo':" in first.log()
    with start_server(home, command="demo") as second:
        assert "demo collection 'demo':" not in second.log()  # found, not rebuilt
        new_key = printed_key(second)
        assert new_key != key
        rek = client(second, new_key)
        assert len(rek.list_faces(CollectionId="demo")["Faces"]) == len(faces)
        with pytest.raises(ClientError, match="UnrecognizedClientException"):
            client(second, key).list_collections()


def test_demo_collection_of_an_older_model_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    """After an upgrade the demo collection holds another model's vectors: it is rebuilt, not left stale."""
    from faceprint.cli.server import DEMO_COLLECTION, prepare_demo_collection
    from faceprint.collections.service import Collections

    monkeypatch.setenv("FACEPRINT_HOME", str(tmp_path / "home"))
    with Collections(tmp_path / "home") as service:
        service.store.create_collection(DEMO_COLLECTION, "1.1", {})
    messages: list[str] = []
    indexed = prepare_demo_collection(echo=lambda msg, err=False: messages.append(msg))
    assert indexed > 0 and "rebuilding demo collection 'demo' for model 2.2" in messages[0]
    with Collections(tmp_path / "home") as service:
        described = service.describe_collection(CollectionId=DEMO_COLLECTION)
        assert (described["FaceModelVersion"], described["FaceCount"]) == ("2.2", indexed)
    assert prepare_demo_collection(echo=messages.append) == 0  # current now: kept as it is
