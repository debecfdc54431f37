"""The ACLU-style identification test: members of Congress searched against a gallery of LFW faces.

Members whose name (first name or nickname, and last name, from the congress-legislators files) is an
LFW person are genuine mates in LFW; every other gallery face that scores at or above the threshold is
a false match. The voteview alternative photos are searched against LFW plus the 539 portraits: their
genuine mate is the member's own portrait.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.accuracy.lfw import DatasetError
from faceprint.accuracy.metrics import wilson_interval
from faceprint.accuracy.pairs import similarity_array
from faceprint.config import data_dir


@dataclass(frozen=True)
class Member:
    bioguide: str
    name: str
    gender: str  # "M" or "F"
    party: str
    chamber: str
    photo: str  # relative to the congress folder
    name_variants: frozenset[str]


def congress_root(root: Path | None = None) -> Path:
    path = (root or data_dir()) / "congress"
    if not (path / "members.csv").is_file():
        raise DatasetError(f"Congress data not found: {path / 'members.csv'} is missing")
    return path


def normalize_name(name: str) -> str:
    """Lower-case ASCII words: 'Linda T. Sánchez' -> 'linda t sanchez', 'Bob_Menendez' -> 'bob menendez'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z ]", " ", ascii_name.lower().replace("'", "").replace("_", " ")).split())


