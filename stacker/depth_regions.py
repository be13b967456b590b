"""Depth for textureless regions of one colour, from the focus peaks along their outlines.

A flat shape (a saturated label, a glyph, a painted part) has no texture inside: its pixels'
focus peaks are noise, and the fill of :mod:`stacker.depth` gives it the depth of its border.
But beside a textured surround the border lies: the surround's texture, sharp in the frames
focused on the surround, outweighs the shape's own outline in the focus window, so the best
peak all round a shape in front of a textured ground is the ground's depth, and the shape's own
depth survives only as the runner-up peak the :class:`~stacker.merge.FocusTracker` keeps. The
ground's depth there is *borrowed*: it is also the depth of the ground a little further out.

So each textureless region votes. Around its outline, every confident best or runner-up peak
whose depth the surround beyond the outline does not also have nearby is the region's own
evidence; where such evidence agrees on one depth over enough of the outline (the votes' mean
over three frames, so finer than the step), the region's pixels more than half a frame from it
take the region's depth. A region with no such evidence (a flat patch of the ground itself, or
a shape at the ground's depth) is left as the fill made it, unless the ground around it is
tilted or bowed: then it takes the plane or the curve the surround's depths lie on
(:func:`_tilted_fill`), where the fill had flattened it. Each voted region is judged a second
time with its neighbours as voted, so that a nearer flat neighbour's outline, which the fill
had not yet given the neighbour's depth, is not taken for its own. The pixels of a voted
region's colour along its edge, which the flatness test leaves out, then take its depth too
(:func:`_take_rim`). Pieces of one colour that meet only at corners (a part cut by its
lettering) vote as one region (:func:`_voting_regions`), and so do pieces of one colour facing
each other across a narrow band (a part cut right across by its lettering). A region of more
than one colour is left alone: two flat shapes of similar colour that touch make one connected
region, which need not be one surface. On the synthetic stacks of ``benchmarks/bench_depth.py``
the share of pixels within a frame of the truth goes from 96.2-98.2 % to 97.0-98.8 % on the
``shapes`` stacks of seeds 1-8, and up on each of the six held-out ones (seeds 9-14, by 0.1 to
2.5 points); the ``board`` stacks move by 0.4 point at most (board 11 +0.4, board 14 -0.2).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from stacker import depth

_FLAT = 0.08  # colour spread (sum over channels of the std over 5x5, guide in 0..1) of "flat"
_TRUST = 0.3  # confidence (:func:`stacker.depth.confidence`) a peak needs to count as evidence
_AGREE = 0.1  # share of the outline whose own evidence must agree (within a frame)
_AGREE_AT_ENDS = 0.25  # the same for a depth within a frame of the stack's first or last
_BEHIND = 0.5  # frames beyond the farthest surround within which an outline peak may be own
_BAND = 0.7  # halo reaches across which flat pieces of one colour vote as one (lettering)
_PIECE = 0.2  # least share of its group's largest piece a piece joining across a band has
_MAX_AREA = 0.35  # regions over this share of the map are the backdrop, not objects: left alone
_ONE_COLOUR = 0.9  # share of a region's pixels within _FLAT of its median colour: one colour
_NEAR = 1.5  # frames within which the surround "has" a depth
_SPAN = (0.1, 0.9)  # quantiles of a piece's fill taken as its middle (:func:`_one_surface`)
_SURROUND_SHARE = 0.1  # share of the surround that must have a depth for it to be borrowed
_RAISED = 3.0  # times the surround's share (within half a frame) a raised region's outline has
_SPLIT_OWN = 0.2  # least share of a region's fill within a frame of a minority raised depth
_SPLIT_GROUND = 0.25  # ... and within a frame of the ground's depth around it (pulled there)
_PLANE_BAND = (2, 6)  # pixels from a region: the band of surround its plane is fitted to
_PLANE_FIT = 0.2  # frames: largest median distance of the band's depths from their plane
_PLANE_INLIERS = 0.7  # least share of the band within half a frame of the plane
_PLANE_GROUND = 0.5  # least share of the band not over its plane (the rest: parts lying on it)
_PLANE_SPAN = 1.0  # frames the plane must span over the region to replace the fill
_PLANE_RIM = 1.0  # frames: largest median distance of the region's rim from the plane
_RIM_PX = 2  # pixels along a region's edge left out of it by the 5x5 flatness window
_RIM_OFF = 1.5  # frames off its region's depth a rim pixel must be to take it
_RIM_AREA = 3.0  # times the least voting area a region needs for its rim to take its depth


def vote_flat_regions(
    frames: np.ndarray,
    guide: np.ndarray,
    peaks: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    halo_px: float,
    ends: tuple[int, int] | None = None,
) -> np.ndarray:
    """``frames`` (a filled depth map) with each textureless region of the composite ``guide``
    at the depth its outline's own focus peaks agree on (see the module docstring).

    ``peaks`` is (best measure, its frame, runner-up measure, its frame) at the map's size, in
    the same frame numbers as ``frames``; ``halo_px`` is the reach of a focus window's halo at
    this size (the outline band and the surround are measured in it, so the vote looks the same
    at every resolution: at 1500 px wide, an outline band of 2 px and a surround 4 to 12 px out).

    ``ends`` are the first and last frames of the stack: a depth within a frame of either needs
    :data:`_AGREE_AT_ENDS` of the outline, not :data:`_AGREE`. The tracker sees only one side
    of a hump at the stack's end (a curve that merely starts high at the first frame looks the
    same as one that peaks there, as an outline whose contrast grows out of focus does), so
    such peaks are weaker evidence. On ``../shared/data/pcb-stack`` a tenth of the outline let
    them vote patches of black foam and solder mask to the first frame; on the synthetic stacks
    of ``benchmarks/bench_depth.py`` no stack moves by more than 0.01 point.

    The region's depth is the median of its fill within a frame of the voted depth; its pixels
    more than half a frame from that depth take it. With a whole frame's leeway, the fill's ramp
    between the region's own depth and the wrong one it replaced stayed behind as a band up to a
    frame and a half off (a crescent inside a shape that had half lost its depth), 0.1 to 0.8
    point on eleven of 44 stacks.

    The surround is judged on the fill, in which a flat neighbour may not have its own depth
    yet: beside a glyph in front of a far flat shape, the fill had given the glyph's stroke the
    shape's depth, so the glyph's outline peak, on a quarter of the shape's outline, was found
    nowhere around and counted as the shape's own, and the shape took the glyph's depth. So
    each region that voted is judged again on the map as the first round left it (its own
    pixels as filled), and where its answer changes, its pixels are settled anew (voted, given
    a plane, or left as filled). Only voted regions are: a region that found nothing of its own
    in the fill keeps what the first round made of it (a second round for those too found a
    new depth for flat patches on tilted ground, costing up to 0.6 point on two of 52 replayed
    stacks of ``benchmarks/bench_depth.py``). Of the 540 regions voted on those stacks, six
    change their answer: shapes 32 gains 2.4 points, three others 0.1 to 0.6, none loses.
    """
    flat, colours = _flat_regions(guide)
    best, index, second, second_index = peaks
    evidence = (
        np.where(depth.confidence(best) > _TRUST, index.astype(np.int32), -1),
        np.where(depth.confidence(second, best) > _TRUST, second_index.astype(np.int32), -1),
    )
    # The outline band reaches past the region's rim (_RIM_PX) to the edge itself, however small
    # the halo: the map is filled at a fixed size, and at 3000x2000 a band of a sixth of the
    # halo was one pixel, inside the rim, where a part's own edge peak hardly shows.
    ring = max(_RIM_PX, round(halo_px / 6))
    reach = (ring, max(ring + 1, round(halo_px / 3)), max(ring + 2, round(halo_px)))
    regions = _voting_regions(flat, colours, frames, pad=reach[2] + ring + 2, halo_px=halo_px)
    out = frames.copy()
    voted = []
    for box, region in regions:
        ev = (evidence[0][box], evidence[1][box])
        own = _own_depth(region, frames[box], ev, reach, ends)
        if own is not None:
            voted.append((box, region, ev, own))
        _settle(out[box], frames[box], region, own)
    # The second look (see above): a voted region judged again with its neighbours as voted.
    first = out.copy()
    settled = []
    for box, region, ev, own in voted:
        seen = np.where(region, frames[box], first[box])
        if not np.array_equal(seen, frames[box]):  # else nothing around it moved: the same answer
            again = _own_depth(region, seen, ev, reach, ends)
            if again != own:
                out[box][region] = frames[box][region]
                _settle(out[box], frames[box], region, again)
            if again is None:
                continue
        settled.append((box, region))
    rim_area = _RIM_AREA * _min_voting_area(halo_px)
    for box, region in settled:
        _take_rim(out[box], region, colours[box], min_area=rim_area)
    return out


def _take_rim(out: np.ndarray, region: np.ndarray, colours: np.ndarray, *, min_area: float) -> None:
    """The pixels of a voted ``region``'s own colour just outside it take its depth.

    A region is flat window by window (5x5), so the :data:`_RIM_PX` pixels along its edge,
    whose window reaches over the edge, are left out of it though they are its colour: they
    kept the fill, which pulls them toward the surface beyond the edge (a label on a board
    kept a band of the board's depth along its edges and lettering, 0.4 point of board 28 of
    ``benchmarks/bench_depth.py``). Those of the region's colour (within :data:`_FLAT` of its
    median) more than :data:`_RIM_OFF` frames from its depth take it. Nearer than that, a rim
    on tilted ground follows the ground's slope better than one depth (board 6 and 29 lost
    0.1-0.2 point with half a frame). A region under ``min_area`` keeps its rim: its rim is
    as large as itself, and its short outline votes wrongly more often (two pieces of 48 and
    71 pixels beside a chip on board 30 voted the chip's depth; their rims cost it 0.25
    point)."""
    if np.count_nonzero(region) < min_area:
        return
    value = float(np.median(out[region]))
    k = np.ones((2 * _RIM_PX + 1, 2 * _RIM_PX + 1), np.uint8)
    rim = cv2.dilate(region.astype(np.uint8), k).astype(bool) & ~region
    spread = np.abs(colours - np.median(colours[region], axis=0)).sum(axis=2)
    out[rim & (spread <= _FLAT) & (np.abs(out - value) > _RIM_OFF)] = value


def _min_voting_area(halo_px: float) -> int:
    """The least area, in pixels, of a region that votes: a few focus windows' halo."""
    return max(8, round(30 * (halo_px / 12) ** 2))


