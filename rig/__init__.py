"""stackrig's hardware half: cameras, focus rails, shot plans and capture sessions.

It drives :mod:`stacker`; :mod:`stacker` never imports it.
"""

__version__ = "0.1.0"
