"""Face detectors on real photographs from the shared data folder."""

from __future__ import annotations

import dlib
import numpy as np
import pytest

from faceprint.config import ImageLimits, data_dir
from faceprint.detectors import get_detector, iou, make_detector
from faceprint.detectors.base import Detection
from faceprint.detectors.blazeface import INPUT_SIZE, pyramid_windows, ssd_anchors
from faceprint.errors import InvalidParameterError
from faceprint.images import load_image
from faceprint.weights import shape_predictor_68

DATA = data_dir()
EXAMPLES = DATA / "known_identities" / "face_recognition_examples" / "examples"
CROWD = DATA / "crowd"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared face data not found at {DATA}")


def pixels(path) -> np.ndarray:
    return load_image(path, limits=ImageLimits(max_bytes=50 * 1024 * 1024)).pixels


@pytest.fixture(scope="module")
def obama() -> np.ndarray:
    return pixels(EXAMPLES / "obama.jpg")


@pytest.fixture(scope="module")
def obama_faces(obama: np.ndarray) -> dict[str, list[Detection]]:
    """Each detector's faces in obama.jpg; the CNN (slow) is told faces are at least 200 px, so it runs
    on the image shrunk 2.5x."""
    found = {name: get_detector(name).detect(obama) for name in ("auto", "blazeface", "hog")}
    found["cnn"] = make_detector("cnn", min_face_size=200).detect(obama)
    return found


@pytest.fixture(scope="module")
def two_people() -> np.ndarray:
    return pixels(EXAMPLES / "two_people.jpg")


@pytest.fixture(scope="module")
def two_people_faces(two_people: np.ndarray) -> dict[str, list[Detection]]:
    return {name: get_detector(name).detect(two_people) for name in ("auto", "blazeface", "hog")}


@pytest.fixture(scope="module")
def retinaface_crowd() -> np.ndarray:
    return pixels(CROWD / "retinaface_test_crowd.jpg")


@pytest.fixture(scope="module")
def selfie() -> np.ndarray:
    return pixels(CROWD / "tinyfaces_worlds_largest_selfie.jpg")


def lfw_pair_images(n: int) -> list:
    """Every k-th distinct image of LFW's pairs.txt."""
    names = set()
    for line in (DATA / "lfw" / "pairs.txt").read_text().splitlines()[1:]:
        f = line.split("\t")
        names |= (
            {(f[0], int(f[1])), (f[0], int(f[2]))} if len(f) == 3 else {(f[0], int(f[1])), (f[2], int(f[3]))}
        )
    chosen = sorted(names)[:: len(names) // n][:n]
    return [DATA / "lfw" / "lfw-deepfunneled" / p / f"{p}_{i:04d}.jpg" for p, i in chosen]


def central(dets: list[Detection]) -> bool:
    """A face centred within 40 px of the centre of a 250x250 LFW image."""
    return any(abs(d.center[0] - 125) < 40 and abs(d.center[1] - 125) < 40 for d in dets)


def landmarks68(px: np.ndarray, det: Detection) -> np.ndarray:
    rect = dlib.rectangle(round(det.left), round(det.top), round(det.right), round(det.bottom))
    return np.array([(p.x, p.y) for p in shape_predictor_68()(px, rect).parts()], dtype=float)


def test_two_people_has_exactly_two_faces(two_people_faces: dict[str, list[Detection]]) -> None:
    for name, dets in two_people_faces.items():
        assert len(dets) == 2, name
        assert iou(dets[0], dets[1]) == 0  # two different people, side by side


@pytest.mark.parametrize("name", ["auto", "blazeface", "hog", "cnn"])
def test_each_detector_finds_obama(name: str, obama_faces: dict[str, list[Detection]]) -> None:
    dets = obama_faces[name]
    assert len(dets) == 1
    face = dets[0]
    assert 0.5 <= face.score <= 1
    assert 330 < face.center[0] < 640 and 120 < face.center[1] < 420  # the face, not the flag or the tie
    assert 220 < face.width < 330


def test_corrected_boxes_agree_with_hog_and_give_the_same_landmarks(
    obama: np.ndarray,
    obama_faces: dict[str, list[Detection]],
    two_people: np.ndarray,
    two_people_faces: dict[str, list[Detection]],
) -> None:
    cases = [(obama, obama_faces["hog"], obama_faces["blazeface"] + obama_faces["cnn"])]
    cases.append((two_people, two_people_faces["hog"], two_people_faces["blazeface"]))
    for px, hog, others in cases:
        for det in others:
            ref = max(hog, key=lambda h: iou(h, det))
            assert iou(ref, det) > 0.7, det.detector
            # dlib's 68 landmarks from the corrected box land where they do from HOG's own box
            pts, ref_pts = landmarks68(px, det), landmarks68(px, ref)
            inter_ocular = np.linalg.norm(ref_pts[36:42].mean(0) - ref_pts[42:48].mean(0))
            assert np.linalg.norm(pts - ref_pts, axis=1).mean() < 0.05 * inter_ocular, det.detector


def test_blazeface_keypoints_sit_on_the_face(
    obama: np.ndarray, obama_faces: dict[str, list[Detection]]
) -> None:
    face = obama_faces["blazeface"][0]
    kp = face.keypoints
    assert kp is not None and kp.shape == (6, 2)
    right_eye, left_eye, nose, mouth = kp[:4]
    assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    pts = landmarks68(obama, face)  # and they agree with dlib's eye centres within a fifth of their distance
    iod = np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0))
    assert np.linalg.norm(right_eye - pts[36:42].mean(0)) < 0.2 * iod
    assert np.linalg.norm(left_eye - pts[42:48].mean(0)) < 0.2 * iod