def _voting_regions(
    flat: np.ndarray, colours: np.ndarray, frames: np.ndarray, *, pad: int, halo_px: float
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """(box, mask within the box) of each flat region that votes: one colour
    (:func:`_one_colour`), larger than a few focus windows' halo at this size and smaller than
    :data:`_MAX_AREA` of the map; the box reaches ``pad`` pixels beyond the region. A flat part
    may fill a good share of a macro frame: with the cap at 5 %, a near ellipse covering 5.4 %
    of shapes 39 of ``benchmarks/bench_depth.py`` kept the fill's pull toward its neighbours
    (90.2 % of that stack within a frame, 96.4 % with it voting); the rules since (one colour,
    the second look) keep patches of the ground from voting, and no stack of seeds 1-44 or of
    ``../shared/data/pcb-stack`` loses anything without a cap below a third.

    Regions are the 4-connected areas of ``flat``, except where several of them touch only at
    corners (8-connected) and together still pass as one region of one colour: then they vote
    as one. Lettering across a flat part (a chip's or a disc's printing) cuts its colour into
    pieces that often meet only at a corner by the lettering's ends; apart, each piece's own
    depth shows only along the lettering, which is in the piece's surround at that depth, so
    it was judged borrowed and the fill pulled the part toward the ground behind (board 32 of
    ``benchmarks/bench_depth.py``: 1.9 points). Together the lettering lies between their
    outlines, out of their surround. Corners alone do not unite pieces that are not one
    colour together (a flat part and the ground it touches at a corner, on board 21: 8-connected
    regions throughout lost 0.5 point there).

    Where the lettering runs right across a part from rim to rim, its pieces do not meet even
    at a corner (the black disc "MM0UK" of board 35: two caps 13 pixels apart at 375x250, each
    pulled toward the board behind, 1.3 points). So first, pieces that could each vote alone
    and face each other across a band narrower than :data:`_BAND` halo reaches vote as one,
    where they are one colour together (:func:`_across_bands`); the pieces left then unite at
    corners as above."""
    h, w = flat.shape
    min_area = _min_voting_area(halo_px)

    def voting(pieces: list[int]) -> tuple[tuple[slice, slice], np.ndarray] | None:
        x, y, x1, y1, area = w, h, 0, 0, 0
        for k in pieces:  # the box around the pieces and their area
            px, py, pw, ph, pa = (int(v) for v in stats[k])
            x, y, x1, y1, area = (
                min(x, px),
                min(y, py),
                max(x1, px + pw),
                max(y1, py + ph),
                area + pa,
            )
        if not min_area <= area <= _MAX_AREA * h * w:
            return None
        box = np.s_[max(0, y - pad) : min(h, y1 + pad), max(0, x - pad) : min(w, x1 + pad)]
        region = labels[box] == pieces[0] if len(pieces) == 1 else np.isin(labels[box], pieces)
        return (box, region) if _one_colour(colours[box][region]) else None

    _, labels, stats, _ = cv2.connectedComponentsWithStats(flat, connectivity=4)
    alone = [None] + [voting([k]) for k in range(1, len(stats))]
    united = np.zeros(len(stats), bool)
    out = []
    votes = [r is not None for r in alone]
    across = _across_bands(labels, stats, (colours, frames), votes, halo_px)
    for groups in (across, _at_corners(flat, labels, len(stats))):
        for pieces in groups:
            pieces = pieces[~united[pieces]]
            found = voting(pieces.tolist()) if pieces.size > 1 else None
            if found is not None:
                out.append(found)
                united[pieces] = True
    out.extend(r for k, r in enumerate(alone) if r is not None and not united[k])
    return out


def _at_corners(flat: np.ndarray, labels: np.ndarray, count: int) -> list[np.ndarray]:
    """The 4-connected regions (``labels``, ``count`` labels) of ``flat`` grouped by the
    8-connected area each lies in: the groups of more than one."""
    _, corners = cv2.connectedComponents(flat, connectivity=8)
    within = np.zeros(count, np.int64)
    within[labels.ravel()] = corners.ravel()
    return _groups(within, np.arange(1, count))


def _across_bands(
    labels: np.ndarray,
    stats: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray],
    votes: list[bool],
    halo_px: float,
) -> list[np.ndarray]:
    """Groups of 4-connected flat regions (``labels``) that each could vote alone (``votes``)
    and lie within :data:`_BAND` halo reaches of one another: pieces of a part cut right
    across by its lettering. A piece under :data:`_PIECE` of the group's largest is left out
    (a speck of the same colour beside a part is another part), and a group is dropped whose
    pieces are not one colour together (each median within :data:`_FLAT` of theirs) or that
    the fill does not put on one surface (:func:`_one_surface`; ``seen``: the colours, the
    fill), after pieces of other parts near them are set apart (:func:`_parts`). The pieces
    of one part lie on the same surround and the fill gives them much the same depths (the
    caps of "MM0UK", 1.2 frames apart, both pulled toward the board); two surfaces of one
    colour need not: on ``../shared/data/pcb-stack`` a patch of dark solder mask at the
    board's depth (frame 6) joined a dark barcode stripe above it at frame 0.5 and took the
    stripe's depth (0.1 % of the map), which the depth condition keeps apart."""
    r = round(_BAND * halo_px)
    square = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    keep = np.array(votes, bool)
    for _ in range(2):  # the second time without the specks the first found
        _, near = cv2.connectedComponents(
            cv2.dilate(keep[labels].astype(np.uint8), square), connectivity=4
        )
        within = np.zeros(len(stats), np.int64)
        within[labels.ravel()] = near.ravel()
        within[~keep] = 0
        largest = np.zeros(within.max() + 1, np.int64)
        np.maximum.at(largest, within, stats[:, 4])
        keep &= stats[:, 4] >= _PIECE * largest[within]
    out = []
    for pieces in _groups(within * keep, np.flatnonzero(keep)):
        colour = {int(k): _median_of(labels, seen[0], stats, k) for k in pieces}
        for part in _parts(labels, stats, colour, square):
            medians = np.array([colour[k] for k in part])
            alike = (np.abs(medians - np.median(medians, axis=0)).sum(axis=1) <= _FLAT).all()
            if alike and _one_surface(labels, seen[1], stats, part):
                out.append(part)
    return out


