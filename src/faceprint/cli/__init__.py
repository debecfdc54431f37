"""`faceprint` command line: one module per command group, registered on the root group."""

from __future__ import annotations

import importlib

import click

# Each module defines `register(group: click.Group) -> None`.
COMMAND_MODULES = [
    "faceprint.cli.analyze",  # detect, compare
    "faceprint.cli.collections",  # collections, index, search, faces, users
    "faceprint.cli.server",  # serve, demo, keys, audit-log
    "faceprint.cli.video",  # video detect|search
    "faceprint.cli.streams",  # streams create|start|stop|list|describe|delete|tail
    "faceprint.cli.accuracy",  # eval, audit, calibrate
    "faceprint.cli.doctor",  # doctor
    "faceprint.cli.cohort",  # cohort build|show
    "faceprint.cli.db",  # db upgrade
    "faceprint.cli.models",  # models list|describe|add|remove
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faceprint", prog_name="faceprint")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """faceprint: self-hosted face detection, comparison and search with calibrated scores."""
    from faceprint import audit

    # every core operation a command runs is audited as the local OS user, from `local`, via "cli"
    ctx.with_resource(audit.calling_as(audit.Caller(audit.local_user(), "local", None, "cli")))


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a command group not written yet
        if exc.name != _name:
            raise
        continue
    _module.register(cli)


def main() -> None:
    """Console entry point."""
    from faceprint.cli.common import missing_extra
    from faceprint.extras import MissingExtraError

    try:
        cli()
    except MissingExtraError as exc:  # an optional part used outside a command's own error handling
        missing_extra(exc)
