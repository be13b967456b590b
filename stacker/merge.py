"""Incremental mergers: each folds one aligned frame at a time into a constant-size state.

- :class:`PyramidMerger` ("pyramid", detail first, like Zerene's PMax): a fused Laplacian pyramid
  (Burt & Adelson 1983). In the fine bands every coefficient comes from the frame with the
  highest local activity seen so far (the selection rule of Forster et al. 2004): the band's
  absolute value averaged over a 5x5 window, the decision consistency-filtered (a majority vote
  over a 5x5 neighbourhood) so that isolated noise coefficients in flat areas are not chosen as
  detail, and checked against the pixel-level focus measure of the tracker (consistency across
  scales, as in Li et al. 1995's consistency verification): where the best frame so far is
  ``outclassed_by`` times sharper than the new one, the new frame's fine coefficients are not
  taken, however active they are. A defocused saturated edge spreads large coefficients into
  the fine bands around it, over a surround that another frame shows in focus. The other way
  round, a frame ``takes_over_at`` times sharper than the one a fine coefficient came from
  takes it, however inactive, where no frame so far showed the place sharp: shot far to near,
  the spread edges come first and the flat surround of the object's own frame would not
  replace them. Where every frame so far is *quiet* in a fine band (its activity within a few
  times the noise floor: a flat area, or one no frame has in focus) nothing is selected: the
  coefficient is the mean of the frames, since the most active of several noise draws is the
  largest one, and a pick would leave the composite noisier than any single frame. The coarse
  bands and the lowpass base follow the frames that are in focus *there*: each is a running
  blend of all frames weighted by a focus score (the finest band's activity, smoothed level by
  level to the coefficient's reach) to the fourth power. A frame that is sharp
  nearby dominates; frames that are not (which spread a saturated object's colour into its
  surround: colour glow) hardly count; where no frame is sharper than another (flat areas) the
  blend is the mean, which averages the noise away and shifts no colour.
- :class:`DepthMapMerger` ("depthmap", smooth colour, like Zerene's DMap): a smoothed focus
  measure per frame at reduced resolution, the best score and its frame index per pixel, and a
  feathered blend wherever the winner changes.

Both report a frame-index map through :class:`FocusTracker`, which later becomes the depth map.
Pixels a frame does not cover (outside its warped footprint) never win.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, NamedTuple, TypeVar

import cv2
import numpy as np

from stacker import pyramid
from stacker.cvtyping import cv
from stacker.focus import MEASURE_LEVEL, WINDOW_PX, coarse_level, focus_measure

APPLY_ROWS = 32
"""Half-size decision rows of the finest band (64 frame rows) applied at a time."""
ACTIVITY_ROWS = 64
"""Half-size rows of the finest band's activity made at a time (128 frame rows)."""
FOLD_ROWS = 256
"""Frame rows the depth-map merger blends at a time."""
BRIGHTNESS_CLASSES = 8
"""Brightness classes of equal share, each with its own noise floor (see
:meth:`PyramidMerger._noise_threshold`)."""
NOISE_BAND_RATIO = 0.5
"""Band 1's activity under this share of band 0's marks white noise (see
:meth:`PyramidMerger._noise_like`)."""