def _parts(
    labels: np.ndarray, stats: np.ndarray, colour: dict[int, np.ndarray], square: np.ndarray
) -> list[np.ndarray]:
    """Pieces near one another (``colour``: each one's median colour) split into the parts they
    may be, largest piece first: the pieces of its colour within a band's reach of it
    (``square``), through pieces of its colour.

    Pieces near one another are often of several parts: a disc cut into two caps by its
    lettering, beside a label and a chip. Judged as one group, their colours differed and the
    caps voted apart: the lettering between them, at their depth, lay in each cap's surround,
    so their own outline peaks were judged borrowed (board 15 and 20 of
    ``benchmarks/bench_depth.py`` gain 0.3 and 0.2 point)."""
    left = sorted(colour, key=lambda k: -int(stats[k, 4]))
    r = square.shape[0] // 2
    h, w = labels.shape
    out = []
    while left:
        seed = left[0]
        alike = [k for k in left if np.abs(colour[k] - colour[seed]).sum() <= _FLAT]
        x0 = max(0, min(int(stats[k, 0]) for k in alike) - r)
        y0 = max(0, min(int(stats[k, 1]) for k in alike) - r)
        x1 = min(w, max(int(stats[k, 0] + stats[k, 2]) for k in alike) + r)
        y1 = min(h, max(int(stats[k, 1] + stats[k, 3]) for k in alike) + r)
        box = labels[y0:y1, x0:x1]
        _, near = cv2.connectedComponents(
            cv2.dilate(np.isin(box, alike).astype(np.uint8), square), connectivity=4
        )
        at = {k: int(near[box == k][0]) for k in alike}
        part = [k for k in alike if at[k] == at[seed]]
        left = [k for k in left if k not in part]
        if len(part) > 1:
            out.append(np.array(part))
    return out


