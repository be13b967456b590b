"""The console scripts' first step: load a command, and end in one line if Ctrl-C comes first.

Loading the ``stacker`` or ``rig`` command (OpenCV, numpy, typer, the preview server) takes a
second or more on a Raspberry Pi; a Ctrl-C in that time, the moment a typo is seen, used to end
in a ``KeyboardInterrupt`` traceback from whichever import it fell in. The commands' own
handling (:func:`stacker.cliutil.run_app`) takes over once they are loaded.
"""

from __future__ import annotations

import importlib
import sys


def launch(module: str, prog: str) -> None:
    """Import ``module`` and run its ``main``; ``prog: interrupted`` and exit status 130 when
    interrupted while it loads."""
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    main()


def main() -> None:
    """The ``stacker`` console script."""
    launch("stacker.cli", "stacker")
