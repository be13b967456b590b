"""Scoring stacks against their known truth, for the tests and the benchmarks.

Not part of the installed packages: nothing in ``stacker`` or ``rig`` needs it at run time.
Importable from the repository root (pytest and ``benchmarks/common.py`` put it on the path).
"""
