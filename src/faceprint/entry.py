"""The `faceprint` command's entry point: it starts what the command will need before the CLI's imports.

Importing the command line takes about 0.3 s. A command that detects faces needs dlib's 68-point model,
whose helper process (`faceprint.landmark_process`) takes about a second to read it, so that helper is
started first and reads its model while the CLI imports.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console entry point (`faceprint`, `python -m faceprint`)."""
    from faceprint.landmark_process import start_for_command

    start_for_command(sys.argv[1:])
    from faceprint.cli import main as cli_main

    cli_main()
