"""The pyramid merge keeps saturated objects' colour out of a differently focused surround.

Small instances of the glow scene family (:mod:`rig.sim.glow`): 8 frames at 480x320,
defocus sigma up to 8 px. The glow-band bars are set between the merge whose coarse bands and
base were the max-activity choice and the running mean of all frames (32.6 and 37.8 dB on the
two scenes below) and the focus-weighted merge (35.6 and 40.4 dB). Figures at full size are in
benchmarks/README.md (``bench_glow.py``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from evaluation.scoring import central_mask, fitted_psnr
from rig.sim.glow import GlowSpec, GlowStack
from stacker import merge as merge_module
from stacker.merge import PyramidMerger, _doubled
from stacker.stack import Stacker

W, H, N = 480, 320, 8
GLOW_BAR = {("textured", "gather"): 34.5, ("black", "scatter"): 39.0}  # dB
LUMA_BAR = {("textured", "gather"): 40.0, ("black", "scatter"): 44.5}  # dB


def stack(background: str, defocus: str) -> tuple[GlowStack, np.ndarray]:
    spec = GlowSpec(
        width=W,
        height=H,
        seed=5,
        background=background,
        defocus=defocus,
        max_blur_px=8.0,
        n_components=10,
    )
    st = GlowStack(spec, N)
    s = Stacker()
    for f in st:
        s.add(f.image)
    return st, s.result(crop=False)


@pytest.fixture(scope="module")
def black_scatter() -> tuple[GlowStack, np.ndarray]:
    return stack("black", "scatter")


@pytest.mark.parametrize("scene", list(GLOW_BAR))
def test_glow_band_psnr(scene, black_scatter) -> None:
    st, out = black_scatter if scene == ("black", "scatter") else stack(*scene)
    truth = st.truth()
    centre = central_mask(H, W)
    band = centre & st.glow_band()
    glow = fitted_psnr(out, truth, band, fit_mask=centre, luma=False)
    luma = fitted_psnr(out, truth, centre)
    print(f"{scene}: glow band {glow:.2f} dB, luma {luma:.2f} dB")
    assert glow >= GLOW_BAR[scene]
    assert luma >= LUMA_BAR[scene]


def test_flat_black_stays_noise_free(black_scatter) -> None:
    """Far from every object the black background is flat. The composite there keeps less
    than the noise of one frame (every band is a mean of the frames there) and nothing
    coarser: no blotches, no haze (the coarse blend is the mean of the frames where
    none is sharper)."""
    st, out = black_scatter
    far = cv2.distanceTransform(np.where(st.objects(), 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    flat = (far > 3 * st.spec.blur_cap) & central_mask(H, W)
    assert flat.sum() > 5000
    truth = st.truth().astype(np.float32)
    err = out.astype(np.float32) - truth
    noise = float(np.sqrt((err[flat] ** 2).mean()))
    coarse = cv2.blur(err, (15, 15))
    blotches = float(np.sqrt((coarse[flat] ** 2).mean()))
    print(f"flat black: {noise:.2f} levels RMS, of which {blotches:.2f} coarser than 15 px")
    assert noise < st.spec.noise_sigma
    assert blotches < 0.3


def test_outclassed_frames_stay_out_of_fine_bands(black_scatter, monkeypatch) -> None:
    """A frame focused on the black background spreads the defocused objects' edges into the
    fine bands around them, where its activity can beat the frame focused on the objects. The
    tracker's focus measure finds it far less sharp there, so its fine coefficients are not
    taken: the glow band is cleaner than when every active coefficient may win (41.25 against
    40.83 dB on this scene)."""
    st, out = black_scatter
    monkeypatch.setattr(PyramidMerger, "outclassed_by", math.inf)  # the check never fires
    _, unchecked = stack("black", "scatter")
    truth = st.truth()
    centre = central_mask(H, W)
    band = centre & st.glow_band()
    checked_db = fitted_psnr(out, truth, band, fit_mask=centre, luma=False)
    unchecked_db = fitted_psnr(unchecked, truth, band, fit_mask=centre, luma=False)
    print(f"glow band {checked_db:.2f} dB checked, {unchecked_db:.2f} dB unchecked")
    assert checked_db >= unchecked_db + 0.2


def test_quiet_fine_bands_average_the_noise(black_scatter) -> None:
    """Far from every object no frame shows anything but noise in the fine bands. Picking the
    most active coefficient there picks the largest of the frames' noise draws, noisier than
    one frame; the merge takes the frames' mean instead, so the flat black comes out with well
    under one frame's noise (0.30 levels RMS against 0.75 for the first frame and 0.86 for
    the max-activity pick on this scene)."""
    st, out = black_scatter
    far = cv2.distanceTransform(np.where(st.objects(), 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    flat = (far > 3 * st.spec.blur_cap) & central_mask(H, W)
    truth = st.truth().astype(np.float32)
    first = next(iter(st)).image.astype(np.float32)  # frame 0 is in the reference geometry

    def rms(image: np.ndarray) -> float:
        return float(np.sqrt(((image.astype(np.float32) - truth)[flat] ** 2).mean()))

    print(f"flat black: {rms(out):.2f} levels RMS, first frame {rms(first):.2f}")
    assert rms(out) < 0.6 * rms(first)


@pytest.mark.parametrize(("backdrop", "sigma"), [(0, 300.0), (1000, 300.0), (None, 1500.0)])
def test_the_noise_of_a_smooth_background_is_averaged(backdrop: int | None, sigma: float) -> None:
    """Shot noise grows with the signal, and a black velvet (0) or a dark backdrop (1000 of
    65535) often fills part of a macro frame. One noise floor for the whole frame came from
    that darkest tenth, under the noise everywhere else: a smooth gradient beside it kept
    the noise of one frame (1.02 times the quietest frame's, over 8 frames) instead of their
    mean (0.35 with no backdrop). With a floor per brightness class it is the mean again.
    High-ISO noise (about 5 levels) was above the floor's cap: 1.08, noisier than any frame;
    the cap no longer holds where the quietest places are white noise."""
    h, w, n = 240, 320, 8
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 9000 + 30000 * (x / (w - 1)) + 6000 * np.sin(y / h * np.pi)
    scene = np.stack([base * 0.8, base, base * 0.7], axis=2)
    if backdrop is not None:
        scene[: h // 5] = backdrop  # a fifth of the frame
    rng = np.random.default_rng(5)
    s = Stacker(align="none")
    frames = []
    for i in range(n):
        gain = 1.0 if i == 0 else 1 + 0.03 * math.sin(i * 2.1)
        noisy = scene * gain + rng.normal(0.0, sigma, scene.shape) * np.sqrt(scene / 30000.0)
        frames.append(np.clip(np.rint(noisy), 0, 65535).astype(np.uint16))
        s.add(frames[-1])
    gradient = np.s_[(h // 5 if backdrop is not None else 0) + 24 : h - 24, 24 : w - 24]

    def fine(image: np.ndarray) -> float:
        image = image.astype(np.float32)
        return float((image - cv2.GaussianBlur(image, (0, 0), 3))[gradient].std())

    ratio = fine(s.result(crop=False)) / min(fine(f) for f in frames)
    print(f"backdrop {backdrop}, s={sigma}: composite's noise {ratio:.2f} of the quietest frame's")
    assert ratio < 0.5


def test_a_first_frame_sharp_all_over_does_not_set_the_noise_floor() -> None:
    """The fine bands' noise floor comes from the first frame's quietest tenth, which a frame
    sharp nearly all over (the far end of a stack shot far to near, focused on a textured
    ground) puts on its texture: three times it, the texture of every frame was averaged
    away as if it were noise (30.4 dB against 34.7 dB for the same frames near end first).
    The floor is capped at the noise of a high-ISO frame: 33.8 dB."""
    spec = GlowSpec(width=W, height=H, seed=5, background="textured", defocus="gather",
                    max_blur_px=8.0, n_components=10, breathing=0.0, jitter_px=0.0,
                    rotation_deg=0.0)  # fmt: skip
    st = GlowStack(spec, N)
    frames = [f.image for f in st]
    centre = central_mask(H, W)

    def luma_db(shot: list[np.ndarray], far_first: bool) -> float:
        s = Stacker(reference="last" if far_first else "first", far_first=far_first)
        for image in shot:
            s.add(image)
        return fitted_psnr(s.result(crop=False), st.truth(), centre)

    near_first, far_first = luma_db(frames, False), luma_db(frames[::-1], True)
    print(f"luma {near_first:.2f} dB near end first, {far_first:.2f} dB far end first")
    assert far_first >= near_first - 2.0


def test_a_sharp_frame_takes_over_a_surround_only_defocused_frames_had_shown(
    black_scatter, monkeypatch
) -> None:
    """Shot far to near, the frames focused on the black background come first and put the
    defocused objects' spread edges into the fine bands of the black around them, for want of
    anything sharper. The frame focused on an object shows that black flat, with less activity
    than the spill: it takes the fine bands over because it is far sharper than the frames
    they came from. The glow band then comes out as clean as the same frames shot near to far
    (41.79 against 41.25 dB on this scene; 41.27 without the rule)."""
    st, near_first = black_scatter
    frames = [f.image for f in st][::-1]
    truth = st.truth()
    centre = central_mask(H, W)
    band = centre & st.glow_band()

    def glow_db(image: np.ndarray) -> float:
        return fitted_psnr(image, truth, band, fit_mask=centre, luma=False)

    def far_first() -> np.ndarray:
        s = Stacker(reference="last", far_first=True)
        for image in frames:
            s.add(image)
        return s.result(crop=False)

    taken_over = glow_db(far_first())
    monkeypatch.setattr(PyramidMerger, "takes_over_at", math.inf)  # the rule never fires
    kept = glow_db(far_first())
    print(f"glow band far first {taken_over:.2f} dB, {kept:.2f} without the rule; "
          f"near first {glow_db(near_first):.2f}")  # fmt: skip
    assert taken_over >= kept + 0.3
    assert taken_over >= glow_db(near_first) - 0.3


@pytest.mark.parametrize("shape", [(64, 64), (65, 97), (101, 100)])
def test_the_finest_band_takes_its_half_size_decisions_pixel_for_pixel(shape) -> None:
    """Band 0's decisions, made at half size, apply to the 2x2 pixels each stands for, odd
    edges included: as a nearest-neighbour resize would place them."""
    h, w = shape
    small = PyramidMerger(h, w, np.dtype(np.uint8)).decision_shapes[0]
    mask = (np.random.default_rng(h * w).random(small) > 0.5).astype(np.uint8) * 255
    want = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((2 * small[0], 2 * small[1]), np.uint8)
    got = _doubled(mask, np.zeros(small, np.uint16), out)[:h, :w]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("won", ["scattered", "one corner"])
@pytest.mark.parametrize(
    ("shape", "k"),
    [((64, 64), 0), ((131, 97), 0), ((260, 301), 0), ((131, 97), 1), ((300, 301), 1)],
)
def test_a_fine_band_is_applied_in_strips_as_it_would_be_whole(shape, k, won, monkeypatch) -> None:
    """A fine band's new coefficients go in a strip of rows at a time (band 0's decisions,
    made at half size, doubled a strip at a time): where the frame won, and the running mean
    where every frame so far was quiet, across strip boundaries and odd edges, whether the
    frame won all over or in one place."""
    monkeypatch.setattr(merge_module, "APPLY_ROWS", 7)
    h, w = shape
    rng = np.random.default_rng(h + w)
    merger = PyramidMerger(h, w, np.dtype(np.uint8))
    merger.count = 3  # the fourth frame: the mean takes a quarter of it
    small = merger.decision_shapes[k]
    quiet = (rng.random(small) > 0.6).astype(np.uint8) * 255
    quiet[: small[0] // 3] = 0  # strips with no quiet place skip the mean
    take = (rng.random(small) > 0.5).astype(np.uint8) * 255 & ~quiet
    if won == "one corner":
        take[: small[0] // 2] = 0
        take[:, : small[1] // 2] = 0
    merger.bands[k][...] = rng.integers(-500, 500, merger.bands[k].shape)
    merger.fused[k][...] = rng.integers(-500, 500, merger.fused[k].shape)
    band, fused = merger.bands[k].astype(np.float64), merger.fused[k].astype(np.float64)
    bh, bw = merger.shapes[k]
    full_take = cv2.resize(take, (bw, bh), interpolation=cv2.INTER_NEAREST) > 0
    full_quiet = cv2.resize(quiet, (bw, bh), interpolation=cv2.INTER_NEAREST) > 0
    want = np.where(full_take, band, fused)
    want = np.where(full_quiet, np.rint(fused * 0.75 + band * 0.25), want)
    merger._apply(k, take, quiet)
    np.testing.assert_array_equal(merger.fused[k], want)


@pytest.mark.parametrize("shape", [(64, 64), (131, 97), (260, 301), (300, 301)])
def test_the_finest_bands_activity_is_made_in_strips_as_it_would_be_whole(shape, monkeypatch):
    """Band 0's activity (|green| area-averaged to half size, then a 3x3 mean) a strip of rows
    at a time, in a scratch of a few rows, equals the whole plane's, odd widths included; an
    odd height is made whole."""
    monkeypatch.setattr(merge_module, "ACTIVITY_ROWS", 5)
    h, w = shape
    merger = PyramidMerger(h, w, np.dtype(np.uint8))
    green = np.random.default_rng(h * w).integers(-3000, 3000, (h, w)).astype(np.int16)
    merger.bands[0][1] = green
    dh, dw = merger.decision_shapes[0]
    want = cv2.resize(np.abs(green), (dw, dh), interpolation=cv2.INTER_AREA)
    want = cv2.blur(want, (3, 3))
    np.testing.assert_array_equal(merger._band_activity(0), want)
    assert merger._scratch.shape[0] == (h if h % 2 else min(h, 132))


@pytest.mark.parametrize("size", [3, 5])
def test_the_decisions_majority_vote_is_their_median(size) -> None:
    """The vote over each decision's neighbourhood, from a box mean, is the median filter of
    the 0/255 mask, edges included, on noise and on blobs."""
    from stacker.merge import _majority

    rng = np.random.default_rng(size)
    noise = (rng.random((61, 83)) > 0.5).astype(np.uint8) * 255
    blobs = cv2.GaussianBlur(noise, (0, 0), 2.0)
    for mask in (noise, np.where(blobs > 127, 255, 0).astype(np.uint8)):
        np.testing.assert_array_equal(_majority(mask.copy(), size), cv2.medianBlur(mask, size))
