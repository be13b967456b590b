"""Capture sessions: the runner, its journal, the stacking worker and the live display.

:class:`~rig.session.runner.SessionRunner` runs or resumes a session folder
(:class:`~rig.session.folder.SessionFolder`); see :mod:`rig.session.runner` for the sequence and
:mod:`rig.session.folder` for the resume rule.
"""
