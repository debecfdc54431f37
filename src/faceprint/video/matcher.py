"""Search one embedding against a collection: the FaceMatches of a tracked person.

Collections offer search by image and by stored face; a video track already has its embedding, so this
module searches the collection's vector index with it and rescores the candidates exactly, the same way
`Collections` does for SearchFacesByImage (same similarity, threshold and FaceMatch shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceprint import similarity as sim
from faceprint.errors import InvalidParameterError

DEFAULT_MAX_MATCHES = 100
DISTANCE_MARGIN = 1.02  # the vector index may be approximate: fetch a little beyond the cut, then rescore


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
        from faceprint.collections.service import face_shape

        vector = np.asarray(vector, dtype=np.float32)
        dists, ids = self._service.indexes.search(self.collection.id, vector[None], self.max_matches)
        if not len(ids) or not len(ids[0]):
            return []
        cutoff = sim.distance_for_similarity(self.threshold) * DISTANCE_MARGIN
        rows = [int(i) for d, i in zip(dists[0], ids[0], strict=True) if i >= 0 and d <= cutoff]
        found = self._service.store.faces_by_row(self.collection.id, rows, embeddings=True)
        out = []
        for row in found.values():
            score = sim.similarity(float(np.linalg.norm(row.embedding - vector)))
            if score >= self.threshold:
                out.append(
                    {
                        "Similarity": score,
                        "Face": face_shape(row),
                        "EstimatedFalseMatchRate": sim.false_match_rate(score),
                    }
                )
        out.sort(key=lambda m: m["Similarity"], reverse=True)
        return out[: self.max_matches]