def _one_surface(labels: np.ndarray, fill: np.ndarray, stats: np.ndarray, part: np.ndarray) -> bool:
    """Whether the ``fill`` may have the pieces ``part`` of ``labels`` on one surface: their
    medians lie within :data:`_NEAR` frames, or the middle :data:`_SPAN` of each one's fill
    has depths in common with every other's.

    The fill pulls a part's pieces toward the ground around them, and not always as far: the
    caps of the black disc "503GC" of board 32 of ``benchmarks/bench_depth.py``, cut apart by
    its lettering, kept the disc's depth beside the lettering and were pulled toward the board
    beyond it, one by 2.0 frames more than the other (medians 3.95 and 5.93, middles 1.8-5.0
    and 1.4-7.4, the truth 1.4). Apart, each judged the lettering's depth borrowed, and a
    third of the disc took the board's depth (2.2 points). Two surfaces of one colour have
    fills that do not meet: the pieces of ``../shared/data/pcb-stack`` stay apart. A piece
    that holds two surfaces of one colour is the cost: on board 7 the lower cap of a black
    chip ran on into a black chip behind it, whose depth the joined vote took (0.5 point)."""
    spans = np.array([np.quantile(_pixels_of(labels, fill, stats, k), (0.5, *_SPAN)) for k in part])
    middle, low, high = spans.T
    return bool(middle.max() - middle.min() <= _NEAR or low.max() <= high.min())