def test_default_finds_20_faces_in_the_retinaface_crowd(retinaface_crowd: np.ndarray) -> None:
    """At least 20 faces (face_recognition's HOG finds 13, dlib's CNN 18); the time is bench/detect.py's."""
    dets = get_detector().detect(retinaface_crowd)
    assert len(dets) >= 20
    boxes = sorted(dets, key=lambda d: d.score, reverse=True)
    assert all(iou(a, b) < 0.3 for i, a in enumerate(boxes) for b in boxes[i + 1 :])  # no duplicates


def test_default_finds_100_faces_in_the_worlds_largest_selfie(selfie: np.ndarray) -> None:
    dets = get_detector("auto").detect(selfie)
    assert len(dets) >= 100
    assert all(d.width >= 20 for d in dets)  # the default minimum face size
    assert [d.area for d in dets] == sorted((d.area for d in dets), reverse=True)  # largest first


def test_cap_keeps_the_largest_faces(retinaface_crowd: np.ndarray) -> None:
    every = make_detector("blazeface").detect(retinaface_crowd)
    capped = make_detector("blazeface", max_faces=5).detect(retinaface_crowd)
    assert [d.area for d in capped] == [d.area for d in every[:5]]


def test_min_face_size_drops_small_faces(selfie: np.ndarray) -> None:
    big = make_detector("auto", min_face_size=60).detect(selfie)
    assert 3 <= len(big) < 100
    assert all(min(d.width, d.height) >= 60 for d in big)


def test_no_face_in_a_building_facade(selfie: np.ndarray) -> None:
    facade = np.ascontiguousarray(selfie[0:140, 880:2048])  # the mall above the crowd: no people
    for det in (get_detector("auto"), make_detector("blazeface", min_score=0.3), get_detector("hog")):
        assert det.detect(facade) == []


@pytest.mark.slow
def test_default_finds_the_lfw_face_at_least_as_often_as_hog() -> None:
    images = [pixels(p) for p in lfw_pair_images(100)]
    hog = make_detector("hog", upsample=1)
    hog_found = sum(central(hog.detect(px)) for px in images)
    auto_found = sum(central(get_detector().detect(px)) for px in images)
    assert auto_found >= hog_found >= 95


def test_get_detector_is_cached_and_rejects_unknown_names() -> None:
    assert get_detector("auto") is get_detector()
    assert get_detector("hog") is not get_detector("blazeface")
    with pytest.raises(InvalidParameterError):
        get_detector("retinaface")


def test_pyramid_tiles_cover_every_pixel_exactly_once_per_level() -> None:
    width, height = 2048, 1150  # the selfie's size
    levels = pyramid_windows(width, height, min_face=20)
    assert levels[0][0].side == width and len(levels[0]) == 1
    assert levels[-1][0].side * 0.09 >= 20 > levels[-1][0].side / np.sqrt(2) * 0.09
    ys, xs = np.mgrid[0:height:7, 0:width:7] + 0.5
    for windows in levels:
        hits = np.zeros(xs.shape, dtype=int)
        for w in windows:
            left, top, right, bottom = w.core
            hits += (xs >= left) & (xs < right) & (ys >= top) & (ys < bottom)
            assert (w.x0 <= left and right <= w.x0 + w.side) or len(windows) == 1
        assert (hits == 1).all()


def test_ssd_anchors_match_mediapipe_full_range() -> None:
    anchors = ssd_anchors()
    assert anchors.shape == (2304, 2)  # 48 x 48 cells of stride 4, one anchor each
    assert np.allclose(anchors[0], [0.5 / 48, 0.5 / 48]) and np.allclose(anchors[1], [1.5 / 48, 0.5 / 48])
    assert np.allclose(anchors[48], [0.5 / 48, 1.5 / 48]) and INPUT_SIZE == 192
