"""`faceprint eval lfw`, `faceprint audit` and `faceprint calibrate`: accuracy you can check."""

from __future__ import annotations

import functools
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from faceprint.cli.common import cli_errors

F = TypeVar("F", bound=Callable[..., Any])
DETECTORS = ["auto", "hog", "blazeface", "cnn"]
EMBEDDERS = ["auto", "onnx", "dlib"]


def _command_line() -> str:
    return "faceprint " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _accuracy_errors(func: F) -> F:
    """Data and calibration problems as one-line errors (exit 2), on top of `cli_errors`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from faceprint.accuracy.lfw import DatasetError

        try:
            return func(*args, **kwargs)
        except DatasetError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return cli_errors(wrapper)  # type: ignore[return-value]


def _engine(detector: str, embedder: str, model: str | None = None):
    """The engine of `model` (default: the default model; dlib's float32 network is run by `embedder`),
    with `detector`."""
    from faceprint.config import default_model
    from faceprint.engine import FaceEngine
    from faceprint.errors import InvalidParameterError

    model = model or default_model()
    if embedder != "auto":
        if model != "dlib":
            raise InvalidParameterError(
                "--embedder chooses how dlib's float32 network runs; it applies to --model dlib"
            )
        return FaceEngine(detector=detector, embedder=embedder)
    engine = FaceEngine.shared() if detector == "auto" else FaceEngine(detector=detector)
    return engine.with_model(model)


def _engine_options(func: F) -> F:
    func = click.option(
        "--model",
        default=None,
        help="Face model (see `faceprint models list`) [default: $FACEPRINT_MODEL, else dlib-int8].",
    )(func)
    func = click.option("--embedder", type=click.Choice(EMBEDDERS), default="auto", show_default=True)(func)
    return click.option("--detector", type=click.Choice(DETECTORS), default="auto", show_default=True)(func)


def _or_nan(value: float | None) -> float:
    """A rate for a table cell: None (a group without pairs in a subset run) prints as nan."""
    return float("nan") if value is None else float(value)


def _json_line(payload: dict) -> None:
    """One JSON object on one line: the last line of stdout."""
    click.echo(json.dumps(payload, separators=(",", ":"), default=float))


@click.group("eval")
def eval_group() -> None:
    """Standard accuracy benchmarks."""


@eval_group.command("lfw")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Folder for the report files.",
)
@click.option(
    "--pairs-per-fold", type=click.IntRange(1, 300), help="Use only the first N same + N different pairs."
)
@_engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object (last line).")
@_accuracy_errors
def eval_lfw_command(
    out: Path, pairs_per_fold: int | None, detector: str, embedder: str, model: str, as_json: bool
) -> None:
    """LFW 10-fold verification on lfw/pairs.txt: accuracy ± std, ROC AUC, TAR at FAR, ROC plot."""
    from faceprint.accuracy import eval_lfw

    console = Console(stderr=True)
    result = eval_lfw.evaluate(_engine(detector, embedder, model), per_fold=pairs_per_fold, console=console)
    plot = eval_lfw.plot(result, out / "lfw_roc.png")
    result.pop("_scores")
    result["command"] = _command_line()
    result["plot"] = str(plot)
    (out / "lfw_eval.json").write_text(json.dumps(result, indent=1, default=float))
    if as_json:
        _json_line(result)
        return
    t = Table(
        title=f"LFW verification ({result['pairs']} pairs, {result['detector']} + {result['embedder']})"
    )
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row(
        "10-fold accuracy", f"{100 * result['accuracy_mean']:.2f}% ± {100 * result['accuracy_std']:.2f}"
    )
    t.add_row("ROC AUC", f"{result['roc_auc']:.5f}")
    for far, v in result["tar_at_far"].items():
        t.add_row(f"TAR at FAR {far}", f"{100 * v['tar']:.2f}%")
    for name, v in result["accuracy_at_fixed_threshold"].items():
        t.add_row(f"accuracy at {name} ({v['threshold']:g})", f"{100 * v['accuracy']:.2f}%")
    n = result["normalised"]
    t.add_row(
        "normalised: 10-fold accuracy", f"{100 * n['accuracy_mean']:.2f}% ± {100 * n['accuracy_std']:.2f}"
    )
    for far, v in n["tar_at_far"].items():
        t.add_row(f"normalised: TAR at FAR {far}", f"{100 * v['tar']:.2f}%")
    for name, v in n["accuracy_at_fixed_threshold"].items():
        t.add_row(f"normalised: accuracy at {name} ({v['threshold']:g})", f"{100 * v['accuracy']:.2f}%")
    if "heldout" in result:
        h = result["heldout"]
        for key in h["raw"]:
            t.add_row(
                f"held-out TAR at FMR {key}: raw / normalised",
                f"{100 * h['raw'][key]:.1f}% / {100 * h['normalised'][key]:.1f}%",
            )
    t.add_row("faces found only by the CNN retry", f"{result['detected_by_cnn_retry']} of {result['images']}")
    t.add_row("images without a detected face (fallback box)", f"{result['fallback']} of {result['images']}")
    Console().print(t)
    click.echo(f"plot: {plot}")


@click.command("audit")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Folder for the report files.",
)
@click.option("--limit", type=click.IntRange(10), help="At most N images per dataset (a quick subset run).")
@click.option(
    "--bootstrap", type=click.IntRange(0), default=1000, show_default=True, help="Bootstrap resamples."
)
@_engine_options
@click.option(
    "--models",
    "model_list",
    help="Compare these models (comma-separated) on the same held-out people instead of auditing one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object (last line).")
@_accuracy_errors
def audit_command(
    out: Path,
    limit: int | None,
    bootstrap: int,
    detector: str,
    embedder: str,
    model: str,
    model_list: str | None,
    as_json: bool,
) -> None:
    """Demographic audit: verification by gender and race, Congress-vs-LFW search, detection by group."""
    from faceprint.accuracy.audit import FACEPRINT, REKOGNITION, run_audit

    console = Console(stderr=True)
    if model_list:
        names = [m.strip() for m in model_list.split(",") if m.strip()]
        _compare_models(out, detector, names, as_json, limit)
        return
    r = run_audit(
        _engine(detector, embedder, model),
        out,
        _command_line(),
        limit=limit,
        n_boot=bootstrap,
        console=console,
    )
    idn = r["identification"]["by_threshold"]
    gender = r["verification"]["gender"]["by_threshold"][FACEPRINT]
    summary = {
        "html": str(out / "audit.html"),
        "json": str(out / "audit.json"),
        "seconds": r["timings_s"]["total"],
        "compare_threshold": r["thresholds"]["compare_default"],
        "fmr_by_gender": {g: row["fmr"] for g, row in gender["rows"].items()},
        "fnmr_by_gender": {g: row["fnmr"] for g, row in gender["rows"].items()},
        "members_falsely_matched": {k: v["members_falsely_matched"] for k, v in idn.items()},
        "search_thresholds": {k: v["threshold"] for k, v in idn.items()},
        "detection_rate": r["detection"]["found"] / max(1, r["detection"]["images"]),
        **r["summary"],
    }
    if as_json:
        _json_line(summary)
        return
    t = Table(title="faceprint audit")
    t.add_column("check")
    t.add_column("result", justify="right")
    norm, raw = r["summary"], r["summary"]["raw"]
    for key in norm["heldout_tar_at_fmr"]:
        t.add_row(
            f"held-out TAR at FMR {key}: raw / normalised",
            f"{raw['heldout_tar_at_fmr'][key]:.1%} / {norm['heldout_tar_at_fmr'][key]:.1%}",
        )
    t.add_row(
        "women/men FMR ratio at the 1:1 default: raw / normalised",
        f"{_or_nan(raw['gender_fmr_ratio_at_default']):.2f} / "
        f"{_or_nan(norm['gender_fmr_ratio_at_default']):.2f}",
    )
    for g in ("female", "male"):
        t.add_row(
            f"{g} FNMR at the 1:1 default: raw / normalised",
            f"{_or_nan(raw['fnmr_by_gender_at_default'][g]):.1%} / "
            f"{_or_nan(norm['fnmr_by_gender_at_default'][g]):.1%}",
        )
    t.add_row(
        "FNMR at the 1:N default for 10,000 faces: raw / normalised",
        f"{raw['fnmr_at_search_default_10000']:.1%} / {norm['fnmr_at_search_default_10000']:.1%}",
    )
    for label, key in (
        ("rank-1 found", "rank1_found_at_default"),
        ("strangers matched", "strangers_matched_at_default"),
    ):
        t.add_row(
            f"{norm['enrolment']['enrolled']} enrolled, {label} at the default: raw / normalised",
            f"{raw['enrolment'][key]} / {norm['enrolment'][key]}",
        )
    for label, key in (
        ("members falsely matched", "members_falsely_matched_at_default"),
        ("mates found", "mates_found_at_default"),
    ):
        t.add_row(
            f"Congress vs LFW, {label} at the default: raw / normalised",
            f"{raw['congress'][key]} / {norm['congress'][key]} (of {norm['congress']['mates']} mates)"
            if key == "mates_found_at_default"
            else f"{raw['congress'][key]} / {norm['congress'][key]}",
        )
    for g, row in gender["rows"].items():
        t.add_row(
            f"FMR / FNMR at {FACEPRINT} 1:1 ({gender['threshold']:g}), {g}",
            f"{_or_nan(row['fmr']):.2g} / {_or_nan(row['fnmr']):.2%}",
        )
    for name in (REKOGNITION, FACEPRINT):
        b = idn[name]
        t.add_row(
            f"Congress members falsely matched at {name} ({b['threshold']:g})",
            f"{b['members_falsely_matched']} of {r['identification']['members_searched']}",
        )
    t.add_row("UTKFace faces detected", f"{r['detection']['found']} of {r['detection']['images']}")
    t.add_row("time", f"{r['timings_s']['total']:.0f} s")
    Console().print(t)
    click.echo(f"report: {out / 'audit.html'}")


@click.command("calibrate")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the table [default: the package's faceprint/data/calibration.json].",
)
@click.option("--max-images", type=click.IntRange(50), help="Use only the first N LFW images (a quick test).")
@click.option(
    "--cohort",
    "cohort_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Calibrate with this cohort (from `faceprint cohort build`) instead of building LFW's.",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Calibrate on this folder (one sub-folder of images per person) instead of LFW.",
)
@_engine_options
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object (last line).")
@_accuracy_errors
def calibrate_command(
    output: Path | None,
    max_images: int | None,
    cohort_file: Path | None,
    data: Path | None,
    detector: str,
    embedder: str,
    model: str,
    as_json: bool,
) -> None:
    """Build the cohort from LFW's cohort folds and the calibration table from its calibration folds
    (cohort-normalised scores) for a face model (--model, default dlib-int8); write both (the cohort beside
    the table: the package's for a built-in model, the model's folder in the home for an added model)."""
    from faceprint.accuracy.calibrate import run_calibration

    console = Console(stderr=True)
    engine = _engine(detector, embedder, model)
    if hasattr(engine.model, "calibrate"):  # the ensemble fits its fusion from its calibrated parts
        if cohort_file is not None or data is not None:
            from faceprint.errors import InvalidParameterError

            raise InvalidParameterError(
                "the ensemble is calibrated from its calibrated parts on LFW: --cohort and --data do not"
                " apply"
            )
        fitted = engine.model.calibrate(engine, _command_line(), console, max_images)
        if as_json:
            _json_line(fitted)
        else:
            Console().print(f"fused table written to {fitted['output']}, weight {fitted['weight']:g}")
            Console().print(fitted["heldout_tar"])
        return
    table_file, model_cohort = engine.model.calibration_files()
    summary = run_calibration(
        engine,
        output or table_file,
        _command_line(),
        max_images,
        console,
        cohort_file=cohort_file,
        data=data,
        cohort_output=None if output else model_cohort,  # --output: the cohort beside it, as cohort.npz
    )
    if as_json:
        _json_line(summary)
        return
    t = Table(title=f"calibration written to {summary['output']}")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("cohort", f"{summary['cohort']} ({summary['cohort_faces']:,} faces)")
    t.add_row("impostor / genuine pairs", f"{summary['impostor_pairs']:,} / {summary['genuine_pairs']:,}")
    t.add_row("FMR / FNMR at Similarity 80", f"{summary['fmr_at_80']:.3g} / {summary['fnmr_at_80']:.3%}")
    t.add_row("1:1 default (FMR <= 1e-4)", f"{summary['compare_threshold_fmr_1e-4']:g}")
    t.add_row("1:N default, N = 10,000", f"{summary['search_threshold_n_10000']:g}")
    t.add_row("tail extrapolated from Similarity", f"{summary['tail']['from']:g}")
    Console().print(t)


def _compare_models(out: Path, detector: str, names: list[str], as_json: bool, limit: int | None) -> None:
    """`audit --models`: the side-by-side report, written to OUT/models.json and printed."""
    from faceprint.accuracy.compare_models import compare
    from faceprint.errors import InvalidParameterError

    if len(names) < 2 or len(set(names)) != len(names):
        raise InvalidParameterError("--models takes two or more different model names, comma-separated")
    report = compare(_engine(detector, "auto"), names, Console(stderr=True), limit)
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    if as_json:
        _json_line(report)
        return
    t = Table(
        title=f"models on {report['heldout_people']:,} held-out people ({report['heldout_images']:,} images)"
    )
    t.add_column("")
    for name in names:
        t.add_column(name, justify="right")
    for key in report["tar_at_fmr"][names[0]]:
        t.add_row(f"TAR at FMR {key}", *(f"{100 * report['tar_at_fmr'][n][key]:.1f}%" for n in names))
    for g in ("female", "male"):
        rows = [report["by_gender_at_default"][n][g] for n in names]
        t.add_row(f"{g}: FMR / FNMR at default", *(f"{r['fmr']:.2g} / {100 * r['fnmr']:.2f}%" for r in rows))
    enrolment = [report["enrolment"][n] for n in names]
    t.add_row(
        f"{enrolment[0]['enrolled']} enrolled: rank-1 at default",
        *(f"{e['rank1_found_at_default']} of {e['enrolled']}" for e in enrolment),
    )
    t.add_row(
        f"{enrolment[0]['strangers']} strangers matched",
        *(str(e["strangers_matched_at_default"]) for e in enrolment),
    )
    congress = [report["congress_vs_lfw"][n] for n in names]
    t.add_row("Congress: members falsely matched", *(str(c["members_falsely_matched"]) for c in congress))
    t.add_row("Congress: LFW mates found", *(f"{c['mates_found']} of {c['mates']}" for c in congress))
    Console().print(t)
    click.echo(f"report: {out / 'models.json'}")


def register(group: click.Group) -> None:
    """Add `eval`, `audit` and `calibrate` to the root command group."""
    group.add_command(eval_group)
    group.add_command(audit_command)
    group.add_command(calibrate_command)
