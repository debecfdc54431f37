"""`faceprint cohort build DIR` and `faceprint cohort show [FILE]`: the cohort behind normalised scores."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from faceprint.cli.common import cli_errors


@click.group("cohort")
def cohort_group() -> None:
    """The cohort: face vectors of people never searched for, that normalise every score."""


@cohort_group.command("build")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the cohort [default: $FACEPRINT_HOME/cohort.npz].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object (last line).")
@cli_errors
def build_command(folder: Path, output: Path | None, as_json: bool) -> None:
    """Build a cohort from FOLDER (one sub-folder of face images per person). Use it with
    FACEPRINT_COHORT=<file>, and recalibrate with `faceprint calibrate --cohort <file>`."""
    from faceprint.accuracy.embeddings import progress_bar
    from faceprint.audit import record_local
    from faceprint.cohort_builder import build_cohort, check_enough, cohort_images
    from faceprint.config import home_dir
    from faceprint.engine import FaceEngine

    engine = FaceEngine.shared()
    total = len(cohort_images(folder))
    check_enough(folder, total)
    with progress_bar(Console(stderr=True)) as bar:
        task = bar.add_task(f"Embedding {folder}", total=total)
        cohort = build_cohort(engine, folder, progress=lambda: bar.advance(task))
    target = output or home_dir() / "cohort.npz"
    cohort.save(target)
    target.chmod(0o600)
    record_local(home_dir(), "BuildCohort", None, None, len(cohort))
    summary = {
        "output": str(target),
        "faces": len(cohort),
        "dim": cohort.dim,
        "model_version": cohort.model_version,
        "fingerprint": cohort.fingerprint,
        "provenance": cohort.provenance,
    }
    if as_json:
        click.echo(json.dumps(summary, separators=(",", ":")))
        return
    p = cohort.provenance
    click.echo(
        f"cohort written to {target}: {len(cohort)} faces of {p['people']} people "
        f"({p['images_without_face']} of {p['images']} images without a face), model {cohort.model_version}"
    )
    click.echo(f"use it with FACEPRINT_COHORT={target}; recalibrate: faceprint calibrate --cohort {target}")


@cohort_group.command("show")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@cli_errors
def show_command(file: Path | None, as_json: bool) -> None:
    """What a cohort file holds (default: the one in use)."""
    from faceprint.models import get_model
    from faceprint.scoring import Cohort

    model = get_model()
    path = file or Path(model.calibration().cohort or model.calibration_files()[1])
    cohort = Cohort.load(path)
    summary = {
        "file": str(path),
        "faces": len(cohort),
        "dim": cohort.dim,
        "model_version": cohort.model_version,
        "fingerprint": cohort.fingerprint,
        "provenance": cohort.provenance,
    }
    click.echo(json.dumps(summary, separators=(",", ":")) if as_json else json.dumps(summary, indent=1))


def register(group: click.Group) -> None:
    group.add_command(cohort_group)