def _groups(within: np.ndarray, pieces: np.ndarray) -> list[np.ndarray]:
    """``pieces`` grouped by their ``within`` label (0: none), the groups of more than one."""
    pieces = pieces[within[pieces] > 0]
    order = pieces[np.argsort(within[pieces], kind="stable")]
    _, starts, counts = np.unique(within[order], return_index=True, return_counts=True)
    return [order[s : s + c] for s, c in zip(starts, counts, strict=True) if c > 1]


def _median_of(labels: np.ndarray, values: np.ndarray, stats: np.ndarray, k: int) -> np.ndarray:
    """The median of ``values`` (a colour or a depth per pixel) over the 4-connected flat
    region ``k`` of ``labels``."""
    return np.median(_pixels_of(labels, values, stats, k), axis=0)


def _pixels_of(labels: np.ndarray, values: np.ndarray, stats: np.ndarray, k: int) -> np.ndarray:
    """``values`` over the 4-connected flat region ``k`` of ``labels`` (``stats``: its box)."""
    x, y, w, h, _ = stats[k]
    box = np.s_[y : y + h, x : x + w]
    return values[box][labels[box] == k]


def _settle(out: np.ndarray, frames: np.ndarray, region: np.ndarray, own: float | None) -> None:
    """Give ``region`` of ``out`` its depth: with an ``own`` depth voted, its pixels more than
    half a frame from it take the median of its fill (``frames``) within a frame of it (or
    ``own`` itself where under a fifth of the region is that close); without one, the plane of
    its surround where :func:`_tilted_fill` finds one, else the fill stays."""
    if own is None:
        tilted = _tilted_fill(region, frames)
        if tilted is not None:
            out[region] = tilted
        return
    current = frames[region]
    agreeing = current[np.abs(current - own) <= 1.0]
    value = float(np.median(agreeing)) if agreeing.size > 0.2 * current.size else float(own)
    out[region & (np.abs(out - own) > 0.5)] = value


def _tilted_fill(region: np.ndarray, frames: np.ndarray) -> np.ndarray | None:
    """The depths of a flat ``region``'s pixels (in :func:`numpy.nonzero` order) on the surface
    the depths of the surround around it lie on (a plane, or one curved like a bowl or a saddle),
    or None where they lie on none.

    A flat patch on a tilted surface (the solder mask or a printed area of a board tilted to
    the lens, a coin's face, an insect's wing) has no texture and no outline depth of its own:
    the fill carries in its rim's depths, a flattened ramp whose far ends are more than a frame
    off on a steep stretch. The surround ``_PLANE_BAND`` pixels out is fitted with a plane by
    a trimmed least-squares fit (:func:`_trimmed_fit`), which leaves out a component or a halo
    in the band. The plane is taken only where it explains the surround (median residual at
    most ``_PLANE_FIT``, ``_PLANE_INLIERS`` of the band within half a frame), spans at least
    ``_PLANE_SPAN`` frames over the region (otherwise the fill is as good), and meets the fill
    on the region's own rim (median within ``_PLANE_RIM``): a raised or sunken flat part, whose
    rim the fill gives its own depth, is not part of the surround's surface.

    Band pixels more than half a frame nearer than the plane (off it, as the inlier test counts,
    on the near side) are parts lying over the surface, not the surface: a print on a board
    partly under a label or a chip, whose band crosses them. They are left out of the fit and
    of its judgement, which need ``_PLANE_GROUND`` of the band to be left. Judged with them,
    the plane failed where the parts were a fifth of the band or more, and the fill carried
    their depth into the print (board 7's blue ellipse under the disc "44BF8", board 35's pink
    one under a chip). Pixels behind the plane still count against it: nothing lies under a
    surface. On 48 recorded stacks of ``benchmarks/bench_depth.py`` the plane gains board 21
    1.3 points (lavender patches on a steep stretch), board 15, 12 and 22 0.7, 0.6 and 0.3, and
    costs none; the shapes stacks, whose ground has no flat patches, do not move.

    A surface bends (a warped board, a coin, the synthetic boards' rolling ground): where the
    plane comes near (enough of the band on it and within half a frame) but its median residual
    is over ``_PLANE_FIT``, the fit is refined with the squares of the coordinates (x², xy, y²)
    on the points the plane kept, and the curved surface is judged as the plane would be. Board
    36's lavender print under the label "78AAJ", on a curved stretch, missed the plane by 0.24
    frame (median) and took the fill, 63 % of it within a frame; the curved fit misses its band
    by 0.08 and puts all of it within a frame. It is not asked where no plane came near: six
    terms also fit a band that crosses parts at several depths, and put a shape's own depth
    wrong (two shapes stacks lost 0.4-0.5 point when it was). Replayed on 96 recorded stacks:
    board 36 95.99 -> 97.41 %, board 41 +1.17, board 7 +0.51, board 46 +0.48, at most -0.08
    (board 32); all 96 at 97 % or more.
    """
    inner, outer = _PLANE_BAND
    mask = region.astype(np.uint8)

    def grown(r: int) -> np.ndarray:
        return cv2.dilate(mask, np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)

    band = grown(outer) & ~grown(inner)
    ys, xs = np.nonzero(band)
    if ys.size < 12:
        return None
    z = frames[band].astype(np.float64)
    centre, scale = (float(xs.mean()), float(ys.mean())), max(float(xs.std()), float(ys.std()), 1.0)
    everywhere = np.ones(z.size, bool)
    coef, keep, fit = _trimmed_fit(_terms(xs, ys, centre, scale, curved=False), z, everywhere)
    curved = fit == "near"
    if curved:
        coef, keep, fit = _trimmed_fit(_terms(xs, ys, centre, scale, curved=True), z, keep)
    if fit != "fits":
        return None
    ry, rx = np.nonzero(region)
    surface = (_terms(rx, ry, centre, scale, curved=curved) @ coef).astype(np.float32)
    if surface.max() - surface.min() < _PLANE_SPAN:
        return None
    rim = ~cv2.erode(mask, np.ones((2 * inner + 1, 2 * inner + 1), np.uint8)).astype(bool)[region]
    if np.median(np.abs(surface[rim] - frames[region][rim])) > _PLANE_RIM:
        return None
    return surface


