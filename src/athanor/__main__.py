"""`python -m athanor ...` is the `athanor` utility command."""

from athanor.tools import main

main()
