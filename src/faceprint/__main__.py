"""`python -m faceprint` runs the command line."""

from faceprint.cli import main

main()