def _legislators(folder: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name in ("legislators-historical.csv", "legislators-current.csv"):
        path = folder / "metadata" / name
        if path.is_file():
            with path.open(newline="") as fh:
                out.update({r["bioguide_id"]: r for r in csv.DictReader(fh)})
    return out


def read_members(root: Path | None = None) -> list[Member]:
    """The 539 members with portraits, with the name variants used to find them in LFW."""
    folder = congress_root(root)
    legislators = _legislators(folder)
    members = []
    with (folder / "members.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            variants = {normalize_name(row["full_name"])}
            leg = legislators.get(row["bioguide_id"])
            if leg:
                for first in (leg["first_name"], leg["nickname"]):
                    if first:
                        variants.add(normalize_name(f"{first} {leg['last_name']}"))
                        if leg["middle_name"]:
                            variants.add(normalize_name(f"{first} {leg['middle_name']} {leg['last_name']}"))
            members.append(
                Member(
                    bioguide=row["bioguide_id"],
                    name=row["full_name"],
                    gender=row["gender"],
                    party=row.get("party_118_cse151a") or row["party_legislators_csv"],
                    chamber=row.get("chamber_118_cse151a") or row["type"],
                    photo=row["photo"],
                    name_variants=frozenset(variants),
                )
            )
    return members


def read_alt_photos(root: Path | None = None) -> list[tuple[str, str]]:
    """(bioguide, path relative to the congress folder) of each alternative voteview photo."""
    folder = congress_root(root) / "alt_photos_voteview"
    path = folder / "mapping.csv"
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    with path.open(newline="") as fh:
        return [(r["bioguide_id"], f"alt_photos_voteview/{r['file']}") for r in csv.DictReader(fh)]


def lfw_mates(members: list[Member], lfw_persons: set[str]) -> dict[str, str]:
    """bioguide -> LFW person, for members whose name matches exactly one LFW name.

    A match is exact on a name variant or, failing that, equal once doubled letters are collapsed
    (LFW spells Tuberville "Tubberville"); other near-spellings are different people (Hern, Hearn).
    """
    by_name = {normalize_name(p): p for p in lfw_persons}
    collapsed: dict[str, set[str]] = {}
    for name, person in by_name.items():
        collapsed.setdefault(_collapse(name), set()).add(person)
    out = {}
    for m in members:
        hits = {by_name[v] for v in m.name_variants if v in by_name}
        if not hits:
            hits = set().union(*(collapsed.get(_collapse(v), set()) for v in m.name_variants))
        if len(hits) == 1:
            out[m.bioguide] = hits.pop()
    return out


def _collapse(name: str) -> str:
    return re.sub(r"(.)\1+", r"\1", name)


@dataclass
class SearchResult:
    """Per probe: Similarity to every gallery face, and which gallery faces are its genuine mates."""

    scores: np.ndarray  # (probes, gallery)
    mates: np.ndarray  # bool (probes, gallery)

    def at(self, threshold: float) -> dict[str, np.ndarray]:
        """Per-probe counts at a threshold: false matches, mates found, any mate, rank-1 is a mate."""
        hit = self.scores >= threshold
        best = np.argmax(self.scores, axis=1)
        has_mate = self.mates.any(axis=1)
        return {
            "false_matches": (hit & ~self.mates).sum(axis=1),
            "mates_found": (hit & self.mates).sum(axis=1),
            "has_mate": has_mate,
            "found": (hit & self.mates).any(axis=1),
            "rank1_mate": self.mates[np.arange(len(best)), best] & hit[np.arange(len(best)), best],
        }


def search(
    probes: np.ndarray,
    gallery: np.ndarray,
    mates: np.ndarray,
    scorer=None,
    probe_stats: np.ndarray | None = None,
    gallery_stats: np.ndarray | None = None,
    block: int = 256,
) -> SearchResult:
    """Score every probe vector against every gallery vector (raw distance map, or a normalising
    `faceprint.scoring.Scorer` with the cohort statistics of probes and gallery)."""
    if scorer is not None and scorer.normalised:
        from faceprint.scoring import s_norm, unit

        p, g = unit(probes), unit(gallery)
        out = np.empty((len(p), len(g)), np.float32)
        for r0 in range(0, len(p), block):
            cos = p[r0 : r0 + block] @ g.T
            z = s_norm(cos, probe_stats[r0 : r0 + block, None, :], gallery_stats[None, :, :])
            out[r0 : r0 + block] = scorer.percent(z)
        return SearchResult(out, np.asarray(mates, bool))
    g = np.ascontiguousarray(gallery, np.float32)
    gn = np.einsum("ij,ij->i", g, g)
    out = np.empty((len(probes), len(g)), np.float32)
    for r0 in range(0, len(probes), block):
        p = np.asarray(probes[r0 : r0 + block], np.float32)
        d2 = np.einsum("ij,ij->i", p, p)[:, None] + gn[None, :] - 2.0 * (p @ g.T)
        out[r0 : r0 + block] = similarity_array(d2)
    return SearchResult(out, np.asarray(mates, bool))


def rate_row(label: str, hits: int, total: int) -> dict:
    """A proportion with its Wilson 95% interval."""
    lo, hi = wilson_interval(hits, total)
    return {
        "group": label,
        "n": total,
        "count": hits,
        "rate": hits / total if total else None,
        "ci95": [lo, hi],
    }


def breakdown(values: list[str], flags: np.ndarray) -> list[dict]:
    """Rates of `flags` for each distinct value (sorted), then overall."""
    rows = []
    vals = np.array(values)
    for v in sorted(set(values)):
        sel = vals == v
        rows.append(rate_row(v, int(flags[sel].sum()), int(sel.sum())))
    rows.append(rate_row("all", int(flags.sum()), len(flags)))
    return rows


COHORT_MEMBER_COSINE = 0.99999  # a gallery vector this close to a cohort vector is that cohort face


def gallery_stats(scorer, gallery: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """Cohort statistics of the gallery faces as a deployment would have them: the searched people are
    never in the cohort.

    The all-LFW gallery holds the cohort folds' people, and the shipped cohort is 3,000 of their own
    faces: scored naively, such a face finds itself (cosine 1) and its person's other photos among its
    closest cohort faces, which inflates its mean and, above all, its standard deviation (about 20% for
    one self-match among the top 400), so its every normalised score is depressed, the Congress member's
    genuine mate's included. Here each face of a person with faces in the cohort gets its statistics
    against the cohort without that person's faces; every other face keeps the scorer's own.
    """
    from faceprint.scoring import cohort_stats, unit

    stats = scorer.stats(gallery)
    if scorer.cohort is None or len(gallery) == 0:
        return stats
    cohort = scorer.cohort.unit_vectors
    g = unit(gallery)
    persons = np.asarray(persons)
    owner = np.full(len(cohort), "", dtype=object)
    for r0 in range(0, len(cohort), 500):  # who each cohort face is: the gallery face it equals, if any
        sims = cohort[r0 : r0 + 500] @ g.T
        best = sims.argmax(axis=1)
        hit = sims[np.arange(len(best)), best] >= COHORT_MEMBER_COSINE
        owner[r0 : r0 + 500][hit] = persons[best[hit]]
    for person in set(owner) - {""}:
        rows = persons == person
        keep = owner != person
        stats[rows] = cohort_stats(g[rows], cohort[keep], scorer.top_k, cohort_is_unit=True)
    return stats
