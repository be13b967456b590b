"""``rig shoot --incoming``: a body with no USB link, fired through the StackShot's cable.

The StackShot simulator runs in this test process on a real pseudo-terminal; each shutter pulse
makes a stand-in for the camera's tethering program render the synthetic scene where the rail
stands and drop it into the incoming folder (temporary name, then rename). The ``rig``
subprocess knows only the rail's URL and the folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from rig.session.journal import read_journal
from rig.sim.scene import SceneSpec, SyntheticScene
from rig.sim.stackshot import StackShotSimulator


def test_shoot_fires_through_the_rail_cable_and_stacks_the_arriving_files(tmp_path: Path) -> None:
    incoming, out = tmp_path / "incoming", tmp_path / "s"
    incoming.mkdir()
    scene = SyntheticScene(SceneSpec(width=320, height=240, seed=5, jpeg_quality=90))
    with StackShotSimulator(time_scale=50) as rail:
        start_mm = rail.carriage.position_mm

        def on_shutter() -> None:
            frame = scene.render((rail.carriage.position_mm - start_mm) * 1000.0)
            assert frame.encoded is not None
            name = f"DSC_{rail.shutter_pulses:04d}.JPG"

            def write() -> None:
                (incoming / (name + ".part")).write_bytes(frame.encoded or b"")
                os.replace(incoming / (name + ".part"), incoming / name)

            threading.Timer(0.05, write).start()

        rail.on_shutter = on_shutter
        proc = subprocess.run(
            [
                sys.executable, "-m", "rig.cli", "shoot", "--rail", rail.url,
                "--incoming", str(incoming), "--from", "0mm", "--to", "0.4mm",
                "--step", "200um", "--settle", "0s", "--out", str(out), "--format", "png",
                "--accept-position",  # no switch, a counter that restarts at power-on
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert rail.shutter_pulses == 3
    assert "session completed: 3/3 frames captured, 3 merged" in proc.stdout
    frames = read_journal(out / "journal.jsonl").of_kind("frame")
    assert [f["position"] for f in frames] == [0.0, 200.0, 400.0]
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "frame_0001.jpg",
        "frame_0002.jpg",
        "frame_0003.jpg",
    ]
    assert (out / "composite.png").is_file()


def test_incoming_needs_a_rail_with_a_shutter_cable(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "rig.cli", "shoot", "--rail", "sim://", "--incoming",
            str(tmp_path), "--from", "0mm", "--to", "0.4mm", "--frames", "2",
            "--out", str(tmp_path / "s"),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "has no shutter cable" in proc.stderr
