"""Detection rate by demographic group on the UTKFace subset (one face per 200x200 crop)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.accuracy.congress import rate_row
from faceprint.accuracy.lfw import DatasetError
from faceprint.config import data_dir

AGE_BANDS = ((0, 12, "0-12"), (13, 19, "13-19"), (20, 39, "20-39"), (40, 59, "40-59"), (60, 200, "60+"))


@dataclass(frozen=True)
class UtkImage:
    file: str  # relative to the utkface_subset folder
    age: int
    gender: str
    race: str

    @property
    def age_band(self) -> str:
        return next(label for lo, hi, label in AGE_BANDS if lo <= self.age <= hi)


def utk_root(root: Path | None = None) -> Path:
    path = (root or data_dir()) / "utkface_subset"
    if not (path / "labels.csv").is_file():
        raise DatasetError(f"UTKFace subset not found: {path / 'labels.csv'} is missing")
    return path


def read_labels(root: Path | None = None) -> list[UtkImage]:
    with (utk_root(root) / "labels.csv").open(newline="") as fh:
        return [UtkImage(r["file"], int(r["age"]), r["gender"], r["race"]) for r in csv.DictReader(fh)]


def detection_rates(images: list[UtkImage], found: np.ndarray) -> dict[str, list[dict]]:
    """Share of images with a detected face, by race, gender and age band (Wilson 95% intervals)."""
    out: dict[str, list[dict]] = {}
    for facet, values in (
        ("race", [i.race for i in images]),
        ("gender", [i.gender for i in images]),
        ("age_band", [i.age_band for i in images]),
    ):
        rows = []
        arr = np.array(values)
        order = [b[2] for b in AGE_BANDS] if facet == "age_band" else sorted(set(values))
        for v in order:
            sel = arr == v
            if sel.any():
                rows.append(rate_row(v, int(found[sel].sum()), int(sel.sum())))
        rows.append(rate_row("all", int(found.sum()), len(found)))
        out[facet] = rows
    return out


def miss_ratio(rows: list[dict]) -> float | None:
    """Worst-group / best-group miss rate (None when the best group misses nothing)."""
    misses = [1 - r["rate"] for r in rows if r["group"] != "all" and r["n"]]
    if not misses or min(misses) == 0:
        return None
    return max(misses) / min(misses)
