"""Setup shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def vcam(tmp_path: Path) -> Path:
    """A folder for libgphoto2's virtual camera, with one synthetic frame staged, for commands
    run in their own process: pass it to them as ``VCAMERADIR``."""
    from rig.sim.scene import SceneSpec, SyntheticScene
    from rig.sim.vcamera import VirtualCameraFolder

    folder = VirtualCameraFolder(tmp_path / "vcam", slot_bytes=256 << 10)
    frame = SyntheticScene(SceneSpec(width=320, height=240, seed=5, jpeg_quality=90)).render(1500.0)
    assert frame.encoded is not None
    folder.stage(frame.encoded)
    return folder.path
