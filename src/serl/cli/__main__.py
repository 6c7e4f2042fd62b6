"""`python -m serl.cli`: the `serl` command."""

from serl.cli import entry_point

entry_point()
