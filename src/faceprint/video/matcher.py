"""Search one embedding against a collection: the FaceMatches of a tracked person.

A video track already has its embedding, so it is searched with `Collections.search_faces_by_vector`
(the same index, exact rescoring, threshold and FaceMatch shape as SearchFacesByImage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceprint import similarity as sim
from faceprint.errors import InvalidParameterError

DEFAULT_MAX_MATCHES = 100


class CollectionMatcher:
    """FaceMatches for embeddings, against one collection of the home folder `home`."""

    def __init__(
        self,
        home: Path,
        collection_id: str,
        threshold: float | None = None,
        max_matches: int = DEFAULT_MAX_MATCHES,
        model_version: str | None = None,
    ) -> None:
        from faceprint.collections.service import Collections

        self._service = Collections(home)
        self.collection = self._service.store.collection(collection_id)  # ResourceNotFoundError if absent
        if model_version is not None and self.collection.model_version != model_version:
            self._service.close()
            raise InvalidParameterError(
                f"collection {collection_id!r} holds faces of model {self.collection.model_version}; "
                f"this server computes {model_version}"
            )
        if threshold is None:
            threshold = sim.default_search_threshold(self.collection.face_count)
        self.threshold = float(threshold)
        self.max_matches = max_matches

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> CollectionMatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def matches(self, vector: np.ndarray) -> list[dict]:
        """FaceMatches (Similarity >= threshold, best first) of one embedding."""
        return self._service.search_faces_by_vector(
            CollectionId=self.collection.name,
            Vector=vector,
            MaxFaces=self.max_matches,
            FaceMatchThreshold=self.threshold,
        )["FaceMatches"]
