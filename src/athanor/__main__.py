"""`python -m athanor …` is the `athanor` command."""

from athanor.cli.commands import main

main()
