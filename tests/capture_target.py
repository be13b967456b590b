"""The capture target read around a session's opens of the virtual camera, in a process of its own.

``python -c ROUND_TRIP N`` opens the camera ``N`` times as a session does: reads the capture
target, opens with the other one and reads it, opens again and reads it back (stackrig puts it
back on close); one line per round, ``original|other|during|after``. A round whose reads are
not what was set or put back saw libgphoto2's settings change under it. Used by the camera
tests and by ``benchmarks/gphoto_settings_shared.py``.
"""

ROUND_TRIP = """
import sys
from rig.camera import Camera
for _ in range(int(sys.argv[1])):
    with Camera.open() as cam:
        original = cam.get_config("capturetarget").value
    other = "Memory card" if original == "Internal RAM" else "Internal RAM"
    with Camera.open(capture_target="card" if other == "Memory card" else "ram") as cam:
        during = cam.get_config("capturetarget").value
    with Camera.open() as cam:
        after = cam.get_config("capturetarget").value
    print(original, other, during, after, sep="|")
"""


def changed(line: str) -> bool:
    """Whether the round ``line`` reports saw the capture target change under it."""
    original, other, during, after = line.split("|")
    return during != other or after != original
