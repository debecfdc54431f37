"""`faceprint doctor`: one screen on what this deployment needs, what is wrong and how to fix it."""

from __future__ import annotations

import sys

import click

from faceprint.cli.common import print_json
from faceprint.cli.server import home_option
from faceprint.doctor import ERROR, NOT_CONFIGURED, OK, WARNING, Report, run_checks

_STYLE = {
    OK: ("ok", "green"),
    WARNING: ("WARN", "yellow"),
    ERROR: ("ERROR", "red"),
    NOT_CONFIGURED: ("-", None),
}


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    group.add_command(doctor)


def render(report: Report) -> None:
    """The report as aligned lines: status, check, what was found, then how to fix it."""
    click.echo(f"faceprint {report.version}  home {report.home}  cache {report.cache}")
    width = max(len(c.name) for c in report.checks)
    for check in report.checks:
        label, colour = _STYLE[check.status]
        status = check.status if check.status == NOT_CONFIGURED else label
        click.echo(f"  {click.style(f'{status:<14}', fg=colour)} {check.name:<{width}}  {check.detail}")
        if check.fix:
            click.echo(f"  {'':<14} {'':<{width}}  fix: {check.fix}")
    if report.healthy:
        extra = f", {report.warnings} warning(s)" if report.warnings else ""
        click.echo(f"verdict: ready{extra}")
    else:
        broken = ", ".join(c.name for c in report.checks if c.status == ERROR)
        click.echo(f"verdict: BROKEN: {report.errors} error(s) ({broken}), {report.warnings} warning(s)")


@click.command()
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def doctor(as_json: bool) -> None:
    """Check models, calibration, ONNX cache, home, npm, PostgreSQL, Milvus, keys and the audit chain.

    Exit status 1 when something required is broken."""
    report = run_checks()
    if as_json:
        print_json(report.as_dict())
    else:
        render(report)
    if not report.healthy:
        sys.exit(1)
