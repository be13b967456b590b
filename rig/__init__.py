"""stackrig's hardware half: cameras, focus rails, shot plans and capture sessions.

It drives :mod:`stacker`; :mod:`stacker` never imports it.
"""

from stacker import __version__ as __version__