def _terms(
    xs: np.ndarray, ys: np.ndarray, centre: tuple[float, float], scale: float, *, curved: bool
) -> np.ndarray:
    """The columns a surface over pixels (``xs``, ``ys``) is a sum of: 1, x, y (a plane) and,
    ``curved``, x², xy, y²; in coordinates centred on ``centre`` and divided by ``scale`` so
    that the squares do not swamp the least-squares fit."""
    x = (xs - centre[0]) / scale
    y = (ys - centre[1]) / scale
    columns = [x, y, np.ones(x.size)]
    if curved:
        columns += [x * x, x * y, y * y]
    return np.column_stack(columns)


def _trimmed_fit(
    a: np.ndarray, z: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Literal["fits", "near", "none"]]:
    """A surface through the band's depths ``z`` (``a``: its :func:`_terms`), fitted by least
    squares on ``keep`` and refitted three times on the points within half a frame of the last
    fit (or three median residuals, if more), leaving out the points over it. Returns the
    coefficients, the points kept, and how it fits the band: ``"fits"`` (``_PLANE_GROUND`` of
    the band not over it, ``_PLANE_INLIERS`` within half a frame, median residual at most
    ``_PLANE_FIT``), ``"near"`` (all but the last) or ``"none"``."""
    coef = np.zeros(a.shape[1])
    for _ in range(3):
        if np.count_nonzero(keep) < a.shape[1]:
            return coef, keep, "none"
        coef = np.linalg.lstsq(a[keep], z[keep], rcond=None)[0]
        signed = a @ coef - z  # above 0: nearer than the surface
        on = signed <= 0.5  # not over it (off it on the near side): on it or behind
        if np.count_nonzero(on) < 12:
            return coef, keep, "none"
        residual = np.abs(signed[on])
        keep = on & (np.abs(signed) <= max(0.5, 3.0 * float(np.median(residual))))
    if np.mean(on) < _PLANE_GROUND or np.mean(residual <= 0.5) < _PLANE_INLIERS:
        return coef, keep, "none"
    return coef, keep, "fits" if np.median(residual) <= _PLANE_FIT else "near"


def _one_colour(colours: np.ndarray) -> bool:
    """Whether a flat region's ``colours`` (guide units, one row per pixel) are one colour:
    :data:`_ONE_COLOUR` of them within :data:`_FLAT` of the median colour (summed over channels).

    A region is flat only window by window (5x5), so the outlines of two flat shapes of similar
    colour that touch (a violet disc on a purple polygon) do not part them: the region is two
    surfaces, its outline carries both depths, and its vote gave the whole region the farther
    one (2.1 points of one of 44 stacks of ``benchmarks/bench_depth.py``). A single shape, shaded
    or not, stays well inside (at most half the limit on those stacks)."""
    spread = np.abs(colours - np.median(colours, axis=0)).sum(axis=1)
    return bool(np.count_nonzero(spread <= _FLAT) >= _ONE_COLOUR * spread.size)


