"""`faceprint detect` and `faceprint compare`: image analysis from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from faceprint.cli.common import cli_errors, print_json

MAX_FACES = (
    100  # = faceprint.engine.MAX_FACES; the engine (dlib, OpenCV) is imported only by commands using it
)

DETECTORS = ["auto", "hog", "blazeface", "cnn"]


def _engine(detector: str) -> Any:  # -> FaceEngine
    from faceprint.engine import FaceEngine

    return FaceEngine.shared() if detector == "auto" else FaceEngine(detector=detector)


@click.command("detect")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the Rekognition DetectFaces response.")
@click.option("--max-faces", type=click.IntRange(1, MAX_FACES), default=MAX_FACES, show_default=True)
@click.option("--detector", type=click.Choice(DETECTORS), default="auto", show_default=True)
@click.option(
    "--draw", type=click.Path(dir_okay=False, path_type=Path), help="Write the image with boxes here."
)
@cli_errors
def detect_command(image: Path, as_json: bool, max_faces: int, detector: str, draw: Path | None) -> None:
    """Detect faces in IMAGE: box, confidence, landmarks, pose and quality (largest first)."""
    from faceprint.images import load_image
    from faceprint.operations import detect_faces

    img = load_image(image)
    response = detect_faces(img, max_faces=max_faces, engine=_engine(detector))
    if draw:
        from faceprint.drawing import draw_boxes

        draw_boxes(img, [d["BoundingBox"] for d in response["FaceDetails"]], draw)
    if as_json:
        print_json(response)
        return
    table = Table(title=f"{len(response['FaceDetails'])} face(s) in {image.name} ({img.width}x{img.height})")
    for col in ("#", "box (left,top,w,h px)", "confidence", "roll/yaw/pitch", "brightness", "sharpness"):
        table.add_column(col, justify="right")
    for i, face in enumerate(response["FaceDetails"], 1):
        b, p, q = face["BoundingBox"], face["Pose"], face["Quality"]
        table.add_row(
            str(i),
            f"{b['Left'] * img.width:.0f},{b['Top'] * img.height:.0f},"
            f"{b['Width'] * img.width:.0f},{b['Height'] * img.height:.0f}",
            f"{face['Confidence']:.1f}",
            f"{p['Roll']:.0f}/{p['Yaw']:.0f}/{p['Pitch']:.0f}",
            f"{q['Brightness']:.0f}",
            f"{q['Sharpness']:.0f}",
        )
    Console().print(table)
    if draw:
        click.echo(f"wrote {draw}")


@click.command("compare")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the Rekognition CompareFaces response.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    default=None,
    help="Similarity threshold in percent (default: calibrated for a false match rate of 1e-4).",
)
@click.option("--detector", type=click.Choice(DETECTORS), default="auto", show_default=True)
@cli_errors
def compare_command(
    source: Path, target: Path, as_json: bool, threshold: float | None, detector: str
) -> None:
    """Compare the largest face of SOURCE with every face of TARGET."""
    from faceprint.images import load_image
    from faceprint.operations import compare_faces

    response = compare_faces(source, target, similarity_threshold=threshold, engine=_engine(detector))
    if as_json:
        print_json(response)
        return
    tgt = load_image(target)
    console = Console()
    console.print(f"threshold: {response['SimilarityThreshold']:.2f}% similarity")
    table = Table(title=f"{source.name} vs faces of {target.name}")
    for col in ("face (left,top px)", "similarity", "est. false match rate", "match"):
        table.add_column(col, justify="right")
    rows = [
        (m["Face"], m["Similarity"], m["EstimatedFalseMatchRate"], "yes") for m in response["FaceMatches"]
    ]
    rows += [(f, None, None, "no") for f in response["UnmatchedFaces"]]
    for face, score, fmr, matched in rows:
        b = face["BoundingBox"]
        table.add_row(
            f"{b['Left'] * tgt.width:.0f},{b['Top'] * tgt.height:.0f}",
            "" if score is None else f"{score:.2f}",
            "" if fmr is None else f"{fmr:.1e}",
            matched,
        )
    console.print(table)


def register(group: click.Group) -> None:
    group.add_command(detect_command)
    group.add_command(compare_command)
