"""`python -m faceprint` runs the command line."""

from faceprint.entry import main

main()