def _flat_regions(guide: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat, colours): where the guide's colour barely varies over 5x5 (uint8, 1 there), and
    the guide in 0..1 (:func:`stacker.depth._unit_guide`)."""
    g = depth._unit_guide(guide)
    mean = cv2.boxFilter(g, -1, (5, 5))
    spread = np.sqrt(np.maximum(cv2.boxFilter(g * g, -1, (5, 5)) - mean * mean, 0)).sum(axis=2)
    flat = (spread < _FLAT).astype(np.uint8)
    return flat, g


def _own_depth(
    region: np.ndarray,
    frames: np.ndarray,
    evidence: tuple[np.ndarray, np.ndarray],
    reach: tuple[int, int, int],
    ends: tuple[int, int] | None,
) -> float | None:
    """The depth (in frames, sub-frame) the outline of ``region`` shows as its own, or None.

    ``reach`` is (ring, gap, outer): the outline is the band ``ring`` pixels wide around the
    region; the surround, the pixels ``gap`` to ``outer`` pixels from it that it does not
    enclose (:func:`_enclosed`). A peak on the outline
    is the region's own unless at least :data:`_SURROUND_SHARE` of the surround within
    ``outer`` of it has that depth (within :data:`_NEAR` frames), or it lies more than
    :data:`_BEHIND` frames beyond the farthest depth of the surround within ``outer`` of it: an
    outline belongs to the nearer of the surfaces it separates, so a region's own outline is
    never farther than what lies around it (such a peak comes from elsewhere: another object's
    halo reaching across, or noise). ``ends``: see :func:`vote_flat_regions`."""

    ring, gap, outer = reach

    def square(r: int) -> np.ndarray:
        return np.ones((2 * r + 1, 2 * r + 1), np.uint8)

    mask = region.astype(np.uint8)
    outline = cv2.dilate(mask, square(ring)).astype(bool) & ~region
    size = int(outline.sum())
    if size < 8:
        return None
    beyond = cv2.dilate(mask, square(gap)).astype(bool)
    surround = cv2.dilate(mask, square(outer)).astype(bool) & ~beyond
    surround &= ~_enclosed(mask)

    def count_near_outline(a: np.ndarray) -> np.ndarray:
        """How many pixels of ``a`` (per channel) lie within ``outer`` of each outline pixel."""
        window = (2 * outer + 1, 2 * outer + 1)
        return cv2.boxFilter(a.astype(np.float32), -1, window, normalize=False)[outline]

    enough = _SURROUND_SHARE * np.maximum(count_near_outline(surround), 1)
    votes = [e[outline] for e in evidence]
    own = [v >= 0 for v in votes]
    need = _AGREE * size

    def tally() -> np.ndarray:
        """Own votes per depth, one per pixel where its two peaks name the same depth."""
        both = own[0] & own[1] & (votes[0] == votes[1])
        counted = np.concatenate([votes[0][own[0]], votes[1][own[1] & ~both]])
        return np.bincount(counted, minlength=max(3, int(max(v.max() for v in votes)) + 2))

    # Only depths near one with enough votes before the surround's are removed can win: the
    # surround is judged for those alone (a mosaic of small flat tiles stays cheap).
    raw = tally()
    within_one = np.convolve(raw, np.ones(3), mode="same")
    contenders = np.flatnonzero(within_one >= need)
    if contenders.size == 0:
        return None
    judged = np.unique(np.concatenate([contenders - 1, contenders, contenders + 1]))
    judged = judged[judged >= 0]
    has = surround[..., None] & (np.abs(frames[..., None] - judged.astype(np.float32)) <= _NEAR)
    borrowed = count_near_outline(has).reshape(size, judged.size) > enough[:, None]
    raised = _raised_depth(raw, votes, frames, (region, surround))
    if raised in judged:
        # only where the surround nearby lies behind it, as the ground beside a raised part does
        behind = count_near_outline(np.where(surround, frames, 0)) > raised * count_near_outline(
            surround
        )
        borrowed[behind, int(np.searchsorted(judged, raised))] = False
    surround_depth = np.where(surround, frames, np.float32(-np.inf)).astype(np.float32)
    farthest = cv2.dilate(surround_depth, square(outer))[outline] + np.float32(_BEHIND)
    for v, o in zip(votes, own, strict=True):
        column = np.searchsorted(judged, v).clip(0, judged.size - 1)
        o &= ~((judged[column] == v) & borrowed[np.arange(size), column])
        o &= v < farthest
    hist = tally()
    d = int(np.argmax(hist))
    if ends is not None and (d - 1 <= ends[0] or d + 1 >= ends[1]):
        need = _AGREE_AT_ENDS * size
    total = hist[max(0, d - 1) : d + 2].sum()
    if total < need:
        return None
    # Sub-frame: the votes' mean over the three frames. A region lying between two frames
    # splits its outline's peaks between them; the winner alone is up to half a frame off, and
    # the fill's median within a frame of it can then round the wrong way (shapes 20).
    fewer = hist[d - 1] if d > 0 else 0
    more = hist[d + 1] if d + 1 < hist.size else 0
    return d + float(more - fewer) / float(total)


def _enclosed(mask: np.ndarray) -> np.ndarray:
    """A region's ``mask`` (uint8) with the areas it encloses: no part of its surround.

    What a flat region encloses is printed on it (a disc's or a chip's lettering), whose texture
    is sharp at the region's own depth. Counted as surround, it made the region's one evidence
    of its own depth, the lettering's outline, look borrowed: a black disc whose rim shows only
    the textured board a few frames behind, cut into two caps by its lettering, was pulled to
    the board (board 27 of ``benchmarks/bench_depth.py``: 1.9 points; board 30 1.4)."""
    outside = np.pad(mask, 1)
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside != 2)[1:-1, 1:-1]


def _raised_depth(
    raw: np.ndarray,
    votes: list[np.ndarray],
    frames: np.ndarray,
    parts: tuple[np.ndarray, np.ndarray],
) -> int:
    """The depth the outline shows as a raised region's own even where the surround has it
    nearby, or -1: the depth most of the outline's confident peaks name (``raw``, per depth),
    if it is more than a frame nearer than the region's fill and the share of the outline
    naming it is over :data:`_RAISED` times the share of the surround within half a frame of it.

    A raised disc with lettering on a board tilted to the lens: beside the disc the board is
    only a frame or two behind it, so the surround "has" the disc's depth within
    :data:`_NEAR`, and the disc's own outline peaks were judged borrowed, leaving the fill
    pulled to the board behind. A borrowed depth is the ground's: it covers the surround at
    least as widely as the outline. The disc's own depth is on a third of its outline and on a
    tenth of the surround. The plurality and the nearer-than-fill condition keep a minority
    peak (another part's halo reaching across, 0.6-1 point on three of 48 replayed stacks)
    and a region already at its outline's depth out of it (board 18 lost 1.8 points without
    the latter). The caller lifts the judgement only where the surround beside the outline
    lies behind that depth: on a ground tilted to the lens, the side of a flat patch whose
    outline shows the ground's depth has the ground nearer on its outer side.

    Where the ground's own halo is the plurality (the textured ground, sharp a frame or two
    behind the part, outweighs the part's edge on much of its outline), the part's depth is
    the depth most named among those more than half a frame nearer than the ground (the
    surround's median), and :func:`_half_pulled` says whether the fill backs it.
    """
    region, surround = parts
    d = int(np.argmax(raw))
    if raw[d] and d < float(np.median(frames[region])) - 1.0:
        return d if _over_surround(d, votes, frames, surround) else -1
    if not surround.any():
        return -1
    ground = float(np.median(frames[surround]))
    nearer = raw[: int(np.floor(ground - 0.5)) + 1]
    if not nearer.size or not nearer.max():
        return -1
    d = int(np.argmax(nearer))
    if not _half_pulled(frames[region], d, ground):
        return -1
    return d if _over_surround(d, votes, frames, surround) else -1


def _over_surround(
    d: int, votes: list[np.ndarray], frames: np.ndarray, surround: np.ndarray
) -> bool:
    """Whether the share of the outline naming ``d`` (either peak) is over :data:`_RAISED`
    times the share of the surround within half a frame of it."""
    on_outline = float(np.mean((votes[0] == d) | (votes[1] == d)))
    on_surround = float(np.mean(np.abs(frames[surround] - d) <= 0.5))
    return on_outline > _RAISED * on_surround


def _half_pulled(fill: np.ndarray, d: int, ground: float) -> bool:
    """Whether a region's ``fill`` is split between a nearer depth ``d`` its outline shows and
    the ``ground``'s depth around it: at least :data:`_SPLIT_OWN` of it within a frame of ``d``
    and :data:`_SPLIT_GROUND` within a frame of the ground.

    A raised disc a frame and a half in front of a textured board (board 26 of
    ``bench_depth.py``, the purple disc "GGGF6"): the board's halo, frame 14, is on half of
    the disc's outline, the disc's own edge, 12, on two fifths. The fill kept 12 from the
    outline on the disc's middle and pulled its top and bottom to the board (13.5-14): the
    plurality is the board's, and the median of the fill is not a frame behind 12. A minority
    depth on the outline is the part's own only where the fill inside agrees with it on part
    of the region and has the ground's depth on another: a flat patch lying on the ground, its
    fill at the ground's depth throughout, does not take a neighbour's halo (board 38 lost 2.1
    points where a quarter of the fill a frame behind the depth was enough), nor does a region
    of two black parts at two depths, its fill split between them, take the nearer one's
    (board 48 lost 0.16 point where the farther part of the fill need not be the ground's).
    """
    own = float(np.mean(np.abs(fill - d) <= 1.0))
    pulled = float(np.mean(np.abs(fill - ground) <= 1.0))
    return own >= _SPLIT_OWN and pulled >= _SPLIT_GROUND
