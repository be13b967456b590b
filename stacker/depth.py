"""Depth map from the focus tracker's state: sub-frame peaks, confidence, edge-aware fill, legend.

The merger's :class:`~stacker.merge.FocusTracker` keeps, per pixel and in constant memory, the
focus measure of the best frame and of the frames merged just before and just after it. From
those three samples of the pixel's focus curve this module makes a depth map worth using:

1. **Sub-frame peak.** A parabola through the logarithms of the three measures (Gaussian
   interpolation of the focus curve: a focus measure falls off about as a Gaussian of the focus
   error, so its logarithm is close to a parabola near the peak; the three-point fit of Nayar &
   Nakagawa, "Shape from focus", 1994) puts the peak between frames, so depth in µm is finer
   than the step.
2. **Confidence**: how far the best frame's measure stands above the image's noise floor.
3. **Halo removal and fill**: near depths that bleed into a differently coloured surround lose
   their confidence, and low-confidence pixels take the depth of confident neighbours of the
   same colour in the composite (normalised convolution through an edge-aware recursive
   filter), so textureless areas follow their own borders and depth steps stay on the
   composite's edges. A flat region whose border is mostly the textured surround's depth then
   takes the depth its outline shows as its own (:mod:`stacker.depth_regions`).
4. **Colour preview with a legend**: near blue, far red (turbo), and a bar that maps the colours
   to micrometres (or to frame numbers when focus positions are unknown).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

from stacker.cvtyping import cv

LOW_CONFIDENCE = 0.05  # confidence below which a pixel's depth is replaced by its neighbours'
_SIGMA_R = 0.05  # colour step (sum over channels, guide in 0..1) that stops the fill
_SPREAD_FLOOR = 0.1  # added to a side's colour spread (guide units) when judging halos
_UNREACHED = 1e-5  # fill certainty (confidence that reached a pixel) below which it has none


def subframe_peak(best: np.ndarray, prev: np.ndarray, nxt: np.ndarray, floor: float) -> np.ndarray:
    """Offset of the focus peak from the best frame, in frames (-0.5..0.5).

    ``best``, ``prev`` and ``nxt`` are focus measures of the best frame and of the frames
    before and after it (negative where that neighbour is unknown: the best frame is the first
    or last one, or the neighbour did not cover the pixel). ``floor`` is the measure of a
    textureless frame (noise level): it keeps logarithms of tiny measures from deciding.
    Without a neighbour on one side there is no peak to fit: the offset is 0 there.
    """
    lb = np.log(np.maximum(best, 0) + np.float32(floor))
    has_p, has_n = prev >= 0, nxt >= 0
    lp = np.where(has_p, np.log(np.maximum(prev, 0) + np.float32(floor)), lb)
    ln = np.where(has_n, np.log(np.maximum(nxt, 0) + np.float32(floor)), lb)
    fall_p, fall_n = lb - lp, lb - ln
    curvature = fall_p + fall_n
    fit = has_p & has_n & (curvature > 1e-6)
    offset = np.zeros(best.shape, np.float32)
    np.divide(0.5 * (fall_p - fall_n), curvature, out=offset, where=fit)
    np.clip(offset, -0.5, 0.5, out=offset)
    return offset


TEXTURE_FILLS = 0.01
"""The share of pixels above the noise floor under which the least textured 2 % of a frame is
taken for texture, not noise (:func:`confidence`)."""


def confidence(best: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """How far each pixel's best focus measure stands above the noise floor, as 0..1.

    The floor is the measure of the least textured 2 % of the image (sensor noise and JPEG
    blocks: in a stack of a real subject some of the frame is usually out of texture); a pixel
    twice the floor or less gets 0, one far above it close to 1. Where that leaves under 1 %
    of the pixels any weight, texture fills the frame (fabric, paper, a mineral face: its least
    textured 2 % is texture too), and every pixel's own peak is all there is: each gets 1. With
    no confident pixel to fill from, the whole map fell to the near end. (Statistics of the
    measure alone cannot tell such texture from the noise of a plain ground around a small
    subject, whose own pixels keep this from applying.) Where the best frame barely
    stands above noise the winner was chosen by noise, whatever its neighbours in the stack.
    (The parabola's curvature, the contrast with the neighbouring frames, ranks pixels worse
    on the synthetic stacks of ``benchmarks/bench_depth.py``: it is largest in the halos of
    strong edges, where a defocused edge spreads into its surround.) ``reference`` (default:
    ``best``) is the map the floor is taken from, so that another measure (the runner-up
    peak's) is judged against the same floor.
    """
    if best.size == 0:
        return np.zeros_like(best)
    floor = max(float(np.percentile(best if reference is None else reference, 2)), 1e-6)
    w = 1.0 - np.float32(2.0 * floor) / np.maximum(best, np.float32(1e-6))
    np.clip(w, 0.0, 1.0, out=w)
    if reference is None and np.count_nonzero(w) < TEXTURE_FILLS * w.size:
        return np.ones_like(w, dtype=np.float32)
    return (w * w).astype(np.float32)


def resolve_occlusions(
    frames: np.ndarray,
    peaks: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    radius: int,
    *,
    share: float = 0.1,
    trust: float = 0.5,
    across: Sequence[tuple[int, int]] = (),
) -> np.ndarray:
    """``frames`` with each pixel's runner-up focus peak where its best one is borrowed.

    ``peaks`` is (best measure, its frame, runner-up measure, its frame) per pixel, as the
    :class:`~stacker.merge.FocusTracker` keeps them. Beside an occlusion edge the focus curve
    has two humps: one at the depth of the pixel's own surface and one at the depth of the
    surface across the edge, whose sharp texture or outline the focus window reaches. The
    larger hump is often the other side's (inside a flat shape in front of a textured ground,
    the ground's texture outweighs the shape's own outline), so the fill would give a flat
    shape the surround's depth. A borrowed peak is a weak tail of a stronger source of the same
    depth nearby; a pixel's own peak is close to the strongest of its depth around it. So each
    peak's measure is divided by the largest measure of that depth (within one frame, best or
    runner-up) within ``radius`` pixels, and the runner-up replaces the best where its ratio is
    the higher. Only runner-ups at least two frames from the best, at least ``share`` of its
    measure and with a confidence (:func:`confidence`, the best map's floor) above ``trust``
    are considered: in flat areas noise makes humps of its own. Nor are a best and a runner-up
    that are the two frames ``across`` a blurred one (pairs of frame indices): the blurred
    frame's dip makes one hump look like two.
    """
    best, index, second, second_index = peaks
    candidate = (
        (second >= share * best)
        & (np.abs(second_index.astype(np.int32) - index.astype(np.int32)) >= 2)
        & (confidence(second, best) > trust)
    )
    for a, b in across:
        one_hump = ((index == a) & (second_index == b)) | ((index == b) & (second_index == a))
        candidate &= ~one_hump
    if not candidate.any():
        return frames
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    count = int(max(index.max(), second_index.max())) + 1
    runner = np.where(candidate, second_index.astype(np.int32), -2)

    def source(k: int) -> np.ndarray:
        """The measure of frame ``k``'s depth at each pixel: its best or runner-up peak."""
        return np.maximum(np.where(index == k, best, 0), np.where(runner == k, second, 0))

    own = np.zeros(best.shape, np.float32)
    other = np.zeros(best.shape, np.float32)
    window = [np.zeros(best.shape, np.float32), source(0)]  # frames k-1 and k
    for k in range(count):
        window.append(source(k + 1))
        reach = cv2.dilate(np.maximum(np.maximum(window[0], window[1]), window[2]), kernel)
        np.divide(best, reach, out=own, where=(index == k) & (reach > 0))
        np.divide(second, reach, out=other, where=(runner == k) & (reach > 0))
        window.pop(0)
    switch = candidate & (other > own)
    return np.where(switch, second_index.astype(np.float32), frames).astype(np.float32)


def fill(
    frames: np.ndarray,
    weight: np.ndarray,
    guide: np.ndarray,
    *,
    threshold: float = LOW_CONFIDENCE,
    sigma_s: float | None = None,
    sigma_r: float = _SIGMA_R,
    iterations: int = 3,
) -> np.ndarray:
    """Replace low-confidence depths (``weight`` < ``threshold``) with confident neighbours'.

    Confidence-weighted normalised convolution (Knutsson & Westin 1993) through an edge-aware
    recursive filter guided by the composite: the domain transform of Gastal & Oliveira
    ("Domain transform for edge-aware image and video processing", 2011), ``iterations`` rounds
    of horizontal and vertical passes (fewer is cheaper, with more streaks along rows). Depth
    spreads far (``sigma_s``, default a sixth of the long side) through areas of even colour
    and stops at colour edges (``sigma_r``, in 0..1 guide units summed over channels), so a
    textureless shape takes the depth of its own borders rather than that of the background
    beside it. Confident pixels keep their own value. A pixel that no confident pixel reaches
    through the colour edges (an island of its own colour, such as a glyph whose depths were
    all distrusted as halos) takes :func:`push_pull`'s estimate from the confident pixels
    nearest it, whatever their colour: the normalised convolution has nothing to divide there,
    and gave such islands the nearest frame's depth (0.3 to 0.5 point of the board stacks of
    ``benchmarks/bench_depth.py``).
    """
    h, w = frames.shape
    g = _unit_guide(guide)
    spread = float(sigma_s) if sigma_s is not None else max(h, w) / 6.0
    ratio = np.float32(spread / sigma_r)
    dx = np.ones((h, w), np.float32)
    dy = np.ones((h, w), np.float32)
    dx[:, 1:] += ratio * np.abs(np.diff(g, axis=1)).sum(axis=2)
    dy[1:, :] += ratio * np.abs(np.diff(g, axis=0)).sum(axis=2)
    dx_t = np.ascontiguousarray(dx.T)
    stack = np.dstack([frames * weight, weight]).astype(np.float32)
    for it in range(iterations):
        sigma = spread * np.sqrt(3.0) * 2.0 ** (iterations - it - 1) / np.sqrt(4.0**iterations - 1)
        a = np.float32(np.exp(-np.sqrt(2.0) / sigma))
        # Both passes scan along axis 0, whose rows are contiguous (several times faster).
        turned = np.ascontiguousarray(stack.transpose(1, 0, 2))
        _recursive_pass(turned, np.power(a, dx_t))
        stack = np.ascontiguousarray(turned.transpose(1, 0, 2))
        _recursive_pass(stack, np.power(a, dy))
    filled = stack[..., 0] / np.maximum(stack[..., 1], np.float32(1e-12))
    unreached = stack[..., 1] < _UNREACHED
    if unreached.any():
        np.copyto(filled, push_pull(frames, weight, threshold=np.inf), where=unreached)
    return np.where(weight < threshold, filled, frames).astype(np.float32)


def push_pull(
    frames: np.ndarray, weight: np.ndarray, *, threshold: float = LOW_CONFIDENCE
) -> np.ndarray:
    """A cheap fill of low-confidence depths (``weight`` < ``threshold``): push-pull.

    Gortler et al. ("The lumigraph", 1996): the confidence-weighted depth and the confidence
    are averaged down a Gaussian pyramid (push), then each level, from the coarsest up, keeps
    its own weighted mean where its confidence is high and takes the coarser level's estimate
    where it is low (pull). Not edge-aware, but a few pyramid steps: the live preview uses it
    after every frame.
    """
    levels = [(frames * weight, weight)]
    while min(levels[-1][1].shape) > 8:
        wd, w = levels[-1]
        levels.append((cv2.pyrDown(wd), cv2.pyrDown(w)))
    wd, w = levels[-1]
    est = wd / np.maximum(w, np.float32(1e-6))
    for wd, w in reversed(levels[:-1]):
        up = cv2.pyrUp(est, dstsize=(w.shape[1], w.shape[0]))
        alpha = np.minimum(w * np.float32(1.0 / 0.25), np.float32(1.0))
        est = alpha * (wd / np.maximum(w, np.float32(1e-6))) + (1 - alpha) * up
    return np.where(weight < threshold, est, frames).astype(np.float32)


def distrust_halos(
    frames: np.ndarray, weight: np.ndarray, guide: np.ndarray, radius: int, *, jump: float = 1.5
) -> np.ndarray:
    """``weight`` with halo pixels set to 0: depths that have the other side's colour.

    Beside a sharp edge at one depth over a surround at another, the surround's focus measure
    picks up the edge's energy (and, in the frames focused on the surround, the defocused
    object's light veils it), so a band of surround takes the object's depth with full
    confidence; the other way round, the edge of a flat object takes the depth of the textured
    surround its focus window reaches. Where the depth within ``radius`` spans more than
    ``jump`` frames, a pixel on either side whose colour is closer to the mean colour of the
    other side's pixels around it than to that of its own side's is such a halo: it loses its
    confidence and the fill gives it the depth of its own colour's neighbours. (Judging only
    near-side pixels, as halos of raised objects, left a third more pixels over one frame off
    on the board stacks of ``benchmarks/bench_depth.py``.)

    Each distance is in units of that side's colour spread (the sum over channels of its
    standard deviation, plus :data:`_SPREAD_FLOOR`): a side of two colours, such as a black
    chip with white lettering, has a mean colour far from both, and a plain distance took the
    chip's black for the dark ground's beside it, so the whole chip lost its depth (1.5 to 2
    points on three of eight board stacks; on the shapes stacks within 0.3 point either way).
    """
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    lo, hi = cv2.erode(frames, kernel), cv2.dilate(frames, kernel)
    near_side = frames < (lo + hi) * np.float32(0.5)
    far_side = frames > (lo + hi) * np.float32(0.5)  # neither where there is no step
    trusted = weight > LOW_CONFIDENCE
    g = _unit_guide(guide)
    distance = []
    for side in (near_side & trusted, far_side & trusted):
        mask = side.astype(np.float32)
        count = _box(mask, radius)
        per_pixel = 1.0 / np.maximum(count, 1e-6)[..., None]
        mean = _box(g * mask[..., None], radius) * per_pixel
        spread = np.sqrt(
            np.maximum(_box(g * g * mask[..., None], radius) * per_pixel - mean * mean, 0)
        )
        distance.append(
            (np.abs(g - mean).sum(axis=2) / (spread.sum(axis=2) + _SPREAD_FLOOR), count)
        )
    (to_near, near_count), (to_far, far_count) = distance
    step = (hi - lo) > jump
    halo = step & near_side & (to_far < to_near) & (far_count > 1e-3)
    halo |= step & far_side & (to_near < to_far) & (near_count > 1e-3)
    return np.where(halo, np.float32(0), weight).astype(np.float32)


def refine(
    frames: np.ndarray,
    weight: np.ndarray,
    guide: np.ndarray,
    *,
    halo_px: float,
    rounds: int = 1,
    iterations: int = 3,
) -> np.ndarray:
    """Fill, then halo removal and fill again ``rounds`` times (each round judging halos on
    the last fill). ``halo_px`` is the reach of halos at this size (the radius of
    :func:`distrust_halos`); ``iterations`` is passed to :func:`fill`. One round scores as
    well as two on the stacks of ``benchmarks/bench_depth.py`` (within 0.5 points on every
    stack, the same on average) for two fills instead of three; two iterations instead of
    three would save little more and leave streaks along rows in flat patches.
    """
    radius = max(1, round(halo_px))
    out = fill(frames, weight, guide, iterations=iterations)
    for _ in range(rounds):
        weight = distrust_halos(out, weight, guide, radius)
        out = fill(frames, weight, guide, iterations=iterations)
    return out


def snap_edges(
    frames: np.ndarray, guide: np.ndarray, detail: np.ndarray, *, jump: float = 2.0
) -> np.ndarray:
    """The depth map ``frames`` (at ``guide``'s size) upsampled to the size of ``detail`` with
    its depth steps moved onto the edges of ``detail``.

    ``guide`` and ``detail`` are the composite at the two sizes. Bilinear upsampling smears a
    step across a pixel of the small map, which is several pixels of the output: along every
    outline a band of intermediate depths that belongs to neither side. Where the depths
    around a small-map pixel (3x3) span more than ``jump`` frames, each output pixel takes
    instead the lowest or the highest of them, whichever belongs to the pixel whose colour in
    ``guide`` is closer to its own colour in ``detail`` (a joint upsampling in the manner of
    Kopf et al., "Joint bilateral upsampling", 2007, with the two extremes as the only
    candidates, so it costs a few resizes). Elsewhere the map is upsampled bilinearly.

    A single pixel's colour misleads where it is mixed (antialiased rims, noise, JPEG
    ringing): such pixels take the other side's depth and leave a speckled fringe along the
    outlines. So the snapped pixels then take the median of the snapped map over 5x5 around
    them, which keeps straight and gently curved steps where they are and removes specks
    smaller than the window's half (a mode filter of the two sides, in effect). On the
    stacks of ``benchmarks/bench_depth.py`` this gains 0.1 to 0.5 point on every one; a
    colour vote over 3x3 or 5x5 instead of a single pixel's colour gains at most 0.2. Steps of
    two frames or less are left bilinear: a wrong pick there costs more than the smear (with
    the median, 0 to 0.4 point better on every stack than from one frame).

    Each side's colour is :func:`_side_colours`' (the mean of that side's small-map pixels
    around, not the one pixel at the extreme, which often straddles the outline), and colours
    are compared in YCrCb, each channel weighted alike: within one surface colour varies
    mostly in brightness (texture, shading, noise), while two surfaces differ in hue too, and
    a brightness step counts three times in BGR (once per channel) but once in YCrCb. (Luma
    alone, or luma weighted twice or more, loses saturated shapes of a brightness like their
    ground's.) Together 0.02 to 0.6 point on each of 27 stacks of
    ``benchmarks/bench_depth.py``, most of it beside depth steps, where a quarter of the
    pixels took the other side's depth.
    """
    size = (detail.shape[1], detail.shape[0])
    kernel = np.ones((3, 3), np.uint8)
    lo, hi = cv2.erode(frames, kernel), cv2.dilate(frames, kernel)
    if detail.ndim == 3:
        detail = cv2.cvtColor(detail, cv2.COLOR_BGR2YCrCb)
        guide = cv2.cvtColor(guide, cv2.COLOR_BGR2YCrCb)
    lo_colour, hi_colour = _side_colours(frames, guide, lo, hi)

    def up(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, size, interpolation=cv2.INTER_LINEAR)

    # mean absolute difference over the channels, in the composite's own type (cheap)
    mean = np.full((1, detail.shape[2]), 1.0 / detail.shape[2]) if detail.ndim == 3 else None

    def distance(colour: np.ndarray) -> np.ndarray:
        diff = cv2.absdiff(detail, up(colour))
        return diff if mean is None else cv2.transform(diff, mean)

    nearer = cv2.compare(distance(lo_colour), distance(hi_colour), cv2.CMP_LT)
    lo_up, hi_up = up(lo), up(hi)
    step = cv.compare(cv2.subtract(hi_up, lo_up), jump, cv2.CMP_GT)
    cv2.copyTo(lo_up, nearer, hi_up)  # hi_up is the snapped map from here on
    out = up(frames)
    cv2.copyTo(hi_up, step, out)
    cv2.copyTo(cv2.medianBlur(out, 5), step, out)
    return out


def _side_colours(
    frames: np.ndarray, guide: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, radius: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The colours of the near and far sides of each small-map pixel's step, in ``guide``'s
    type: the mean colour of the pixels within ``radius`` whose depth lies within half a frame
    of ``lo`` (the near side) or of ``hi`` (the far side).

    The map is coarser than the composite, so the pixel at a step's extreme depth is often
    on the outline itself, its colour a mix of both sides (antialiasing, defocus, chroma
    subsampling): with it as the side's colour a quarter of the pixels beside the steps of
    ``benchmarks/bench_depth.py``'s stacks took the other side's depth. The mean over the
    side's pixels around is mostly its interior's colour (a 3x3 window instead of 5x5 gains
    under half as much).
    """
    h, w = frames.shape
    r = radius
    padded = cv2.copyMakeBorder(frames, r, r, r, r, cv2.BORDER_REPLICATE)
    colours = cv2.copyMakeBorder(guide, r, r, r, r, cv2.BORDER_REPLICATE).astype(np.float32)
    bounds = ((lo + np.float32(0.5), cv2.CMP_LE), (hi - np.float32(0.5), cv2.CMP_GE))
    sums = [np.zeros(guide.shape, np.float32) for _ in bounds]
    counts = [np.zeros((h, w), np.float32) for _ in bounds]
    mask = np.empty((h, w), np.uint8)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            value, colour = padded[dy : dy + h, dx : dx + w], colours[dy : dy + h, dx : dx + w]
            for (bound, op), total, count in zip(bounds, sums, counts, strict=True):
                cv2.compare(value, bound, op, dst=mask)
                cv2.add(total, colour, dst=total, mask=mask)
                cv.add(count, 1.0, dst=count, mask=mask)
    # no count is 0: the pixels of the 3x3 extremes lie in the window
    near, far = (
        (total / (count[..., None] if total.ndim == 3 else count)).astype(guide.dtype)
        for total, count in zip(sums, counts, strict=True)
    )
    return near, far


def _box(a: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(a, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def _recursive_pass(stack: np.ndarray, feedback: np.ndarray) -> None:
    """One causal and one anti-causal first-order recursive pass along axis 0, in place.

    ``stack`` is (n, m, channels), ``feedback`` (n, m): row i's coefficient toward row i-1.
    """
    n = stack.shape[0]
    step = np.empty_like(stack[0])
    for i in range(1, n):
        np.subtract(stack[i - 1], stack[i], out=step)
        step *= feedback[i][:, None]
        stack[i] += step
    for i in range(n - 2, -1, -1):
        np.subtract(stack[i + 1], stack[i], out=step)
        step *= feedback[i + 1][:, None]
        stack[i] += step


def _unit_guide(guide: np.ndarray) -> np.ndarray:
    """The guide as float32 BGR scaled to 0..1 (by its dtype's range)."""
    g = guide if guide.ndim == 3 else cv2.cvtColor(guide, cv2.COLOR_GRAY2BGR)
    top = 65535.0 if g.dtype == np.uint16 else 255.0 if g.dtype == np.uint8 else 1.0
    return cv.multiply(g, 1.0 / top, dtype=cv2.CV_32F)


# ------------------------------------------------------------------ colour preview and legend
def colorize(frames: np.ndarray, count: int) -> np.ndarray:
    """A depth map in frames (0 .. count-1, fractional allowed) as BGR: near blue, far red."""
    top = max(1, count - 1)
    scaled = cv2.convertScaleAbs(frames.astype(np.float32), alpha=255.0 / top)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)


def legend_ticks(
    count: int,
    positions_um: Sequence[float] | None,
    numbers: Sequence[int] | None = None,
    *,
    ticks: int = 5,
) -> list[tuple[float, str]]:
    """(frame, label) pairs along the colour bar: µm when positions are known, else frames.

    ``positions_um`` are the focus positions of frames 0 .. count-1 (None when unknown) and
    ``numbers`` their numbers (by default from 1, as users see frames everywhere else).
    Labels use "um", since the preview's font has no µ, with the decimals that tell the ticks
    apart (whole micrometres labelled a 3 µm stack "0, 1, 2, 2, 3 um").
    """
    top = max(1, count - 1)
    if positions_um is not None and len(positions_um) == count:
        at = np.asarray(positions_um, np.float64)
        apart = abs(float(at[-1] - at[0])) / (ticks - 1)
        decimals = 0 if apart >= 5 else 1 if apart >= 0.5 else 2 if apart >= 0.05 else 3
        return [
            (f, f"{float(np.interp(f, np.arange(count), at)):.{decimals}f} um")
            for f in (top * k / (ticks - 1) for k in range(ticks))
        ]
    out = []
    for k in range(ticks):
        f = round(top * k / (ticks - 1))  # ticks on whole frames
        shown = numbers[f] if numbers is not None and f < len(numbers) else f + 1
        out.append((float(f), f"frame {shown}"))
    return out


def add_legend(
    image: np.ndarray,
    count: int,
    positions_um: Sequence[float] | None = None,
    numbers: Sequence[int] | None = None,
) -> np.ndarray:
    """The colourised depth ``image`` with a colour bar and its labels below it (a new image).

    The bar runs the whole width, from frame 0 (left) to the last frame, coloured exactly as
    :func:`colorize` colours them, with tick labels in µm (or frame numbers). It is drawn
    below the map, so no part of the map is hidden.
    """
    h, w = image.shape[:2]
    return np.vstack([image, legend_strip(w, count, positions_um, numbers, h=h)])


def legend_strip(
    w: int,
    count: int,
    positions_um: Sequence[float] | None = None,
    numbers: Sequence[int] | None = None,
    *,
    h: int | None = None,
) -> np.ndarray:
    """The legend :func:`add_legend` draws below a map ``w`` pixels wide and ``h`` tall
    (read-only, shared)."""
    um = None if positions_um is None else tuple(float(p) for p in positions_um)
    shown = None if numbers is None else tuple(int(n) for n in numbers)
    return _legend_strip(w, w if h is None else min(w, 3 * h), count, um, shown)


@functools.lru_cache(maxsize=8)
def _legend_strip(
    w: int,
    span: int,
    count: int,
    positions_um: tuple[float, ...] | None,
    numbers: tuple[int, ...] | None,
) -> np.ndarray:
    """The legend of :func:`add_legend` for a map ``w`` pixels wide, its labels sized for a
    picture ``span`` wide (cached: the live preview draws the same one after every frame until
    the stack grows)."""
    # The labels grow with the map: the picture is looked at fitted to a screen, often a phone's
    # 360 px, and at a fixed size they shrank to a pixel or two on a camera's 6000 px wide map.
    # At w / 1000 their digits stand about 2 % of the width tall (7 px on that phone) and five
    # labels of up to eight characters still fit side by side. A map far wider than tall (a
    # line scan's strip) is fitted to the screen by its width all the same, but labels sized by
    # that width made a strip taller than the map, 5,000 rows under a 48-row map 60,000 wide
    # (2 GB): there they grow with three heights at most.
    scale = max(0.35, span / 1000)
    thick = max(1, round(scale * 2))
    (_, text_h), base = cv2.getTextSize("0123456789 um", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    bar_h = max(8, round(text_h * 1.2))
    pad = max(3, text_h // 3)
    strip = np.full((pad + bar_h + pad + text_h + base + pad, w, 3), 32, np.uint8)
    # A map a few pixels wide (a tall strip's preview) has no room for margins: the bar fills it.
    margin = max(4, w // 40) if w >= 16 else 0
    inner = w - 2 * margin
    ramp = np.linspace(0, max(1, count - 1), inner, dtype=np.float32)[None, :]
    strip[pad : pad + bar_h, margin : margin + inner] = colorize(
        np.repeat(ramp, bar_h, axis=0), count
    )
    y_text = pad + bar_h + pad + text_h
    for f, label in legend_ticks(count, positions_um, numbers):
        x = margin + round(f / max(1, count - 1) * (inner - 1))
        cv2.line(strip, (x, pad + bar_h - 1), (x, pad + bar_h + pad // 2), (255, 255, 255), 1)
        (tw, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        tx = min(max(2, x - tw // 2), w - tw - 2)
        cv2.putText(strip, label, (tx, y_text), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235),
                    thick, cv2.LINE_AA)  # fmt: skip
    strip.flags.writeable = False  # shared between calls
    return strip
