"""Helpers shared by the command modules: typed errors to one-line messages, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import numpy as np

from faceprint.errors import FaceprintError
from faceprint.extras import MissingExtraError

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(func: F) -> F:
    """Turn faceprint's typed errors (and unreadable files) into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MissingExtraError as exc:
            missing_extra(exc)
        except FaceprintError as exc:
            click.echo(f"error: {exc.code}: {exc.message}", err=True)
            sys.exit(2)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def missing_extra(exc: MissingExtraError) -> None:
    """Print the one-line message naming the missing extra and exit 2."""
    click.echo(f"faceprint: {exc.message}", err=True)
    sys.exit(2)


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(payload: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(payload, indent=2, default=_default))
