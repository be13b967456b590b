"""Shared test setup."""

import os
import tempfile

# python-gphoto2 chooses between libgphoto2's USB drivers and its virtual camera when it is first
# imported, so the virtual camera must be chosen before any test imports gphoto2. Camera tests
# then point VCAMERADIR at their own folder (rig.sim.vcamera.use_virtual_camera).
os.environ.setdefault("VCAMERADIR", tempfile.mkdtemp(prefix="stackrig-vcamera-"))