class FocusTracker:
    """Per pixel, at pyramid level ``level``: the best focus measure so far, its frame index,
    the measures of the frames merged just before and just after that best frame, and the
    runner-up peak of the focus curve (its measure and frame index).

    The neighbours' measures are what a sub-frame estimate of the focus peak and its confidence
    need (:mod:`stacker.depth`), and they are kept in constant memory: when frame i arrives,
    pixels it wins take the previous frame's measure (kept from the last update) as their
    "before", and pixels whose best is the previous frame take frame i's measure as their
    "after". Negative values mean unknown (no such frame, or it did not cover the pixel).

    The runner-up peak is the highest measure of another hump of the curve: one separated from
    the best frame by a valley below :attr:`valley` times the lower of the two. Beside an
    occlusion edge the curve has two humps, one at each side's depth (the sharp outline and the
    other side's texture), and the larger one is not always this side's
    (:func:`stacker.depth.resolve_occlusions`). Also in constant memory: the lowest measure
    since the best frame (the valley so far) is all a streaming pass needs to tell a new hump
    from the best one's shoulder.
    """

    valley = 0.7
    """A dip below this share of the lower peak separates two humps of a focus curve."""

    def __init__(
        self, height: int, width: int, level: int, measure_level: int = MEASURE_LEVEL
    ) -> None:
        self.level = level
        self.measure_level = max(measure_level, MEASURE_LEVEL)
        shapes = pyramid.level_shapes(height, width, max(level, self.measure_level) + 1)
        h, w = shapes[level]
        self.size = (w, h)
        self._measure_size = shapes[self.measure_level][::-1]
        self.best = np.full((h, w), -1.0, np.float32)
        self.index = np.zeros((h, w), np.uint16)
        self.before = np.full((h, w), -1.0, np.float32)
        self.after = np.full((h, w), -1.0, np.float32)
        self.second = np.full((h, w), -1.0, np.float32)
        self.second_index = np.zeros((h, w), np.uint16)
        self._dip = np.full((h, w), np.inf, np.float32)  # lowest measure since the best frame
        self.winner = np.zeros((h, w), np.uint8)
        self._follow = np.zeros((h, w), np.uint8)
        self._last = np.full((h, w), -1.0, np.float32)  # the previous frame's measure
        self._last_index: int | None = None
        self._fill = np.zeros((h, w), np.uint16)  # scratch: a frame index everywhere
        self._lap: np.ndarray | None = None  # scratch of :meth:`measure`

    def measure(self, gray: np.ndarray) -> np.ndarray:
        """A frame's focus measure at the tracker's size, from its luma in the reference
        geometry at the measure's size (:func:`stacker.focus.measure_luma`): what
        :meth:`update` takes. It depends on the frame alone. A tracker measuring at a coarser
        level than :data:`~stacker.focus.MEASURE_LEVEL` takes the Laplacian there."""
        if self.measure_level > MEASURE_LEVEL:
            gray = cv2.resize(gray, self._measure_size, interpolation=cv2.INTER_AREA)
        if self._lap is None or self._lap.shape != gray.shape:
            self._lap = np.empty(gray.shape, np.float32)
        return focus_measure(gray, self.size, WINDOW_PX / 2**self.level, scratch=self._lap)

    def update(self, fm: np.ndarray, valid: np.ndarray, index: int) -> np.ndarray:
        """Fold in a frame, given as its focus measure (:meth:`measure`, which the tracker
        keeps); ``valid`` is its coverage at the tracker's size. Returns the mask (0/255)
        where it now wins."""
        cv2.compare(fm, self.best, cv2.CMP_GT, dst=self.winner)
        cv2.bitwise_and(self.winner, valid, dst=self.winner)
        if self._last_index is not None:
            cv.compare(self.index, self._last_index, cv2.CMP_EQ, dst=self._follow)
            cv2.bitwise_and(self._follow, valid, dst=self._follow)
            cv2.copyTo(fm, self._follow, self.after)
        self._fill.fill(index)  # this frame's index everywhere, for the masked copies below
        self._track_second(fm, valid, index)
        cv2.copyTo(fm, self.winner, self.best)
        cv2.copyTo(self._last, self.winner, self.before)
        cv2.copyTo(self._fill, self.winner, self.index)
        _set_where(self.after, -1.0, self.winner)
        _set_where(fm, -1.0, cv.compare(valid, 0, cv2.CMP_EQ))
        self._last, self._last_index = fm, index
        return self.winner

    def _track_second(self, fm: np.ndarray, valid: np.ndarray, index: int) -> None:
        """Update the runner-up peak with frame ``index`` (before the best is updated).

        In OpenCV's masked copies: numpy's boolean indexing and ``where=`` take ten times as
        long on masks this size (1.5 MP at 24 MP frames)."""
        win = self.winner
        # A new best frame beyond a valley: the old best is a hump of its own.
        apart = cv2.compare(self._dip, self.valley * self.best, cv2.CMP_LT)
        cv2.bitwise_and(apart, cv2.compare(self.best, self.second, cv2.CMP_GT), dst=apart)
        cv2.bitwise_and(apart, win, dst=apart)
        cv2.copyTo(self.best, apart, self.second)
        cv2.copyTo(self.index, apart, self.second_index)
        # A frame that does not win, beyond a valley since the best: the top of another hump.
        lose = cv2.bitwise_and(cv2.bitwise_not(win), cv.compare(valid, 0, cv2.CMP_GT))
        cv2.copyTo(cv2.min(self._dip, fm), lose, self._dip)
        rise = cv2.compare(self._dip, self.valley * fm, cv2.CMP_LT)
        cv2.bitwise_and(rise, cv2.compare(fm, self.second, cv2.CMP_GT), dst=rise)
        cv2.bitwise_and(rise, lose, dst=rise)
        cv2.copyTo(fm, rise, self.second)
        cv2.copyTo(self._fill, rise, self.second_index)  # filled with ``index`` by update
        _set_where(self._dip, np.inf, win)

    @property
    def latest(self) -> np.ndarray:
        """The focus measure of the frame folded in last (negative where it did not cover)."""
        return self._last


Tracked = TypeVar("Tracked")


def _coarse_tracker(height: int, width: int) -> FocusTracker:
    level = coarse_level(height, width)
    return FocusTracker(height, width, level, level)


