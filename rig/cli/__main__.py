"""``python -m rig.cli``: the ``rig`` command, as the console script runs it."""

from rig.cli import main

main()
