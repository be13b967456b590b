"""16-bit frames that hold fewer bits: a mono or scientific camera's 10, 12 or 14 bits written
unscaled (white at 1023, 4095, 16383), and stacks whose first frame is dark."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.io import white_level
from stacker.output import save_outputs
from stacker.stack import Stacker


@pytest.fixture(scope="module")
def full() -> list[np.ndarray]:
    spec = SceneSpec(width=320, height=240, seed=3, bit_depth=16)
    return [f.image for f in SyntheticStack(spec, 5)]


def in_bits(image: np.ndarray, bits: int) -> np.ndarray:
    """A 16-bit frame as a camera of ``bits`` writes it in 16: unscaled, white at 2**bits - 1."""
    top = 2**bits - 1
    return np.rint(image.astype(np.float64) * (top / 65535.0)).astype(np.uint16)


def stacked(frames: list[np.ndarray]) -> Stacker:
    s = Stacker()
    for frame in frames:
        record = s.add(frame)
        assert record.merged, record.reason
    return s


def test_white_is_the_smallest_level_of_bits_above_the_brightest_pixel() -> None:
    frame = np.zeros((16, 16, 3), np.uint16)
    for peak, white in ((0, 255), (255, 255), (256, 511), (1000, 1023), (4095, 4095),
                        (4096, 8191), (16383, 16383), (60000, 65535)):  # fmt: skip
        frame[3, 4, 1] = peak
        assert white_level(frame) == white, peak
    assert white_level(np.zeros((16, 16), np.uint8)) == 255


@pytest.mark.parametrize("grey", [False, True])
def test_a_12_bit_stack_is_shown_and_written_as_its_16_bit_twin(
    full, grey: bool, tmp_path: Path
) -> None:
    """Scaled from 65535, a 12-bit stack's live preview, 100 % crops and JPEG composite were
    nearly black (at most 16 of 255); its TIFF keeps the frames' own values, none past 4095."""
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in full] if grey else full
    s16 = stacked(frames)
    s12 = stacked([in_bits(f, 12) for f in frames])
    assert s12.white == 4095 and s16.white == 65535
    p12, p16 = s12.preview(), s16.preview()
    assert p12 is not None and p16 is not None
    assert abs(float(p12.mean()) - float(p16.mean())) < 2.0, (p12.mean(), p16.mean())
    crops12, crops16 = s12.crop(40, 30, 64, 64), s16.crop(40, 30, 64, 64)
    for a, b in zip(crops12, crops16, strict=True):
        assert abs(float(a.mean()) - float(b.mean())) < 2.0
    jpeg12 = save_outputs(s12, tmp_path / "12.jpg")[0]
    jpeg16 = save_outputs(s16, tmp_path / "16.jpg")[0]
    m12 = cv2.imread(str(jpeg12), cv2.IMREAD_UNCHANGED).mean()
    m16 = cv2.imread(str(jpeg16), cv2.IMREAD_UNCHANGED).mean()
    assert abs(m12 - m16) < 2.0, (m12, m16)
    tif = save_outputs(s12, tmp_path / "12.tif")[0]
    written = cv2.imread(str(tif), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.max() <= 4095
    assert np.array_equal(written, s12.result())


def test_a_12_bit_frame_twice_as_bright_and_blown_out_is_kept_out(full) -> None:
    """At 4095 a 12-bit frame is blown out as a 16-bit one is at 65535: a frame at twice the
    exposure (a flash that fired twice), merged at a gain of 0.5, painted its clipped
    highlights grey and tinted into the composite."""

    def brighter(image: np.ndarray, times: float) -> np.ndarray:
        return np.clip(image.astype(np.float32) * times, 0, 4095).astype(np.uint16)

    s = Stacker()
    frames = [in_bits(f, 12) for f in full]
    records = [s.add(brighter(f, 2.0 if i == 3 else 1.0)) for i, f in enumerate(frames)]
    assert not records[3].merged and "blown out over" in (records[3].reason or "")
    assert all(r.merged for i, r in enumerate(records) if i != 3), [r.reason for r in records]


def test_a_dark_16_bit_stack_rises_to_16_bits_at_its_first_brighter_frame(full) -> None:
    """A true 16-bit stack shot dark (peaking at 3000) is taken for 12 bits until a frame goes
    past 4095 (a glint at 60000, 3 pixels wide): from then on it is shown and judged in 16
    bits, and the composite keeps the glint, clipped at no lower level."""
    dark = [np.rint(f * (3000.0 / full[0].max())).astype(np.uint16) for f in full]
    for frame in dark[2:]:
        frame[100:103, 150:153] = 60000
    s = Stacker()
    s.add(dark[0])
    s.add(dark[1])
    assert s.white == 4095
    shown = s.preview()
    assert shown is not None and shown.max() >= 180  # its own level, not 65535's 12
    for frame in dark[2:]:
        assert s.add(frame).merged
    assert s.white == 65535
    assert s.result(crop=False)[98:105, 148:155].max() >= 50000
    shown = s.preview()
    assert shown is not None
    assert shown.max() >= 230 and np.percentile(shown, 50) < 20  # the glint white, the rest dark


def test_a_frame_kept_out_leaves_the_stack_s_white_as_it_was(full, tmp_path: Path) -> None:
    """A 16-bit export of one frame in a 12-bit stack's folder is kept out for its exposure
    (16 times brighter); it raised the stack's white to 65535 all the same, and the JPEG
    composite of the frames merged came out nearly black (7 of 255 on average against 108)."""
    frames = [in_bits(f, 12) for f in full]
    s, twin = Stacker(), stacked(frames)
    for i, frame in enumerate(frames):
        assert s.add(frame).merged
        if i == 1:
            stray = s.add(full[2])
            assert not stray.merged and "exposure" in (stray.reason or "")
    assert s.white == 4095
    ours = cv2.imread(str(save_outputs(s, tmp_path / "s.jpg")[0]), cv2.IMREAD_UNCHANGED)
    theirs = cv2.imread(str(save_outputs(twin, tmp_path / "t.jpg")[0]), cv2.IMREAD_UNCHANGED)
    assert abs(float(ours.mean()) - float(theirs.mean())) < 1.0, (ours.mean(), theirs.mean())