class _Merger(ABC, Generic[Tracked]):
    """What both mergers do with a frame: :meth:`track` its focus, then :meth:`fold` it into the
    merge state with what the tracking returned (the fold reads nothing else of the tracker).
    :class:`stacker.stack.Stacker` does both on its merge thread."""

    tracker: FocusTracker
    coarse: FocusTracker
    """The depth map's second opinion, measured at :func:`stacker.focus.coarse_level`:
    :class:`~stacker.stack.Stacker` feeds it beside :meth:`add`; nothing in the merge reads
    it."""
    white: float
    """The value white is in the frames (:attr:`stacker.stack.Stacker.white`): highlights at it
    stay clipped through the gains."""

    def add(
        self,
        frame: np.ndarray,
        gains: tuple[float, float, float],
        measure: np.ndarray,
        valid_small: np.ndarray,
        index: int,
    ) -> None:
        """Merge a frame warped to the reference (its own dtype) with its exposure gains.

        ``measure`` is the frame's focus measure (:meth:`FocusTracker.measure`),
        ``valid_small`` its coverage at the tracker's size.
        """
        self.fold(frame, gains, valid_small, self.track(measure, valid_small, index))

    @abstractmethod
    def track(self, measure: np.ndarray, valid_small: np.ndarray, index: int) -> Tracked:
        """Fold the frame's focus measure into the tracker; returns what :meth:`fold` needs."""

    @abstractmethod
    def buffers(self) -> list[np.ndarray]:
        """The state's frame-sized arrays, allocated but not yet written, in the order the
        first frame's merge writes them: what :mod:`stacker.prefault` backs ahead of it."""

    @abstractmethod
    def fold(
        self,
        frame: np.ndarray,
        gains: tuple[float, float, float],
        valid_small: np.ndarray,
        tracked: Tracked,
    ) -> None:
        """Merge a frame that :meth:`track` has seen (``tracked``: what it returned)."""


class _Tracked(NamedTuple):
    """What :meth:`PyramidMerger.track` gives :meth:`PyramidMerger.fold`, at the tracker's size."""

    eligible: np.ndarray
    """0/255 where the frame is not outclassed."""
    measure: np.ndarray
    """The frame's focus measure (negative where it does not cover)."""


