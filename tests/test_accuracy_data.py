"""The dataset readers of `faceprint.accuracy` on the real label files (no face model needed)."""

from __future__ import annotations

from collections import Counter

from conftest import DATA
from faceprint.accuracy import congress, detection_audit, lfw


def test_lfw_pairs_follow_the_standard_protocol() -> None:
    pairs = lfw.read_pairs()
    assert len(pairs) == 6000
    per_fold = Counter((p.fold, p.same) for p in pairs)
    assert set(per_fold.values()) == {300} and len(per_fold) == 20
    images = {p.a for p in pairs} | {p.b for p in pairs}
    assert len(images) == 7701
    assert all((DATA / "lfw" / p).is_file() for p in list(images)[:200])
    assert all(p.a.split("/")[1] == p.b.split("/")[1] for p in pairs if p.same)
    assert all(p.a.split("/")[1] != p.b.split("/")[1] for p in pairs if not p.same)


def test_lfw_images_and_gender_labels() -> None:
    images = lfw.read_images()
    assert len(images) == 13233 and len(set(images.persons)) == 5749
    genders = lfw.person_genders(images)
    assert genders["Serena_Williams"] == "female" and genders["George_W_Bush"] == "male"
    ids = images.identity_ids()
    assert ids.max() + 1 == 5749


def test_perceived_race_covers_the_62_people() -> None:
    attrs = lfw.read_attributes()
    assert len(attrs) == 2999
    races = lfw.person_races(attrs)
    assert len(races) == 62
    assert races["Kofi_Annan"] == "Black" and races["Junichiro_Koizumi"] == "Asian"
    assert set(races.values()) <= set(lfw.RACES)


def test_congress_members_matched_to_lfw_by_name() -> None:
    members = congress.read_members()
    assert len(members) == 539
    mates = congress.lfw_mates(members, set(lfw.read_images().persons))
    by_name = {m.name: mates.get(m.bioguide) for m in members}
    assert by_name["Nancy Pelosi"] == "Nancy_Pelosi"
    assert by_name["Chuck Grassley"] == "Charles_Grassley"  # first name, not nickname
    assert by_name["Robert Menendez"] in (None, "Bob_Menendez")  # nickname
    assert "Bob_Menendez" in mates.values()
    assert by_name["Cori Bush"] is None  # a surname alone is not a match
    assert by_name["Tommy Tuberville"] == "Tommy_Tubberville"  # LFW's spelling
    assert by_name["Kevin Hern"] is None  # Kevin_Hearn is someone else
    assert len(congress.read_alt_photos()) == 91


def test_utkface_labels_and_age_bands() -> None:
    images = detection_audit.read_labels()
    assert len(images) == 2405
    assert {i.race for i in images} == {"White", "Black", "Asian", "Indian", "Others"}
    assert {i.age_band for i in images} == {b[2] for b in detection_audit.AGE_BANDS}
