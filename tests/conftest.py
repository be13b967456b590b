"""Shared test setup."""

import atexit
import os
import shutil
import tempfile

# python-gphoto2 chooses between libgphoto2's USB drivers and its virtual camera when it is first
# imported, so the virtual camera must be chosen before any test imports gphoto2. Camera tests
# then point VCAMERADIR at their own folder (rig.sim.vcamera.use_virtual_camera).
if "VCAMERADIR" not in os.environ:
    os.environ["VCAMERADIR"] = tempfile.mkdtemp(prefix="stackrig-vcamera-")
    atexit.register(shutil.rmtree, os.environ["VCAMERADIR"], True)