class PyramidMerger(_Merger[_Tracked]):
    """Fused Laplacian pyramid: max-activity selection in the fine bands, focus-weighted blending
    in the coarse bands and the base; see the module docstring."""

    name = "pyramid"
    track_level = 2  # focus tracked at 1/4 resolution
    coarse_from = 3  # bands from here on (and the base) follow the smoothed focus score
    score_sigma = 1.5  # smoothing of the focus score at every coarse level, in its pixels
    sharpness = 4.0  # exponent of the focus score in the coarse weights
    outclassed_by = 8.0  # fine coefficients of a frame this much less sharp are never taken
    takes_over_at = 8.0  # ... and a frame this much sharper than their holder always takes them
    holder_floor_quantile = 0.9  # ... where it is that much sharper than most of the first frame
    quiet_below = 3.0  # fine activity under this many times the noise floor is only noise
    floor_quantile = 0.1  # the first frame's activity quantile taken as its noise floor
    floor_cap = 0.75  # ... but never above this, in 8-bit levels (sensor noise of about 3.5)

    def __init__(self, height: int, width: int, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.white = float(np.iinfo(self.dtype).max)
        self.wdt = pyramid.work_dtype(self.dtype)
        self.levels = pyramid.pyramid_levels(height, width)
        self.shapes = pyramid.level_shapes(height, width, self.levels)
        self.fine = min(self.coarse_from, self.levels - 1)
        # Planar bands (3, h, w): see stacker.pyramid.
        self.fused = [np.zeros((3, h, w), self.wdt) for h, w in self.shapes]
        self.bands = [np.zeros((3, h, w), self.wdt) for h, w in self.shapes]
        # Scratch rows of the frame's width for the pyramid's expansions
        # (:func:`stacker.pyramid.build`), then band 0's green activity and the quiet places'
        # running mean, one after the other, each made a strip at a time; a whole plane where
        # the height is odd, which band 0's activity then needs (:meth:`_band_activity`).
        rows = max(pyramid.SCRATCH_ROWS, 2 * ACTIVITY_ROWS, 2 * APPLY_ROWS)
        self._scratch = np.zeros((height if height % 2 else min(height, rows), width), self.wdt)
        # Fine decisions are made per band at the band's size, except the finest band's, which
        # is made at half size (it is a 5x5 majority vote anyway) and applied with a 2x2 mask.
        self.decision_shapes = [self.shapes[min(1, self.levels - 1)], *self.shapes[1 : self.fine]]
        # Activity in the bands' type: band 0's is made in the scratch plane, then reduced.
        self.activity = [np.zeros(shape, self.wdt) for shape in self.decision_shapes]
        self._act_new = [np.zeros_like(a) for a in self.activity]
        self._mask = [np.zeros(shape, np.uint8) for shape in self.decision_shapes]
        # Band 0's decisions doubled to full size a strip at a time (:meth:`_apply`).
        h2, w2 = self.decision_shapes[0]
        rows = min(h2, APPLY_ROWS)
        self._pairs = np.zeros((rows, w2), np.uint16)
        self._take0 = np.zeros((2 * rows, 2 * w2), np.uint8)  # (an odd edge's column too)
        self._quiet0 = np.zeros((2 * rows, 2 * w2), np.uint8)
        # Where every frame so far was quiet (its activity below the noise threshold), per fine
        # band at decision size: there the fused coefficient is the running mean.
        self.quiet = [np.zeros(shape, np.uint8) for shape in self.decision_shapes]
        # Per fine band: the quiet threshold per place (:meth:`_noise_threshold`).
        self.noise_threshold = [np.zeros(shape, self.wdt) for shape in self.decision_shapes]
        self._edges: np.ndarray | None = None  # the brightness classes' bounds
        self._floors: list[np.ndarray | None] = [None] * len(self.decision_shapes)
        # Coarse bands and base: focus-weighted running sums (float32; a few % of a frame).
        coarse = self.shapes[self.fine :]
        self.weight_sum = [np.zeros(shape, np.float32) for shape in coarse]
        self.band_sum = [np.zeros((3, h, w), np.float32) for h, w in coarse]
        self._score = [np.zeros(shape, np.float32) for shape in coarse]
        self.count = 0
        self.tracker = FocusTracker(height, width, self.track_level)
        self.coarse = _coarse_tracker(height, width)
        # Per fine band, at the tracker's size: the focus measure of the frame whose
        # coefficients the band holds there (:meth:`_takes_over`).
        self.holder = [np.zeros(self.tracker.best.shape, np.float32) for _ in self.decision_shapes]
        self._holder_floor = 0.0

    @property
    def _to_8bit(self) -> float:
        """Working units per 8-bit level."""
        return pyramid.FIXED_POINT if self.dtype == np.uint8 else pyramid.WIDE_SCALE * 257.0

    def _scratch_for(self, shape: tuple[int, ...]) -> np.ndarray:
        """The scratch's first elements as an array of ``shape`` (a view: it is contiguous)."""
        return self._scratch.reshape(-1)[: int(np.prod(shape))].reshape(shape)

    def _band_activity(self, k: int) -> np.ndarray:
        """Local activity of the new frame at fine band k, at the band's decision size.

        |green coefficient| averaged over about 5x5 pixels. Green carries most of the luminance
        detail (and half of a Bayer sensor's photosites), and it is one plane of the band.
        """
        out = self._act_new[k]
        h, w = out.shape
        if k == 0:
            green = self.bands[0][1]
            # Area-averaged to half size a strip at a time, the same rows as the whole plane
            # gives unless the height is odd (then the rows' weights are fractional).
            step = ACTIVITY_ROWS if green.shape[0] % 2 == 0 else h
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                rows = green[2 * r0 : 2 * r1]
                part = self._scratch_for(rows.shape)
                cv.absdiff(rows, 0, dst=part)
                cv2.resize(part, (w, r1 - r0), dst=out[r0:r1], interpolation=cv2.INTER_AREA)
            return cv2.blur(out, (3, 3), dst=out)
        cv.absdiff(self.bands[k][1], 0, dst=out)
        return cv2.blur(out, (5, 5), dst=out)

    def _focus_scores(self) -> list[np.ndarray]:
        """The new frame's focus score at every coarse level (finest coarse level first).

        The finest band's activity, area-averaged down level by level and smoothed at each by
        ``score_sigma`` of that level's pixels, so a coarse coefficient sees how sharp the frame
        is over a neighbourhood as wide as the coefficient's own reach. Fine detail, not the
        coarse coefficient itself, says where a frame is in focus: a defocused frame spreads an
        edge's energy into the coarse bands around it (its colour *glows* there), and would win
        them on their own activity. Each level is computed from the one below, so decisions
        agree across scales.
        """
        # Scores in 8-bit levels, whatever the working type, so their powers stay in range.
        source = self._act_new[0].astype(np.float32)
        source *= np.float32(1.0 / self._to_8bit)
        for score in self._score:
            h, w = score.shape
            cv2.resize(source, (w, h), dst=score, interpolation=cv2.INTER_AREA)
            cv2.GaussianBlur(score, (0, 0), self.score_sigma, dst=score)
            source = score
        return self._score

    def _merge_fine(self, valid_small: np.ndarray, first: bool, tracked: _Tracked) -> None:
        """Fine bands: each coefficient from the frame with the highest local activity, the
        decision majority-filtered (5x5) so isolated noise in flat areas is not picked, and
        never where the frame is outclassed (:meth:`track`), but always where it takes over
        (:meth:`_takes_over`). Where every frame so far is quiet (:meth:`_fold_quiet`) the
        coefficient is their mean."""
        if first:
            covered = tracked.measure[tracked.measure >= 0]
            if covered.size:
                self._holder_floor = float(np.quantile(covered, self.holder_floor_quantile))
        allowed: dict[tuple[int, int], np.ndarray] = {}  # per decision size (bands 0, 1 share)
        for k in range(self.fine):
            act = self._band_activity(k)
            decision: np.ndarray = self._mask[k]
            h, w = decision.shape
            cv2.resize(valid_small, (w, h), dst=decision, interpolation=cv2.INTER_NEAREST)
            self._fold_quiet(k, act, decision, first)
            if not first:
                win = cv2.compare(act, self.activity[k], cv2.CMP_GT)
                win = _majority(win, 5 if min(h, w) > 64 else 3)
                cv2.bitwise_or(win, self._takes_over(k, tracked.measure, (w, h)), dst=win)
                cv2.bitwise_and(win, decision, dst=decision)
                if (h, w) not in allowed:
                    up = cv2.resize(tracked.eligible, (w, h), interpolation=cv2.INTER_LINEAR)
                    allowed[h, w] = cv.compare(up, 127, cv2.CMP_GT, dst=up)
                cv2.bitwise_and(allowed[h, w], decision, dst=decision)
                cv2.subtract(decision, self.quiet[k], dst=decision)  # quiet is 0 or 255
            self._hold(k, decision, tracked.measure)
            cv2.copyTo(act, decision, self.activity[k])
            self._apply(k, decision, None if first else self.quiet[k])

    def _takes_over(self, k: int, measure: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Where the new frame takes fine band ``k`` whatever its activity (0/255 at ``size``):
        it is ``takes_over_at`` times sharper than the frame the band holds there, and than
        most of the first frame.

        The counterpart of the outclassed check. Shot near to far, the frame
        focused on a saturated object comes before the defocused ones, and the check keeps
        their spread edges out of the fine bands around it. Shot far to near, the defocused
        frames come first and their spread edges are taken, on a black or flat surround, for
        want of anything sharper; the frame focused on the object then shows that surround
        flat, with less activity than the spill, and would not replace it. The floor (the
        first frame's ``holder_floor_quantile`` of focus) confines the rule to places no
        frame has yet shown sharp: where one has, activity and the outclassed check decide.
        """
        bar = cv.max(self.holder[k], self._holder_floor)
        bar *= np.float32(self.takes_over_at)
        take = cv2.compare(measure, bar, cv2.CMP_GE)
        return cv2.resize(take, size, interpolation=cv2.INTER_NEAREST)

    def _hold(self, k: int, decision: np.ndarray, measure: np.ndarray) -> None:
        """Remember the new frame's focus measure where fine band ``k`` took its coefficients
        (``decision``, at the band's decision size)."""
        th, tw = measure.shape
        took = decision
        if took.shape != (th, tw):
            took = cv2.resize(decision, (tw, th), interpolation=cv2.INTER_AREA)
        cv2.copyTo(measure, cv.compare(took, 127, cv2.CMP_GT), self.holder[k])

    def _apply(self, k: int, decision: np.ndarray, quiet: np.ndarray | None) -> None:
        """Write the new frame's coefficients into fine band ``k`` where it won (``decision``),
        and the running mean of the frames where every one so far is ``quiet``
        (:meth:`_fold_quiet`; None for the first frame, where its own coefficients are both).

        Band 0's decisions, made at half size, are doubled to full size and applied
        :data:`APPLY_ROWS` rows at a time: the doubled masks and the mean stay in cache rather
        than make three more passes over 24 MP, and a strip with no quiet place skips the mean.
        """
        if k > 0 or decision.shape == self.shapes[0]:
            for r0 in range(0, decision.shape[0], 2 * APPLY_ROWS):  # the scratch's rows
                rows = np.s_[r0 : r0 + 2 * APPLY_ROWS]
                still = None if quiet is None else quiet[rows]
                self._apply_rows(
                    self.bands[k][:, rows], self.fused[k][:, rows], decision[rows], still
                )
            return
        fh, fw = self.shapes[0]
        h2 = decision.shape[0]
        for r0 in range(0, h2, APPLY_ROWS):
            r1 = min(h2, r0 + APPLY_ROWS)
            f0, f1 = 2 * r0, min(fh, 2 * r1)  # the strip's frame rows (an odd last row cut)
            pairs = self._pairs[: r1 - r0]
            take = _doubled(decision[r0:r1], pairs, self._take0[: 2 * (r1 - r0)])
            still = None
            if quiet is not None:
                still = _doubled(quiet[r0:r1], pairs, self._quiet0[: 2 * (r1 - r0)])
                still = still[: f1 - f0, :fw]
            bands, fused = self.bands[0][:, f0:f1], self.fused[0][:, f0:f1]
            self._apply_rows(bands, fused, take[: f1 - f0, :fw], still)

    def _apply_rows(
        self, bands: np.ndarray, fused: np.ndarray, take: np.ndarray, quiet: np.ndarray | None
    ) -> None:
        """:meth:`_apply` on planar rows ``bands`` and ``fused`` (3, h, w) with masks (h, w) of
        their size."""
        x, y, w, h = cv2.boundingRect(quiet) if quiet is not None else (0, 0, 0, 0)
        box = np.s_[y : y + h, x : x + w]  # quiet places shrink as frames bring detail
        tx, ty, tw, th = cv2.boundingRect(take)
        won = np.s_[ty : ty + th, tx : tx + tw]  # a frame wins a few % of a band, in places
        n = self.count + 1
        for band, out in zip(bands, fused, strict=True):
            if quiet is not None and w:
                mask = quiet[box]
                mean = self._scratch_for(mask.shape)
                cv2.addWeighted(out[box], (n - 1) / n, band[box], 1.0 / n, 0.0, dst=mean)
                cv2.copyTo(mean, mask, out[box])
            if tw:
                cv2.copyTo(band[won], take[won], out[won])

    def _fold_quiet(self, k: int, act: np.ndarray, valid: np.ndarray, first: bool) -> None:
        """Update where fine band ``k`` is quiet in every frame so far: there :meth:`_apply`
        gives it their mean.

        Where no frame shows more than noise (a flat area, or one every frame sees defocused),
        picking the most active coefficient picks the largest of the frames' noise draws: the
        composite comes out noisier than any single frame. There the mean of the frames is the
        better estimate (it divides the noise variance by their number), as it is in the
        coarse bands. Quiet: local activity under ``quiet_below`` times the noise floor, the
        first frame's ``floor_quantile`` of its activity in that band (most of a focus-stack
        frame is out of focus, where the fine bands hold only noise), capped at ``floor_cap``
        (the far end of a stack shot far to near can be sharp nearly all over, and its
        quietest tenth is then texture, not noise). A place leaves the
        average for good at the first frame that is not quiet there (or does not cover it),
        and the usual selection takes over, so every averaged coefficient is the mean of all
        frames so far, and one weight serves the whole band.
        """
        quiet = self.quiet[k]
        if first:
            self._noise_threshold(k, act)
        below = cv2.compare(act, self.noise_threshold[k], cv2.CMP_LT)
        cv2.bitwise_and(below, valid, dst=below)
        if first:
            quiet[...] = below
            return
        cv2.bitwise_and(quiet, below, dst=quiet)

    def _noise_threshold(self, k: int, act: np.ndarray) -> None:
        """Set fine band ``k``'s quiet threshold per place from the first frame's activity in
        it (``act``): ``quiet_below`` times the noise floor of the places as bright as that
        place.

        Sensor noise grows with the signal (shot noise), and a dark or black backdrop is common
        in macro work. One floor for the whole frame, taken from its quietest tenth, was the
        backdrop's: a black velvet over a tenth of the frame (activity 0) or a dark one (its
        noise a fraction of a brighter background's) set it below the noise everywhere else,
        and the smooth background was no longer averaged (as noisy as one frame, not a third of
        it). So the floor is taken per brightness class (:data:`BRIGHTNESS_CLASSES` of equal
        share, by the first frame's base band), from the places with any activity at all.

        The floor is capped at ``floor_cap`` unless the class's quietest places hold white
        noise (:meth:`_noise_like`): a high-ISO frame's noise is above the cap, and capped, its
        smooth background came out noisier than any one frame (1.08 times at about 5 levels).
        """
        sample = act[::8, ::8]  # hundreds of thousands of places at 24 MP: enough for a tenth
        level = cv2.resize(
            self.bands[-1][1],  # green, the lowest band: brightness without the noise
            (sample.shape[1], sample.shape[0]),
            interpolation=cv2.INTER_LINEAR,
        )
        if self._edges is None:  # band 0, the first measured
            self._edges = np.quantile(level, np.linspace(0.0, 1.0, BRIGHTNESS_CLASSES + 1)[1:-1])
        classes = np.digitize(level, self._edges)
        floors = np.zeros(BRIGHTNESS_CLASSES)
        for c in range(BRIGHTNESS_CLASSES):
            values = sample[(classes == c) & (sample > 0)]
            if values.size:
                rank = int(self.floor_quantile * (values.size - 1))
                floors[c] = float(np.partition(values, rank)[rank])
        self._floors[k] = floors
        self._write_threshold(k)
        if k == 1 and self._noise_like().any():  # band 0's threshold, now that it is known
            self._write_threshold(0)
            quiet = cv2.compare(self.activity[0], self.noise_threshold[0], cv2.CMP_LT)
            cv2.bitwise_and(quiet, self._mask[0], dst=self.quiet[0])  # its first fold's

    def _noise_like(self) -> np.ndarray:
        """Per brightness class, whether the first frame's quietest places hold white noise:
        their activity in band 1 is under :data:`NOISE_BAND_RATIO` of band 0's (white noise
        gives 0.24 through this pyramid; texture, even defocused, 0.86 and more: it has more
        energy at the coarser scale). All False until both bands are measured."""
        if len(self._floors) < 2:  # a frame too small for two fine bands: capped as before
            return np.zeros(BRIGHTNESS_CLASSES, bool)
        first, second = self._floors[0], self._floors[1]
        if first is None or second is None:
            return np.zeros(BRIGHTNESS_CLASSES, bool)
        return (first > 0) & (second < NOISE_BAND_RATIO * first)

    def _write_threshold(self, k: int) -> None:
        """Fill band ``k``'s threshold map from its class floors (see :meth:`_noise_threshold`)."""
        floors = self._floors[k]
        assert floors is not None and self._edges is not None
        capped = np.minimum(floors, self.floor_cap * self._to_8bit)
        threshold = self.quiet_below * np.where(self._noise_like(), floors, capped)
        out = self.noise_threshold[k]
        # Integer activity under a threshold is under its ceiling.
        table = (np.ceil(threshold) if out.dtype.kind == "i" else threshold).astype(out.dtype)
        h, w = out.shape
        # Classed at a quarter of the band's size, then spread: at full size the map took
        # 0.7 s of a 24 MP stack's first frame.
        small = (max(1, w // 4), max(1, h // 4))
        level = cv2.resize(self.bands[-1][1], small, interpolation=cv2.INTER_LINEAR)
        cv2.resize(table[np.digitize(level, self._edges)], (w, h), dst=out,
                   interpolation=cv2.INTER_LINEAR)  # fmt: skip

    def _merge_coarse(self, valid_small: np.ndarray) -> None:
        """Coarse bands and base: running sums weighted by the focus score to the power
        ``sharpness``. Where one frame is sharper than the others the blend follows it (and the
        defocused frames' spread colour stays out); where none is (flat areas, only noise) it
        is the mean of all frames, which averages the noise away."""
        for j, score in enumerate(self._focus_scores()):
            k = self.fine + j
            h, w = score.shape
            weight = cv2.pow(score, self.sharpness)
            weight += np.float32(1e-6)  # a flat area keeps the plain mean
            valid = cv2.resize(valid_small, (w, h), interpolation=cv2.INTER_NEAREST)
            weight[valid == 0] = 0.0
            self.weight_sum[k - self.fine] += weight
            band_sum = self.band_sum[k - self.fine]
            band_sum += self.bands[k] * weight
            fused = band_sum / np.maximum(self.weight_sum[k - self.fine], 1e-30)
            if self.wdt == np.int16:
                np.rint(fused, out=fused)
            np.copyto(self.fused[k], fused, casting="unsafe")

    def buffers(self) -> list[np.ndarray]:
        return [*self.bands, self._scratch, *self._act_new, *self.activity, *self.fused]

    def track(self, measure: np.ndarray, valid_small: np.ndarray, index: int) -> _Tracked:
        """Fold the frame's focus measure into the tracker; returns what :meth:`fold` needs of
        it: where the frame is not outclassed (the best frame so far less than
        ``outclassed_by`` times sharper) and its focus measure."""
        self.tracker.update(measure, valid_small, index)
        scaled = cv.multiply(self.tracker.latest, self.outclassed_by)
        return _Tracked(cv2.compare(self.tracker.best, scaled, cv2.CMP_LE), self.tracker.latest)

    def fold(
        self,
        frame: np.ndarray,
        gains: tuple[float, float, float],
        valid_small: np.ndarray,
        tracked: _Tracked,
    ) -> None:
        """Merge a tracked frame (``tracked``: what :meth:`track` returned for it)."""
        pyramid.to_planes(frame, gains, self.bands[0], self.white)
        pyramid.build(self.levels, self.bands, self._scratch)
        self._merge_fine(valid_small, self.count == 0, tracked)
        self._merge_coarse(valid_small)
        self.count += 1

    def composite(self, stop: int = 0) -> np.ndarray:
        """The current composite in the frames' dtype (level ``stop``: 0 = full resolution).

        The new-frame band buffers are scratch between frames, so the collapse writes there.
        """
        return pyramid.from_work(pyramid.collapse(self.fused, stop, scratch=self.bands), self.dtype)


class DepthMapMerger(_Merger[np.ndarray]):
    """Best-focus-per-pixel composite with feathered transitions; see the module docstring."""

    name = "depthmap"
    track_level = 1  # transitions placed at 1/2 resolution
    feather = 3.0  # sigma of the transition blur, in tracker pixels

    def __init__(self, height: int, width: int, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.white = float(np.iinfo(self.dtype).max)
        self.shape = (height, width)
        self.comp = np.zeros((height, width, 3), np.float32)
        self._work = np.zeros((min(height, FOLD_ROWS), width, 3), np.float32)  # one strip
        self.count = 0
        self.tracker = FocusTracker(height, width, self.track_level)
        self.coarse = _coarse_tracker(height, width)
        # The blend weight at full size, a strip at a time (:meth:`_weight_rows`), where the
        # frame is twice the tracker's height; else whole (an odd height: 180 MB at 45 MP).
        self._whole = height != 2 * self.tracker.best.shape[0]
        rows = height if self._whole else min(2 * self.tracker.best.shape[0], FOLD_ROWS + 6)
        self._weight = np.zeros((rows, width), np.float32)

    def buffers(self) -> list[np.ndarray]:
        return [self._work, self.comp, self._weight]

    def _weight_rows(self, soft: np.ndarray, y0: int, y1: int) -> np.ndarray:
        """Frame rows ``y0`` to ``y1`` of ``soft`` (the blend weight at the tracker's size)
        resized bilinearly to the frame's size: the same values as one resize of the whole.

        Made from the band of ``soft`` rows that those frame rows sample, with a row to spare
        either side. At exactly twice the size, frame row ``y`` samples ``soft`` at
        ``y / 2 - 0.25`` whatever the band's first row (an integer row of ``soft``), so the
        band's resize gives the whole one's values away from its clamped ends.
        """
        if self._whole:
            return self._weight[y0:y1]
        s0, s1 = max(0, y0 // 2 - 1), min(soft.shape[0], (y1 - 1) // 2 + 2)
        band = self._weight[: 2 * (s1 - s0)]
        cv2.resize(soft[s0:s1], band.shape[::-1], dst=band, interpolation=cv2.INTER_LINEAR)
        return band[y0 - 2 * s0 : y1 - 2 * s0]

    def track(self, measure: np.ndarray, valid_small: np.ndarray, index: int) -> np.ndarray:
        """Fold the frame's focus measure into the tracker; returns a copy of where it now
        wins (0/255), all :meth:`fold` needs of the tracker."""
        return self.tracker.update(measure, valid_small, index).copy()

    def fold(
        self,
        frame: np.ndarray,
        gains: tuple[float, float, float],
        valid_small: np.ndarray,
        winner: np.ndarray,
    ) -> None:
        """Merge a tracked frame (``winner``: what :meth:`track` returned for it).

        The frame's working values and their blend weights are made and blended
        :data:`FOLD_ROWS` rows at a time: float32 values of a whole frame would be as large as
        the composite (540 MB at 45 MP), and its weights a third of that.
        """
        h, w = self.shape
        soft = winner
        if self.count:
            soft = cv2.GaussianBlur(winner.astype(np.float32) / 255.0, (0, 0), self.feather)
            soft = np.minimum(soft, valid_small.astype(np.float32) / 255.0)
            if self._whole:
                cv2.resize(soft, (w, h), dst=self._weight, interpolation=cv2.INTER_LINEAR)
        step = self._work.shape[0]
        for y0 in range(0, h, step):
            y1 = min(h, y0 + step)
            work = pyramid.to_work(frame[y0:y1], gains, self._work[: y1 - y0], self.white)
            comp = self.comp[y0:y1]
            if self.count == 0:
                comp[...] = work
                continue
            cv2.subtract(work, comp, dst=work)  # work is scratch from here on
            work *= self._weight_rows(soft, y0, y1)[:, :, None]
            comp += work
        self.count += 1

    def composite(self, stop: int = 0) -> np.ndarray:
        """The current composite in the frames' dtype, downscaled by 2**stop."""
        img: np.ndarray = self.comp
        if stop:
            h, w = self.shape
            img = cv2.resize(
                img, (max(1, w >> stop), max(1, h >> stop)), interpolation=cv2.INTER_AREA
            )
        if self.dtype == np.uint8:
            return cv2.convertScaleAbs(img)  # rounds and saturates; the blend is never negative
        out = np.empty(img.shape, np.uint16)
        np.copyto(out, np.minimum(img, 65535.0) + 0.5, casting="unsafe")
        return out


def _set_where(dst: np.ndarray, value: float, mask: np.ndarray) -> None:
    """``value`` into the float32 array ``dst`` where ``mask`` is not 0, in place.

    This is ``cv::Mat::setTo`` with a mask, which OpenCV's Python binding lacks. The masked
    bitwise AND with 0 clears those elements, and the OR with ``value`` writes its bits (OpenCV
    converts a scalar to the array's type, 4.9 and 5.1 alike). It takes as long as a masked
    copy from an array of the constant, and needs no such array: two of them were 90 MB at
    the depth-map tracker's size in a 45 MP stack.
    """
    cv.bitwise_and(dst, 0, dst=dst, mask=mask)
    cv.bitwise_or(dst, value, dst=dst, mask=mask)


def _doubled(mask: np.ndarray, pairs: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``mask`` (h, w) at twice its size in ``out`` (2h, 2w), each value a 2x2 block: the same
    as ``cv2.resize`` with ``INTER_NEAREST``, in half the time. Each value doubled into a
    uint16 (times 257, in ``pairs``, (h, w)) is the row widened; two copies make the two rows."""
    h, w = mask.shape
    cv.multiply(mask, 257, dst=pairs, dtype=cv2.CV_16U)
    wide = pairs.view(np.uint8)
    rows = out.reshape(h, 4 * w)  # rows 2i and 2i + 1 side by side
    rows[:, : 2 * w] = wide
    rows[:, 2 * w :] = wide
    return out


def _majority(mask: np.ndarray, size: int) -> np.ndarray:
    """255 where most of the ``size`` x ``size`` pixels around are 255 in a 0/255 mask (edges
    replicated): its median, as ``cv2.medianBlur`` gives it, from a box mean (half the time).

    The mean of k of n pixels at 255 rounds above 127 exactly when k > n / 2 (n odd)."""
    mean = cv2.blur(mask, (size, size), borderType=cv2.BORDER_REPLICATE)
    return cv.compare(mean, 127, cv2.CMP_GT, dst=mean)


def make_merger(
    method: str, height: int, width: int, dtype: np.dtype
) -> PyramidMerger | DepthMapMerger:
    """The merger for ``method`` ('pyramid' or 'depthmap')."""
    if method == "pyramid":
        return PyramidMerger(height, width, dtype)
    if method == "depthmap":
        return DepthMapMerger(height, width, dtype)
    raise ValueError(f"unknown merge method {method!r}")
