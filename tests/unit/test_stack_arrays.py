"""The Stacker fed numpy arrays from Python, as a camera SDK or a notebook gives them: greyscale
frames, floats, other layouts, and stackers let go of or left empty."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from rig.sim.scene import SceneSpec, SyntheticStack
from stacker.errors import StackerError
from stacker.output import save_outputs
from stacker.stack import Stacker


@pytest.fixture(scope="module")
def colour() -> list[np.ndarray]:
    return [f.image for f in SyntheticStack(SceneSpec(width=320, height=240, seed=3), 5)]


@pytest.fixture(scope="module")
def grey(colour: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in colour]


def stacked(frames: list[np.ndarray], **kw: object) -> Stacker:
    s = Stacker(**kw)  # type: ignore[arg-type]
    for i, frame in enumerate(frames):
        assert s.add(frame, position_um=10.0 * i).merged
    return s


@pytest.mark.parametrize("method", ["pyramid", "depthmap"])
def test_a_greyscale_stack_gives_a_greyscale_composite(grey, method: str) -> None:
    """A mono camera's frames came back as a three-channel composite: a (h, w) array in gave
    (h, w, 3) out, and the files written were colour images three times the size."""
    s = stacked(grey, method=method)
    assert s.greyscale
    out = s.result(crop=False)
    assert out.shape == grey[0].shape and out.dtype == np.uint8
    # The same pixels as the colour pipeline's three equal channels (also how a greyscale
    # file is read), and as frames of shape (h, w, 1).
    tripled = stacked([cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in grey], method=method)
    assert tripled.greyscale and np.array_equal(tripled.result(crop=False), out)
    one_channel = stacked([g[:, :, None] for g in grey], method=method)
    assert np.array_equal(one_channel.result(), s.result())
    assert s.depth_index().shape == s.result().shape


def test_a_greyscale_stack_is_written_grey_in_8_and_16_bits(grey, tmp_path: Path) -> None:
    s = stacked(grey)
    written = save_outputs(s, tmp_path / "out.png", depth_path=tmp_path / "depth.png")
    png = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert png.shape == s.result().shape and png.dtype == np.uint8
    s16 = stacked([g.astype(np.uint16) * 16 for g in grey])  # 12 bits in 16, as cameras give
    save_outputs(s16, tmp_path / "out.tif")
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert page.samplesperpixel == 1
        assert np.array_equal(page.asarray(), s16.result())


def test_a_stack_is_greyscale_only_while_every_merged_frame_is(colour, grey) -> None:
    assert not stacked(colour).greyscale and stacked(colour).result().ndim == 3
    assert not Stacker().greyscale  # nothing merged yet
    s = stacked(grey[:3])
    tinted = cv2.cvtColor(grey[3], cv2.COLOR_GRAY2BGR)
    tinted[:, :, 2] = cv2.add(tinted[:, :, 2], 2)  # too little colour to be kept out
    assert s.add(tinted).merged
    assert not s.greyscale and s.result().ndim == 3


def test_float_frames_stack_as_float_tiffs_are_read(colour) -> None:
    """A microscope camera's or a flat-field correction's floats were refused ("use 8 or 16
    bits") while the same pixels saved as a float TIFF stacked: now put in 16 bits the same
    way, 1.0 white, or the first frame's brightest pixel where that is brighter."""
    sixteen = stacked([image.astype(np.uint16) * 257 for image in colour]).result()
    ones = stacked([(image / 255.0).astype(np.float32) for image in colour]).result()
    assert ones.dtype == np.uint16 and np.array_equal(ones, sixteen)
    # float64 of 0..255 (numpy arithmetic on 8-bit frames): the first frame's brightest is white
    assert colour[0].max() == 255
    assert np.array_equal(stacked([image.astype(np.float64) for image in colour]).result(), sixteen)


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.bool_])
def test_integers_other_than_8_and_16_bit_unsigned_are_a_one_line_error(colour, dtype) -> None:
    """An int64 array of 8-bit values (what numpy's arithmetic on uint8 frames makes) must not
    be scaled from its type's range into a black frame, nor fail inside OpenCV."""
    with pytest.raises(
        StackerError,
        match=rf"^a: unsupported pixel type {np.dtype(dtype)}; give uint8 or uint16 \(a\.astype",
    ):
        Stacker().add(colour[0].astype(dtype), name="a")


def test_an_unsupported_layout_says_which_are_supported(colour) -> None:
    with pytest.raises(
        StackerError,
        match=r"^a: unsupported image layout \(240, 320, 2\); give height x width \(greyscale\)",
    ):
        Stacker().add(colour[0][:, :, :2], name="a")


def test_an_empty_stack_s_depth_map_is_a_stacker_error() -> None:
    """A depth map asked of a stacker before any frame was merged failed on a bare assert."""
    for read in ("depth_index", "depth_frames", "depth_frames_small", "depth_um", "depth_preview"):
        with pytest.raises(StackerError, match=r"^no frame has been merged yet$"):
            getattr(Stacker(), read)()


def test_a_stacker_let_go_mid_stack_is_freed_without_the_cycle_collector(colour) -> None:
    """The background merge's closure held its stacker, and the stacker held the merge: a
    stacker let go before its last merge was waited for (its caller's loop raised) kept its
    merge state and buffers until the cycle collector ran."""
    gc.disable()
    try:
        s = Stacker()
        for image in colour[:3]:
            s.add(image)
        freed = weakref.ref(s)
        del s
        for thread in threading.enumerate():  # the merge runs to its end
            if thread.name.startswith("stacker-merge-"):
                thread.join()
        assert freed() is None
    finally:
        gc.enable()


def test_two_stacks_at_once_give_what_each_gives_alone(colour, grey) -> None:
    """As the README says: each Stacker is independent, on one thread or two."""
    alone = [stacked(colour).result(), stacked(grey).result()]
    results: list[np.ndarray] = [np.empty(0), np.empty(0)]

    def run(k: int, frames: list[np.ndarray]) -> None:
        results[k] = stacked(frames).result()

    threads = [threading.Thread(target=run, args=(k, f)) for k, f in enumerate((colour, grey))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(a, b) for a, b in zip(alone, results, strict=True))
