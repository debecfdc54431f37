"""`faceprint collections migrate SRC DST --model NAME`: re-embed a collection's faces with another model.

faceprint keeps no images. What it can re-embed from is the wide crop `faceprint index --keep-chips` (or
`FACEPRINT_KEEP_CHIPS=1` on the server) stores with each face (`faceprint.models.crops`): migration
finds the face again in each crop with the shared detector and landmarks, embeds it with the target model
and stores it in a new collection of that model, with the source's ImageId, ExternalImageId, bounding box
and confidence (and the crop, so it can migrate again). The source is left as it was. A source with faces
indexed without a crop is refused, naming how many and why; users are not carried over (recreate them).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from faceprint.errors import InvalidParameterError, ResourceNotFoundError

if TYPE_CHECKING:
    from faceprint.collections.service import Collections

PAGE = 1000


def migrate_collection(
    svc: Collections, source: str, target: str, model_name: str, progress: Callable[[int], None] | None = None
) -> dict:
    """Create `target` with model `model_name` and fill it from the kept crops of `source`'s faces."""
    from faceprint import audit
    from faceprint.collections.port import ImageFaces, NewFace
    from faceprint.collections.service import MAX_COLLECTION_FACES, MODEL_TAG
    from faceprint.images import load_image
    from faceprint.models import get_model

    src = svc._collection(source)
    try:
        model = get_model(model_name)
    except ResourceNotFoundError as exc:
        raise InvalidParameterError(exc.message) from None
    rows, after = [], 0
    while True:
        page = svc.store.list_faces(src.id, after, PAGE)
        rows += page
        if len(page) < PAGE:
            break
        after = page[-1].row
    kept = svc.store.face_dates(src.id, [r.face_id for r in rows])
    without = [r.face_id for r in rows if not kept.get(r.face_id, (0, False))[1]]
    if without:
        raise InvalidParameterError(
            f"collection {source!r} cannot be migrated: {len(without)} of {len(rows)} faces were indexed "
            "without a kept crop (faceprint index --keep-chips), and faceprint keeps no images to re-embed "
            "them from; index them again from their images"
        )
    svc.create_collection(CollectionId=target, Tags={MODEL_TAG: model.name})
    engine = svc.engine.with_model(model)
    scorer = model.scorer()
    migrated, lost, items = [], [], []
    for n, row in enumerate(rows, 1):
        jpeg = svc.store.face_chip(src.id, row.face_id)
        assert jpeg is not None
        img = load_image(jpeg)
        faces = engine.detect(img, max_faces=5)
        centre = img.width / 2, img.height / 2
        faces = [f for f in faces if abs(f.box.center[0] - centre[0]) < img.width / 4]
        if not faces:
            lost.append(row.face_id)
            continue
        face = min(
            faces, key=lambda f: (f.box.center[0] - centre[0]) ** 2 + (f.box.center[1] - centre[1]) ** 2
        )
        engine.embed_faces(None, [face])
        stats = scorer.stats(face.embedding)[0]
        new_id = str(uuid.uuid4())
        items.append(
            ImageFaces(
                collection=target,
                image_sha256=hashlib.sha256(jpeg).hexdigest(),
                image_id=row.image_id,
                external_image_id=row.external_image_id,
                faces=[
                    NewFace(
                        face_id=new_id,
                        box=row.box,
                        confidence=row.confidence,
                        brightness=face.quality.brightness,
                        sharpness=face.quality.sharpness,
                        pose=(face.pose.roll, face.pose.yaw, face.pose.pitch),
                        embedding=np.asarray(face.embedding, np.float32),
                        model_version=model.version,
                        chip=jpeg,
                        cohort=(float(stats[0]), float(stats[1])) if scorer.normalised else None,
                        cohort_tag=scorer.tag,
                    )
                ],
            )
        )
        migrated.append({"SourceFaceId": row.face_id, "FaceId": new_id})
        if progress is not None:
            progress(n)
    for stored in svc.store.add_images(items, MAX_COLLECTION_FACES):
        if isinstance(stored, Exception):
            raise stored
    audit.record_local(svc.home, "MigrateCollection", target, None, len(migrated))
    return {
        "SourceCollection": source,
        "CollectionId": target,
        "CollectionArn": svc.arn(target),
        "FaceModelVersion": model.version,
        "Model": model.name,
        "FacesMigrated": len(migrated),
        "FacesNotFoundInCrop": lost,
        "Faces": migrated,
    }
