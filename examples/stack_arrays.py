"""Stack frames already in memory (a microscope camera's, a tifffile stack's) from Python.

A mono camera gives greyscale frames, here 12 bits in uint16 as most do; the synthetic scene
stands in for it so that this runs anywhere::

    python examples/stack_arrays.py /tmp/arrays-out

The composite comes back as an array of the frames' kind (greyscale in, greyscale out; colour
frames are BGR, OpenCV's order: ``frame[:, :, ::-1]`` turns an RGB frame round), the depth map
as frame numbers or, with focus positions, micrometres; ``save_outputs`` writes both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.output import save_outputs
from stacker.stack import Stacker


def camera_frames(count: int) -> list[tuple[np.ndarray, float]]:
    """(frame, focus position in µm) as a mono camera on a focus drive gives them."""
    stack = SyntheticStack(SceneSpec(width=640, height=480, seed=2), count)
    return [
        (cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 16, f.focus_um)
        for f in stack
    ]


def main(out: Path) -> int:
    stacker = Stacker()  # Stacker(method="depthmap") for smooth subjects
    for i, (frame, z_um) in enumerate(camera_frames(8)):
        record = stacker.add(frame, name=f"z{i:02d}", position_um=z_um)
        if not record.merged:
            print(f"{record.name} kept out: {record.reason}")
    composite = stacker.result()  # uint16, greyscale, cropped to what every frame shows
    depth_um = stacker.depth_um()  # float32 µm per pixel (None without positions)
    assert depth_um is not None
    print(f"{stacker.frames_merged} frames merged: composite {composite.shape} {composite.dtype}, "
          f"depth {depth_um.min():.0f} to {depth_um.max():.0f} µm")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for path in save_outputs(stacker, out / "stacked.tif", depth_path=out / "depth.png"):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "arrays-out")))
