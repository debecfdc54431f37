"""Readers for Labeled Faces in the Wild (deep-funneled) and its label files under the data folder."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.config import data_dir

RACES = ("Asian", "Black", "Indian", "White")


class DatasetError(Exception):
    """A data file is missing or malformed (reported as a one-line CLI error)."""


def lfw_root(root: Path | None = None) -> Path:
    """The `lfw` folder of the data directory, checked to exist."""
    path = (root or data_dir()) / "lfw"
    if not (path / "lfw-deepfunneled").is_dir():
        raise DatasetError(f"LFW not found: {path / 'lfw-deepfunneled'} is missing (set FACEPRINT_DATA_DIR)")
    return path


def image_path(person: str, num: int) -> str:
    """Path of an LFW image relative to the `lfw` folder."""
    return f"lfw-deepfunneled/{person}/{person}_{num:04d}.jpg"


@dataclass(frozen=True)
class LfwImages:
    """Every LFW image: relative paths (to the `lfw` folder), person names and per-image gender labels."""

    paths: list[str]
    persons: list[str]
    genders: list[str]  # "male", "female", "ambiguous" or ""

    def __len__(self) -> int:
        return len(self.paths)

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}

    def identity_ids(self) -> np.ndarray:
        """Integer identity label of each image (people numbered in order of first appearance)."""
        ids: dict[str, int] = {}
        return np.array([ids.setdefault(p, len(ids)) for p in self.persons], dtype=np.int32)


def read_images(root: Path | None = None) -> LfwImages:
    """All images listed in `lfw/images.csv`, in file order."""
    path = lfw_root(root) / "images.csv"
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    paths, persons, genders = [], [], []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            paths.append(row["file"])
            persons.append(row["person"])
            genders.append(row.get("gender_afifi") or "")
    return LfwImages(paths, persons, genders)


@dataclass(frozen=True)
class Pair:
    """One pairs.txt line: two image paths (relative to `lfw`), same person or not, and its fold."""

    fold: int
    a: str
    b: str
    same: bool


def read_pairs(root: Path | None = None) -> list[Pair]:
    """The standard 10-fold x (300 same + 300 different) protocol of `lfw/pairs.txt`."""
    path = lfw_root(root) / "pairs.txt"
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        folds, per_fold = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise DatasetError(f"{path}: first line must be '<folds> <pairs per fold>'") from None
    pairs: list[Pair] = []
    for k, parts in enumerate(lines[1:]):
        fold = k // (2 * per_fold)
        if len(parts) == 3:
            a, b = image_path(parts[0], int(parts[1])), image_path(parts[0], int(parts[2]))
            pairs.append(Pair(fold, a, b, True))
        elif len(parts) == 4:
            pairs.append(
                Pair(fold, image_path(parts[0], int(parts[1])), image_path(parts[2], int(parts[3])), False)
            )
        else:
            raise DatasetError(f"{path}: line {k + 2} is not a pair")
    if len(pairs) != folds * 2 * per_fold:
        raise DatasetError(f"{path}: expected {folds * 2 * per_fold} pairs, found {len(pairs)}")
    return pairs


def person_genders(images: LfwImages) -> dict[str, str]:
    """One gender per person: the majority of that person's image labels ('male' or 'female')."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for person, gender in zip(images.persons, images.genders, strict=True):
        if gender in ("male", "female"):
            votes[person][gender] += 1
    return {person: c.most_common(1)[0][0] for person, c in votes.items()}


def read_attributes(root: Path | None = None) -> dict[str, dict[str, float]]:
    """Kumar et al. attribute scores of the 62-person subset, keyed by relative image path."""
    path = lfw_root(root) / "attributes_subset" / "lfw_attributes_subset62.txt"
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    rows = [ln.split("\t") for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    header, out = rows[0], {}
    for row in rows[1:]:
        person = row[0].replace(" ", "_")
        values = {name: float(v) for name, v in zip(header[2:], row[2:], strict=True)}
        out[image_path(person, int(row[1]))] = values
    return out


def person_races(attributes: dict[str, dict[str, float]]) -> dict[str, str]:
    """Perceived race per person: the race attribute with the highest mean score over their images."""
    sums: dict[str, np.ndarray] = {}
    for path, values in attributes.items():
        person = Path(path).parent.name
        vec = np.array([values[r] for r in RACES])
        sums[person] = sums.get(person, 0) + vec
    return {person: RACES[int(np.argmax(v))] for person, v in sums.items()}
