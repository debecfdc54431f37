"""The face engine and the public API on real photographs."""

from __future__ import annotations

import numpy as np
import pytest

import faceprint
from conftest import CROWD, EXAMPLES, KNN
from faceprint import similarity
from faceprint.engine import FaceEngine
from faceprint.errors import InvalidParameterError
from faceprint.images import load_image
from faceprint.landmarks import LANDMARK_POINTS
from faceprint.scoring import default_scorer


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine.shared()


def test_two_people(engine: FaceEngine) -> None:
    faces = engine.detect(EXAMPLES / "two_people.jpg")
    assert len(faces) == 2
    assert faces[0].box.area >= faces[1].box.area  # largest first
    assert all(50 <= f.confidence <= 100 for f in faces)


def test_face_has_full_landmark_set_inside_its_box(engine: FaceEngine) -> None:
    face = engine.detect(EXAMPLES / "obama.jpg")[0]
    assert set(face.landmarks) == set(LANDMARK_POINTS)
    assert len(face.landmarks) == 30
    b = face.box
    margin = 0.25 * b.width
    for name in ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight", "chinBottom"):
        x, y = face.landmarks[name]
        assert b.left - margin <= x <= b.right + margin and b.top - margin <= y <= b.bottom + margin, name
    # Rekognition's left is the image's left.
    assert face.landmarks["eyeLeft"][0] < face.landmarks["eyeRight"][0]
    assert face.landmarks["mouthLeft"][0] < face.landmarks["mouthRight"][0]
    assert face.landmarks["eyeLeft"][1] < face.landmarks["nose"][1] < face.landmarks["chinBottom"][1]


def test_pose_of_frontal_face_and_its_mirror(engine: FaceEngine) -> None:
    img = load_image(EXAMPLES / "obama.jpg")
    face = engine.detect(img)[0]
    mirrored = engine.detect(np.ascontiguousarray(img.pixels[:, ::-1]))[0]
    assert abs(face.pose.yaw) < 15 and abs(face.pose.roll) < 10 and abs(face.pose.pitch) < 25
    # Mirroring flips yaw and roll, keeps pitch.
    assert mirrored.pose.yaw == pytest.approx(-face.pose.yaw, abs=4)
    assert mirrored.pose.roll == pytest.approx(-face.pose.roll, abs=3)
    assert mirrored.pose.pitch == pytest.approx(face.pose.pitch, abs=4)


def test_roll_follows_image_rotation(engine: FaceEngine) -> None:
    from PIL import Image

    img = Image.open(EXAMPLES / "obama.jpg").convert("RGB")
    upright = engine.detect(np.asarray(img))[0].pose.roll
    tilted = engine.detect(np.asarray(img.rotate(-15, resample=Image.Resampling.BILINEAR)))[0].pose.roll
    assert tilted - upright == pytest.approx(15, abs=4)  # rotate(-15) turns the picture clockwise


def test_quality_ranks_blurred_and_dark_versions_lower(engine: FaceEngine) -> None:
    from PIL import Image, ImageEnhance, ImageFilter

    img = Image.open(EXAMPLES / "obama.jpg").convert("RGB")
    sharp = engine.detect(np.asarray(img))[0].quality
    blurred = engine.detect(np.asarray(img.filter(ImageFilter.GaussianBlur(4))))[0].quality
    dark = engine.detect(np.asarray(ImageEnhance.Brightness(img).enhance(0.4)))[0].quality
    assert 0 <= blurred.sharpness < sharp.sharpness <= 100
    assert 0 <= dark.brightness < sharp.brightness <= 100


def test_obama_matches_his_other_photos_and_not_biden() -> None:
    for other in ("obama2.jpg", "obama-480p.jpg", "obama_small.jpg"):
        result = faceprint.compare(EXAMPLES / "obama.jpg", EXAMPLES / other)
        assert result.is_match, (other, result)
    biden = faceprint.compare(EXAMPLES / "obama.jpg", EXAMPLES / "biden.jpg")
    assert not biden.is_match
    assert biden.similarity < result.similarity
    assert 0 < biden.false_match_rate <= 1 and result.false_match_rate < biden.false_match_rate


def test_embed_returns_one_vector_per_face() -> None:
    vectors = faceprint.embed(EXAMPLES / "two_people.jpg")
    assert len(vectors) == 2 and all(v.shape == (128,) and v.dtype == np.float32 for v in vectors)
    assert all(abs(np.linalg.norm(v) - 1.0) < 1e-5 for v in vectors)  # descriptors have unit length
    assert similarity.similarity(float(np.linalg.norm(vectors[0] - vectors[1]))) < 50  # two different people


def test_compare_without_a_face_is_invalid_parameter() -> None:
    # A crop of the crowd photo's top rows (sky/banner) holds no face.
    from PIL import Image

    sky = np.asarray(Image.open(CROWD / "tinyfaces_worlds_largest_selfie.jpg").convert("RGB"))[:90, :200]
    assert faceprint.detect(sky) == []
    with pytest.raises(InvalidParameterError, match="no face"):
        faceprint.compare(sky, EXAMPLES / "obama.jpg")


def test_knn_examples_are_all_identified(engine: FaceEngine) -> None:
    """face_recognition's own knn example: every face of every test image gets the right name."""
    labels, gallery = [], []
    for person in sorted(p for p in (KNN / "train").iterdir() if p.is_dir()):
        for img in sorted(person.iterdir()):
            vec = engine.embed_image(img)
            assert vec is not None, img
            labels.append(person.name)
            gallery.append(vec)
    g = np.stack(gallery)
    expected = {
        "johnsnow_test1.jpg": {"kit_harington"},
        "obama_and_biden.jpg": {"obama", "biden"},
        "kit_with_rose.jpg": {"kit_harington", "rose_leslie"},
        "obama1.jpg": {"obama"},
        "alex_lacamoire1.jpg": {"alex_lacamoire"},
    }
    threshold = similarity.default_compare_threshold()
    scorer = default_scorer()
    gallery_stats = scorer.stats(g)
    for path in sorted((KNN / "test").iterdir()):
        found = set()
        for face in engine.analyze(path):
            scores = scorer.scores(face.embedding, None, g, gallery_stats)  # normalised Similarity
            if scores.max() >= threshold:
                found.add(labels[int(scores.argmax())])
        assert found == expected[path.name], path.name


def test_descriptor_averages_every_view_and_has_unit_length() -> None:
    """The default model (2.2, int8): 5- and 68-point chips at three paddings, each with its mirror image,
    averaged."""
    engine = FaceEngine.shared()
    assert engine.model_version == "2.2" and engine.descriptor.passes == 12
    face = engine.analyze(EXAMPLES / "obama.jpg")[0]
    assert face.views.shape == (6, 150, 150, 3) and face.views.dtype == np.uint8
    assert np.array_equal(face.views[1], face.chip)  # the 5-point chip at padding 0.25 is dlib's own
    views = face.views.reshape(-1, 150, 150, 3)
    by_hand = engine.embedder.embed_chips(np.concatenate([views, np.ascontiguousarray(views[:, :, ::-1])]))
    mean = by_hand.mean(axis=0)
    assert np.allclose(face.embedding, mean / np.linalg.norm(mean), atol=1e-5)
    one_chip = engine.embedder.embed_chips(face.chip[None])[0]
    assert 0 < np.linalg.norm(face.embedding - one_chip / np.linalg.norm(one_chip)) < 0.2
    other = engine.embed_image(EXAMPLES / "obama2.jpg")
    assert similarity.similarity(float(np.linalg.norm(face.embedding - other))) > 90
