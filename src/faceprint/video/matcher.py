"""Search one embedding against a collection: the FaceMatches of a tracked person.

A video track already has its embedding, so it is searched with `Collections.search_faces_by_vector`
(the same index, exact rescoring, threshold and FaceMatch shape as SearchFacesByImage). The video must be
embedded with the collection's face model (`model`): a vector of another model is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_MAX_MATCHES = 100


class CollectionMatcher:
    """FaceMatches for embeddings, against one collection of the home folder `home`."""

    def __init__(
        self,
        home: Path,
        collection_id: str,
        threshold: float | None = None,
        max_matches: int = DEFAULT_MAX_MATCHES,
    ) -> None:
        from faceprint.collections.service import Collections

        self._service = Collections(home)
        try:
            self.collection = self._service.store.collection(collection_id)  # ResourceNotFound if absent
            self.model = self._service._model_for(self.collection)  # a removed model: a clear error
            if threshold is None:
                threshold = self._service._face_threshold(None, self.collection)
        except BaseException:
            self._service.close()
            raise
        self.threshold = float(threshold)
        self.max_matches = max_matches

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> CollectionMatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def matches(self, vector: np.ndarray, model_version: str) -> list[dict]:
        """FaceMatches (Similarity >= threshold, best first) of one embedding of face model `model_version`
        (InvalidParameterError when it is not the collection's)."""
        return self._service.search_faces_by_vector(
            CollectionId=self.collection.name,
            Vector=vector,
            ModelVersion=model_version,
            MaxFaces=self.max_matches,
            FaceMatchThreshold=self.threshold,
        )["FaceMatches"]
