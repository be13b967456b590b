"""The streaming focus stacker: frames go in one at a time, a composite is ready at any moment.

Each new frame is registered to the previous merged frame on downscaled luma
(:func:`stacker.align.register`), the pairwise transform is chained back to the first frame,
exposure and white balance are matched with per-channel gains, and the frame is warped once at
full resolution and folded into the merger's state (:mod:`stacker.merge`). Nothing of a frame is
kept after it is merged except the small images the next registration needs and the warped
frame buffers, which are reused: memory does not grow with the number of frames.

Folding a frame into the merge state is the larger half of the work and touches nothing that
aligning the next frame needs, so by default (``overlap=True``) :meth:`Stacker.add` aligns and
warps a frame on the caller's thread, then merges it on a background thread and returns: the
next frame is aligned (and, with :class:`stacker.pipeline.ReadAhead`, decoded) while this one
merges. Two warped-frame buffers alternate so the two never share one. Every method that reads
the merge state first waits for the merge in progress (:meth:`Stacker.wait`), so callers see the
same results, in the same order, as with ``overlap=False``, which merges inside ``add``.

A stacker may be shared between threads (a preview read while another thread adds frames):
what touches the merge state runs one at a time (adding, collapsing the composite, reading
the trackers). A read in the middle of a merge once collapsed the pyramid in the buffers the
merge was building the next frame in, and spoiled the composite. What works on arrays already
taken from it (warping the composite or the depth map into the result's geometry) runs
outside, so that the outputs are written side by side on the cores.

The merge state lives in the geometry of the first frame. A different reference (``middle``,
``last`` or an index) is applied when the result is produced, by one final warp.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import wraps
from typing import Any, NamedTuple, TypeVar

import cv2
import numpy as np

from stacker import depth, prefault, pyramid
from stacker.align import (
    MODELS,
    corner_displacement,
    distortion,
    luma_pyramid,
    project_to_model,
    register,
    rescale_matrix,
)
from stacker.crop import Coverage
from stacker.depth_regions import vote_flat_regions
from stacker.errors import FrameMismatchError, StackerError, resource_shortage
from stacker.focus import WINDOW_PX, focus_measure, luma, measure_luma
from stacker.io import FloatRange, to_8bit, to_uint16, white_level
from stacker.merge import DepthMapMerger, PyramidMerger, make_merger

METHODS: tuple[str, ...] = ("pyramid", "depthmap")
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_STRIP_ROWS = 512
_WARP_BGRA = int(cv2.__version__.split(".")[0]) < 5
"""Whether the full-size 8-bit warp goes through four channels (:meth:`Stacker._warp_bgra`):
before OpenCV 5 the bilinear ``warpAffine`` is vectorised for four channels only; OpenCV 5.1
warps three channels faster than four plus the two conversions (0.18 against 0.24 s at 24 MP)."""
#: Smallest frame side. Registration's pyramid breaks below 5 pixels and can return a singular
#: homography at 6; from 8 every model and method works, and 16 keeps a margin.
MIN_FRAME_SIDE = 16
_FOCUS_FLOOR = 4.0  # focus measure of a textureless 8-bit frame (noise), for the depth map
# The coarse measure's confidence counts this much of itself: under the fill's threshold, so a
# coarse depth never overrules a confident pixel (:meth:`Stacker._second_opinion`).
_COARSE_TRUST = 0.6 * depth.LOW_CONFIDENCE
_PREVIEW_DEPTH_SIZE = 384  # longest side at which the live preview's depth map is filled
_DEPTH_SIZE = 384  # longest side at which the written depth map is filled (then upsampled)...
_DEPTH_FINEST = 8  # ... or, on larger frames, one map pixel per this many frame pixels ...
_DEPTH_SIZE_CAP = 768  # ... up to this longest side


@dataclass(frozen=True)
class FrameRecord:
    """What happened to one frame: its transform, exposure gain, score, merged or why not."""

    index: int
    name: str
    position_um: float | None
    merged: bool
    reason: str | None
    transform: tuple[tuple[float, float, float], ...]
    gain: tuple[float, float, float]
    score: float
    seconds: float
    """Time spent in :meth:`Stacker.add`. With ``overlap`` a frame's merge runs during the next
    frame's ``add`` (or the first read of the result) and counts there, so the sum over the
    stack is still the time stacking took."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 transform from this frame's pixels to the first frame's pixels."""
        return np.array(self.transform, dtype=np.float64)


class _Outcome(NamedTuple):
    """What :meth:`Stacker.add` made of a frame, before it is numbered and named."""

    merged: bool
    reason: str | None
    """Why the frame was kept out; ``None`` when merged."""
    chain: np.ndarray
    """The frame's transform to the first frame (the identity when kept out)."""
    gain: np.ndarray
    score: float

    def record(
        self, index: int, name: str, position_um: float | None, *, seconds: float
    ) -> FrameRecord:
        """The frame's :class:`FrameRecord`."""
        return FrameRecord(
            index=index,
            name=name,
            position_um=position_um,
            merged=self.merged,
            reason=self.reason,
            transform=_rows3(self.chain),
            gain=_triple(self.gain),
            score=float(self.score),
            seconds=seconds,
        )


def _position(value: object, name: str) -> float:
    """``value`` as a finite number of µm, or a StackerError naming it (a NaN made the depth
    map NaN where that frame won, an infinity or a string failed only when it was written)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
        if np.isfinite(number):
            return number
    raise StackerError(f"{name}: position {value!r} is not a finite number of µm")


F = TypeVar("F", bound=Callable[..., Any])


def _one_at_a_time(method: F) -> F:
    """A :class:`Stacker` method that runs while no other thread is in one (see the module
    docstring). The merge running in the background is not one: readers wait for it."""

    @wraps(method)
    def locked(self: Stacker, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def parse_reference(reference: str | int) -> str | int:
    """Validate a ``--reference`` value: first, middle, last or a frame number.

    Frame numbers count from 1, as everywhere a user sees frames (file names, progress, the
    summary table); the result is the 0-based index into :attr:`Stacker.records`.
    """
    if isinstance(reference, bool) or not isinstance(reference, (int, str)):
        raise StackerError(f"reference {reference!r} is not valid: use first, middle, last or 1..N")
    text = str(reference).strip().lower()
    if text in ("first", "middle", "last"):
        return text
    if re.fullmatch(r"-?[0-9]+", text):  # ASCII digits: "²" is a digit to str.isdigit
        if len(text.lstrip("-0")) > 9:
            shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"
            raise StackerError(f"reference frame {shown}: no stack has that many frames")
        number = int(text)
        if number < 1:
            raise StackerError(
                f"reference frame {number} does not exist: frames count from 1 (the first frame)"
            )
        return number - 1
    raise StackerError(
        f"reference {reference!r} is not valid: use first, middle, last or a frame number from 1"
    )


class Stacker:
    """Incremental pairwise aligner and merger; see the module docstring.

    Parameters
    ----------
    method
        ``"pyramid"`` (detail, the default) or ``"depthmap"`` (smooth colour).
    align
        Motion model: ``"similarity"`` (default: scale from focus breathing, rotation, shift),
        ``"translation"``, ``"affine"``, ``"homography"`` or ``"none"``.
    reference
        Geometry of the result: ``"first"``, ``"middle"``, ``"last"`` or a frame number counted
        from 1 (the first frame given to :meth:`add`). :attr:`reference` holds it parsed: a name
        or the 0-based index of the frame's record.
    expected_frames
        The stack's length when known, which fixes ``"middle"`` up front.
    preview_size
        Longest side of :meth:`preview` images.
    align_size
        Longest side of the images registration works on.
    min_score
        Alignment score below which a frame is rejected rather than merged.
    interpolation
        Resampling of frames into the reference: ``"linear"`` (default) or ``"cubic"``. Against
        synthetic truth both score the same PSNR; on real frames with detail up to the pixel
        pitch, bicubic keeps about a quarter more fine-detail energy, at 2.5x the cost of the
        warp (about 250 ms more per 24 MP frame on two cores).
    overlap
        Merge each frame on a background thread while the caller goes on to the next (see the
        module docstring); the results are the same either way. False merges inside ``add``.
    far_first
        The frames run from the far end of the subject to the near end (a rail session shot
        ``far-to-near``). The end-of-stack depth map's rules for flat regions and occlusions
        need to know which side of an outline is nearer; by default the first frame is the
        nearest, as in a camera's focus bracketing.
    """

    def __init__(
        self,
        *,
        method: str = "pyramid",
        align: str = "similarity",
        reference: str | int = "first",
        expected_frames: int | None = None,
        preview_size: int = 1024,
        align_size: int = 1024,
        min_score: float = 0.25,
        interpolation: str = "linear",
        overlap: bool = True,
        far_first: bool = False,
    ) -> None:
        if method not in METHODS:
            raise StackerError(f"method '{method}' is not known: use {' or '.join(METHODS)}")
        if align not in MODELS:
            raise StackerError(f"alignment '{align}' is not known: use one of {', '.join(MODELS)}")
        if interpolation not in INTERPOLATIONS:
            raise StackerError(f"interpolation '{interpolation}' is not known: use linear or cubic")
        self.interpolation = INTERPOLATIONS[interpolation]
        self.method = method
        self.align = align
        self.reference = parse_reference(reference)
        self.expected_frames = expected_frames
        self.preview_size = int(preview_size)
        self.align_size = int(align_size)
        self.min_score = float(min_score)
        self.overlap = bool(overlap)
        self.far_first = bool(far_first)
        self.records: list[FrameRecord] = []
        self._floats = FloatRange()  # float frames' white: the first one's (see _check_frame)
        self._greyscale = True  # every merged frame so far (see greyscale)
        self.numbers: dict[int, int] = {}
        """Each record's frame number as the front end shows it, where it gave one (see
        :meth:`add`)."""
        self._lock = threading.RLock()  # see _one_at_a_time
        self._state: PyramidMerger | DepthMapMerger | None = None  # read through _merger
        self._out_of_memory: str | None = None  # why no frame is merged any more (or released)
        self._pending: _Background | None = None
        self._prefault: prefault.Prefault | None = None
        self._shape: tuple[int, int] | None = None
        self._dtype: np.dtype | None = None
        self.white: float | None = None
        """The value white is in the frames (:func:`stacker.io.white_level`), once the first has
        arrived: 255 for 8 bits; 65535 for RAW frames; for other 16-bit frames the first's level,
        raised by any later frame brighter than it (a camera's 12 bits in 16: 4095). Previews,
        100 % crops and JPEG composites are scaled from it, and highlights at it are clipped
        ones; the composite's pixels are the frames' own."""
        self.linear = False  # set by the first frame: see add()
        self.display: Callable[[np.ndarray], np.ndarray] | None = None
        """How a linear (RAW) stack's previews and 100 % crops are shown: the rendering of the
        reference frame's colour profile (:func:`stacker.raw.display_of`), set by the front end
        that reads the frames. Without it they show linear camera RGB: dark and green."""
        self.icc: bytes | None = None
        """The ICC profile of the colour space the frames are in (the first merged frame's,
        :func:`stacker.metadata.read_metadata`), set by the front end: the previews and 100 %
        crops carry it, so that a browser shows Adobe RGB or ProPhoto frames in their colours
        rather than as sRGB, dulled and darkened. None for sRGB and rendered RAW stacks."""
        self._align_level = 0
        self._prev_luma: list[np.ndarray] | None = None  # luma pyramid, registration level
        self._prev_color: np.ndarray | None = None  # colour, a quarter of that, for gains
        self._prev_chain = np.eye(3)
        self._prev_gain = np.ones(3)
        self._predicted: np.ndarray | None = None
        self._prev_sharp = 0.0  # the alignment reference's sharpness (:func:`_sharpness`)
        self._weak: tuple[Any, ...] | None = None  # a blurred frame passed over as reference
        self._sharpness_of: dict[int, float] = {}  # each merged frame's, by index
        self._stack_colour: bool | None = False  # the first merged frame's (:func:`_colour`)
        self._coverage: Coverage | None = None
        self._warped: np.ndarray | None = None  # the last merged frame, warped
        self._buffers: list[np.ndarray] = []
        self._bgra: tuple[np.ndarray, np.ndarray] | None = None  # source band, output strip
        self._version = 0
        self._full_cache: tuple[int, np.ndarray] | None = None
        self._depth_cache: (
            tuple[tuple[int, int | None, bool], tuple[np.ndarray, np.ndarray]] | None
        ) = None
        self._snapped_cache: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def _merger(self) -> PyramidMerger | DepthMapMerger | None:
        """The merge state, once the merge in progress (if any) has finished."""
        self.wait()
        return self._state

    @_one_at_a_time
    def wait(self) -> None:
        """Wait until the frame being merged in the background is in the merge state.

        Re-raises what the merge raised (a bug or out of memory). Every reader of the state
        calls this; callers need it only to time the work or before leaving a thread.
        """
        if self._pending is not None:
            self._pending.join()
            self._pending = None

    @_one_at_a_time
    def release(self) -> None:
        """Let go of the merge state and buffers: the stack is given up without its result (a
        live stack starting again without a bad first frame), and a new stacker is about to
        take as much memory while this one may still be referenced (a preview's last crops).
        Its previews are ``None`` afterwards, and :meth:`add` refuses frames."""
        self.wait()
        self._out_of_memory = "this stack was given up, to start again without its first frame"
        if self._prefault is not None:
            self._prefault.cancel()
        self._state = self._coverage = self._warped = self._bgra = None
        self._buffers = []
        self._prev_luma = self._prev_color = self._weak = None
        self._full_cache = self._depth_cache = self._snapped_cache = None

    @property
    def frames_added(self) -> int:
        """Frames offered to :meth:`add` so far."""
        return len(self.records)

    @property
    def frames_merged(self) -> int:
        """Frames merged into the composite so far."""
        return sum(r.merged for r in self.records)

    @property
    def greyscale(self) -> bool:
        """Every merged frame is greyscale: given as one channel, or as three equal ones (a
        greyscale file, as :func:`~stacker.io.read_image` gives it). The composite's three
        channels are then equal too, and :meth:`result` gives one (a mono camera's stack was
        written as a colour image three times its size)."""
        return self._greyscale and self.frames_merged > 0

    @property
    def shape(self) -> tuple[int, int] | None:
        """(height, width) of the frames, once the first has arrived."""
        return self._shape

    # ------------------------------------------------------------------ adding frames
    @_one_at_a_time
    def add(
        self,
        image: np.ndarray,
        name: str = "",
        position_um: float | None = None,
        *,
        linear: bool = False,
        number: int | None = None,
    ) -> FrameRecord:
        """Align ``image`` to the previous frame and merge it.

        ``image`` is a numpy array, height x width x 3 in OpenCV's BGR order (a frame in RGB,
        as most other libraries give it, comes out with red and blue swapped when written), x 4
        (BGRA: the alpha is dropped) or height x width (x 1) for greyscale; uint8 or uint16
        (a camera's 10 to 14 bits in 16 are taken as they are), or floats, put in 16 bits with
        1.0 as white (or the first float frame's brightest pixel where that is brighter, as
        :func:`~stacker.io.read_image` reads float TIFFs). Views of any layout are fine.

        ``linear`` says the frame is in linear light (a RAW frame): it is merged as it is, and
        registered on a gamma-encoded luma copy, whose contrast in the shadows resembles what
        the eye (and a rendered frame) sees. A stack cannot mix linear and rendered frames.
        ``number`` is the frame's as the front end shows it (its file's place, its session
        frame number), which the depth preview's key names it by; by default its place here.
        """
        if number is not None:
            self.numbers[len(self.records)] = number
        name = name or f"frame {len(self.records) + 1}"
        if self._out_of_memory is not None:
            raise StackerError(f"{name}: {self._out_of_memory}")
        if position_um is not None:
            position_um = _position(position_um, name)
        try:
            return self._add(image, name, position_um, linear)
        except Exception as exc:
            if resource_shortage(exc) is None:  # a MemoryError, or OpenCV's StsNoMem
                raise
            # An allocation that failed may have left the stack half set up or a frame half
            # merged: nothing more is merged into it.
            h, w = image.shape[:2]
            self._out_of_memory = (
                f"not enough memory to stack {w}x{h} frames ({w * h / 1e6:.0f} megapixels); "
                "free some memory or stack smaller frames"
            )
            raise StackerError(f"{name}: {self._out_of_memory}") from None

    def _add(
        self, image: np.ndarray, name: str, position_um: float | None, linear: bool
    ) -> FrameRecord:
        t0 = time.perf_counter()
        index = len(self.records)
        if self._state is not None and linear != self.linear:
            # Said before the bit depth is checked: a JPEG in a RAW stack (a RAW+JPEG folder)
            # is 8-bit, and "do not mix bit depths" did not say what was mixed.
            kinds = ("rendered", "RAW (linear)")
            raise StackerError(
                f"{name}: a {kinds[linear]} frame in a stack of {kinds[self.linear]} frames; "
                "stack RAW and JPEG/TIFF frames separately"
            )
        image = self._check_frame(image, name)
        if self._state is None:
            self.linear = linear
            self._setup(image)
        top = float(np.iinfo(image.dtype).max)
        kept = self.white  # the merged frames' white: this frame's counts once it is merged
        if self.white != top:  # once at the type's largest, no frame raises it: no scan
            self.white = max(self.white or 0.0, top if self.linear else white_level(image))
        record = None
        try:
            record = self._judged(image, index, name, position_um, t0, top)
        finally:
            if record is None or not record.merged:
                # A frame kept out leaves the stack's white as it was: a 16-bit export of one
                # frame in a 12-bit stack's folder, refused for its exposure, left the stack
                # judged at 65535, its previews and JPEG nearly black and its clipped
                # highlights no longer held clipped.
                self.white = kept
        return record

    def _judged(
        self,
        image: np.ndarray,
        index: int,
        name: str,
        position_um: float | None,
        t0: float,
        top: float,
    ) -> FrameRecord:
        """Register ``image`` (checked, its white taken into :attr:`white`), and merge it or
        keep it out; recorded either way."""
        assert self.white is not None
        reduced = pyramid.reduced(image, self._align_level)  # the registration level
        rh, rw = reduced.shape[:2]
        small = cv2.resize(reduced, (max(1, rw // 4), max(1, rh // 4)),
                           interpolation=cv2.INTER_AREA).astype(np.float32)  # fmt: skip
        colour = _colour(small, self.white)
        if self.frames_merged and _mixed(colour, self._stack_colour):
            outcome = self._mixed_colour(colour is None)
            return self._recorded(outcome, index, name, position_um, t0)
        gray = luma(reduced.astype(np.float32))
        if self.linear:
            gray = cv2.pow(gray * np.float32(1.0 / top), 1.0 / 2.2) * np.float32(top)
        small_luma = luma_pyramid(gray, 5)
        if self.frames_merged == 0:
            outcome = self._start(image, small, small_luma, index)
            self._stack_colour = colour
        else:
            outcome = self._add_next(image, small, small_luma, index)
        if outcome.merged and colour is not None:
            self._greyscale = False
        return self._recorded(outcome, index, name, position_um, t0)

    def _recorded(
        self, outcome: _Outcome, index: int, name: str, position_um: float | None, t0: float
    ) -> FrameRecord:
        record = outcome.record(index, name, position_um, seconds=time.perf_counter() - t0)
        self.records.append(record)
        return record

    def _mixed_colour(self, colourless: bool) -> _Outcome:
        """A greyscale frame kept out of a colour stack, or a colour frame out of a greyscale
        one: merged, it would leave patches without colour (or with it) wherever it is the
        sharpest frame."""
        kinds = ("colour", "greyscale")
        reason = (
            f"a {kinds[colourless]} frame in a stack of {kinds[not colourless]} frames; "
            "stack greyscale and colour frames separately"
        )
        return _Outcome(False, reason, np.eye(3), np.ones(3), 0.0)

    def _check_frame(self, image: np.ndarray, name: str) -> np.ndarray:
        if not isinstance(image, np.ndarray):  # None: what cv2.imread gives for a bad file
            raise StackerError(
                f"{name}: {type(image).__name__} is not an image; give a numpy array "
                "(height x width x 3, as cv2.imread returns for a file it can read)"
            )
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise StackerError(
                f"{name}: unsupported image layout {image.shape}; give height x width "
                "(greyscale) or height x width x 3 (BGR) or x 4 (BGRA, its alpha dropped)"
            )
        if np.issubdtype(image.dtype, np.floating):
            # As a float TIFF is read (stacker.io): a microscope camera's or a flat-field
            # correction's floats were refused in memory, while the same pixels saved as a
            # file stacked.
            image = to_uint16(image, self._floats)
        elif image.dtype not in (np.uint8, np.uint16):
            # Not scaled from the type's range, as a file's are: an int64 array of 8-bit
            # values (numpy's arithmetic on uint8 frames makes them) came out black.
            raise StackerError(
                f"{name}: unsupported pixel type {image.dtype}; give uint8 or uint16 "
                "(a.astype(np.uint16) if its values fit) or floats (1.0 is white)"
            )
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if min(image.shape[:2]) < MIN_FRAME_SIDE:
            raise StackerError(
                f"{name}: {image.shape[1]}x{image.shape[0]} pixels is too small to stack; "
                f"frames need at least {MIN_FRAME_SIDE} pixels on each side"
            )
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        # Rows one after the other, as the buffers made from the first frame are: a frame in
        # Fortran order (a transpose) made them so, and every later warp into them failed.
        image = np.ascontiguousarray(image[:, :, :3] if image.shape[2] == 4 else image)
        if self._shape is not None:
            h, w = self._shape
            # Named: where the first frame is the odd one (a portrait test shot, a 16-bit
            # export), the message named only the good frame after it.
            first = f", set by its first frame {self.records[0].name}" if self.records else ""
            if image.shape[:2] != (h, w):
                turned = " (turned by a quarter: rotated, or a different EXIF orientation?)"
                raise FrameMismatchError(
                    f"{name}: {image.shape[1]}x{image.shape[0]} differs from the stack's "
                    f"{w}x{h}{first}{turned if image.shape[:2] == (w, h) else ''}; all frames "
                    "of a stack must have the same size"
                )
            if image.dtype != self._dtype:
                raise FrameMismatchError(
                    f"{name}: {image.dtype.itemsize * 8}-bit differs from the stack's "
                    f"{self._dtype.itemsize * 8}-bit frames{first}; do not mix bit depths"  # type: ignore[union-attr]
                )
        return image

    def _setup(self, image: np.ndarray) -> None:
        """Allocate every buffer once, from the first frame's size and type."""
        h, w = image.shape[:2]
        self._shape = (h, w)
        self._dtype = image.dtype
        self._state = make_merger(self.method, h, w, image.dtype)
        self._coverage = Coverage(h, w)
        # Two warped frames, so that the next is warped while the last merges; one for RAW
        # frames, whose decode takes longer than a merge, so that the merge is over by then
        # (at 45 MP the second would be 270 MB, at the peak, while LibRaw decodes).
        two = self.overlap and not self.linear
        self._buffers = [np.empty_like(image) for _ in range(2 if two else 1)]
        if _WARP_BGRA and image.dtype == np.uint8 and self.interpolation == cv2.INTER_LINEAR:
            strip = min(h, _STRIP_ROWS)
            # A strip's source band: the strip's height with room for breathing and rotation
            # (grown if a frame ever needs more).
            band = min(h, strip * 3 // 2 + 64)
            self._bgra = (np.empty((band, w, 4), np.uint8), np.empty((strip, w, 4), np.uint8))
        # Register at the first pyramid level no larger than twice align_size (so between one
        # and two times it): every doubling of resolution halves the error a chain accumulates.
        # A long thin frame stops where its short side would drop below MIN_FRAME_SIDE: the
        # sample grid leaves out a border band, and a narrower level has no samples left.
        level = 0
        while (
            max(h, w) / 2**level > 2 * self.align_size
            and min(h, w) / 2 ** (level + 1) >= MIN_FRAME_SIDE
        ):
            level += 1
        self._align_level = level
        # The first frame's merge would otherwise back all of these with memory itself, on the
        # critical path; the caller's first buffer it writes at once.
        self._prefault = prefault.populate_in_background(
            [*self._state.buffers(), *self._buffers[1:], *(self._bgra or ())]
        )

    def _start(self, image, small, small_luma, index) -> _Outcome:
        self._merge(image, np.eye(3), np.ones(3), index)
        self._sharpness_of[index] = sharp = _sharpness(small_luma)
        self._remember(small, small_luma, np.eye(3), np.ones(3), None, sharp)
        return _Outcome(True, None, np.eye(3), np.ones(3), 1.0)

    def _add_next(self, image, small, small_luma, index) -> _Outcome:
        assert self._prev_luma is not None and self._prev_color is not None
        passed_over = self._weak is not None
        reg, reason = self._register(small_luma)
        if reason is not None and self._weak is not None:
            # Not against the sharper frame before a blurred one: against the blurred one.
            self._remember(*self._weak)
            reg, reason = self._register(small_luma)
        self._weak = None
        if reason is not None:
            return _Outcome(False, reason, np.eye(3), np.ones(3), reg.score)
        gain_pair, blown, blown_before = self._pair_gain(small, reg.matrix)
        gain = self._prev_gain * gain_pair
        if not np.all((gain > 0.5) & (gain < 2.0)):
            reason = (
                f"exposure too far from the first frame's (gain {_beyond(gain)} to match it; "
                "the stack holds 0.5 to 2)"
            )
            return _Outcome(False, reason, np.eye(3), gain, reg.score)
        if gain.min() < BRIGHTER and blown > BLOWN_SHARE:
            reason = (
                f"{1 / gain.min():.2g} times as bright as the first frame and blown out over "
                f"{blown:.1%} of it where the frame before is not: its colours there cannot be "
                "matched (a flash that fired twice, a light that changed? keep both fixed)"
            )
            return _Outcome(False, reason, np.eye(3), gain, reg.score)
        if self.frames_merged == 1 and gain.max() > 1 / BRIGHTER and blown_before > BLOWN_SHARE:
            # The first frame is the odd one: every frame after it is kept out the same way,
            # and the stack is made again without it (see stacker.lonefirst).
            reason = (
                f"the first frame is {gain.max():.2g} times as bright and blown out over "
                f"{blown_before:.1%} of it where this one is not: the composite would take its "
                "exposure, clipped"
            )
            return _Outcome(False, reason, np.eye(3), gain, reg.score)
        chain = self._prev_chain @ rescale_matrix(reg.matrix, 2.0**self._align_level)
        chain = project_to_model(chain, self.align)
        self._merge(image, chain, gain, index)
        self._sharpness_of[index] = sharp = _sharpness(small_luma)
        remembered = (small, small_luma, chain, gain, reg.matrix, sharp)
        if not passed_over and sharp < BLURRED_REFERENCE * self._prev_sharp:
            self._weak = remembered  # the next frame aligns with the sharper one before it
        else:
            self._remember(*remembered)
        return _Outcome(True, None, chain, gain, reg.score)

    def _register(self, small_luma: list[np.ndarray]):
        assert self._prev_luma is not None
        h, w = small_luma[0].shape
        limit = 0.12 * float(np.hypot(w, h))
        reg = register(self._prev_luma, small_luma, model=self.align, init=self._predicted)
        if self._predicted is not None and not self._plausible(reg, w, h, limit):
            retry = register(self._prev_luma, small_luma, model=self.align)
            if retry.score > reg.score:
                reg = retry
        if self.align in ("affine", "homography") and distortion(reg.matrix, w, h) > MAX_SHEAR:
            # What the frames show does not pin shear and perspective down: a strip 16 rows
            # thick took a shear of 2.2 (the score 0.95), and the stack's common area, so
            # the composite, came out one row tall. Turn, scale and shift are what is left.
            reg = register(self._prev_luma, small_luma, model="similarity")
        if not np.all(np.isfinite(reg.matrix)):
            return reg, "alignment failed to converge"
        if reg.score < self.min_score and self.align != "none":  # "none": they do not move
            return reg, (
                f"alignment score {reg.score:.2f} below {self.min_score:.2f}: "
                "too little in common with the previous frame"
            )
        if corner_displacement(reg.matrix, w, h) > limit:
            return reg, "implausibly large motion against the previous frame"
        return reg, None

    @staticmethod
    def _plausible(reg, w: int, h: int, limit: float) -> bool:
        return reg.score > 0.5 and corner_displacement(reg.matrix, w, h) <= limit

    def _pair_gain(self, small: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Per-channel gain that brings this frame's exposure to the previous frame's, and the
        shares of what both show that are blown out (any channel at white) in this frame alone
        and in the previous frame alone.

        ``small`` is the frame at a quarter of the registration size (means of large areas
        need no more) and ``matrix`` the registration-level transform. Only what both frames
        show counts: a bumped tripod's frame, moved further than the margin, brought the
        warp's black border into its mean (a gain of 1.15 where it was 1.02, and every frame
        after it matched to that); and of that, what neither shows blown out.
        """
        assert self._prev_color is not None
        h, w = small.shape[:2]
        quarter = rescale_matrix(matrix, 0.25)
        warped = cv2.warpPerspective(small, quarter, (w, h), flags=cv2.INTER_LINEAR)
        seen = cv2.warpPerspective(
            np.full((h, w), 255, np.uint8), quarter, (w, h), flags=cv2.INTER_LINEAR
        )
        by, bx = h // 8, w // 8
        inner = np.s_[by : h - by, bx : w - bx]
        whole = (seen[inner] == 255).view(np.uint8)  # no black blended in by either warp
        assert self.white is not None
        white = 0.99 * self.white
        here = (warped[inner].max(axis=2) >= white) & (whole > 0)
        before = (self._prev_color[inner].max(axis=2) >= white) & (whole > 0)
        count = max(1, cv2.countNonZero(whole))
        # Blown pixels say nothing of the exposure: a specular sheen over 8 % of the first
        # frame brightened every other frame 1.2 times, clipping the composite's whites.
        # Grown by a pixel: at this size a sheen's edge blends into its neighbours.
        blown = cv2.dilate((here | before).view(np.uint8), np.ones((3, 3), np.uint8))
        unclipped = whole & (blown == 0)
        both = unclipped if cv2.countNonZero(unclipped) > count // 2 else whole
        both = both if cv2.countNonZero(both) else None
        ref = np.array(cv2.mean(self._prev_color[inner], mask=both)[:3])
        cur = np.array(cv2.mean(warped[inner], mask=both)[:3])
        shares = (
            np.count_nonzero(here & ~before) / count,
            np.count_nonzero(before & ~here) / count,
        )
        return np.where(cur > 1e-3, ref / np.maximum(cur, 1e-3), 1.0), *shares

    def _merge(self, image, chain, gain, index) -> None:
        """Warp the frame into the reference here, then track its focus and fold it into the
        merge state: in the background with ``overlap`` (after the previous frame's merge),
        else at once.

        The frame's luma at the focus measure's size is made here; the measure and the
        tracker's update go with the fold. That shares a 24 MP frame's work about evenly
        between the two threads (about 0.27 s each, benchmarks/README.md).
        """
        assert self._state is not None and self._buffers
        assert self._coverage is not None and self._shape is not None
        h, w = self._shape
        identity = np.allclose(chain, np.eye(3))
        # The buffer the merge in progress reads is the other one (they alternate), or, with
        # one buffer, the merge is over before the warp writes it.
        if len(self._buffers) == 1:
            self.wait()
        warped = self._buffers[self._version % len(self._buffers)]
        self._warp(image, chain, (w, h), warped, identity, full=True)
        state = self._state
        white = self.white  # this frame's: a later, brighter frame may raise it meanwhile
        gray = measure_luma(warped, float(np.mean(gain)))
        valid = self._coverage.footprint(chain, state.tracker.size)  # the size never changes
        coarse_valid = self._coverage.footprint(chain, state.coarse.size)
        self.wait()
        self._version += 1

        def fold() -> None:
            assert self._coverage is not None and white is not None
            state.white = white
            state.add(warped, _triple(gain), state.tracker.measure(gray), valid, index)
            state.coarse.update(state.coarse.measure(gray), coarse_valid, index)
            self._coverage.add(chain)
            self._warped = warped

        if self.overlap:
            self._pending = _Background(fold, name=f"stacker-merge-{index}")
        else:
            fold()

    def _warp(self, image, matrix, size, dst, identity: bool, full: bool = False) -> np.ndarray:
        """Warp ``image`` by ``matrix`` (frame -> reference pixels) into ``dst`` (or a new array);
        ``full`` for the full-size frame (``dst`` one of the warped-frame buffers).

        Border pixels are replicated:
        they lie outside the frame's footprint, which the merger never lets win, and
        replication creates no false edges for the activity measure.
        """
        if identity:
            if dst is None:
                return image.copy()
            dst[...] = image
            return dst
        if self.align == "homography":
            return cv2.warpPerspective(image, matrix, size, dst=dst, flags=self.interpolation,
                                       borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        if self._bgra is not None and full and dst is not None:
            return self._warp_bgra(image, matrix, dst)
        return cv2.warpAffine(image, matrix[:2], size, dst=dst, flags=self.interpolation,
                              borderMode=cv2.BORDER_REPLICATE)  # fmt: skip

    def _warp_bgra(self, image: np.ndarray, matrix: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """The full-size 8-bit bilinear warp, through OpenCV's four-channel fast path.

        The same as warping the three channels directly (to within one level of rounding) and
        faster before OpenCV 5, whose vectorised bilinear kernel exists for four channels only
        (:data:`_WARP_BGRA`).
        The output is made in strips, each from the band of source rows it samples (its
        corners mapped back, plus the bilinear neighbours) converted to four channels, so the
        extra memory is two strips rather than a four-channel copy of the frame (96 MB at 24 MP).
        """
        assert self._bgra is not None
        band_buf, strip = self._bgra
        inverse = np.linalg.inv(matrix)  # reference -> frame pixels
        h, w = dst.shape[:2]
        sh = image.shape[0]
        for y0 in range(0, h, strip.shape[0]):
            rows = min(strip.shape[0], h - y0)
            last = y0 + rows - 1
            corners = inverse @ np.array([[0, w - 1, 0, w - 1], [y0, y0, last, last], [1.0] * 4])
            top = int(np.clip(np.floor(corners[1].min()) - 1, 0, sh - 1))
            bottom = int(np.clip(np.ceil(corners[1].max()) + 2, top + 1, sh))
            if band_buf.shape[0] < bottom - top:
                band_buf = np.empty((bottom - top + 64, w, 4), np.uint8)
                self._bgra = (band_buf, strip)
            band = band_buf[: bottom - top]
            cv2.cvtColor(image[top:bottom], cv2.COLOR_BGR2BGRA, dst=band)
            m = inverse @ np.array([[1.0, 0, 0], [0, 1.0, y0], [0, 0, 1.0]])
            m[1, 2] -= top  # the band starts at frame row ``top``
            part = strip[:rows]
            cv2.warpAffine(band, m[:2], (w, rows), dst=part,
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
            cv2.cvtColor(part, cv2.COLOR_BGRA2BGR, dst=dst[y0 : y0 + rows])
        return dst

    def _remember(self, small, small_luma, chain, gain, pair, sharp: float) -> None:
        self._prev_sharp = sharp
        self._prev_color = small
        self._prev_luma = small_luma
        self._prev_chain = chain
        self._prev_gain = np.asarray(gain, dtype=np.float64)
        self._predicted = pair

    # ------------------------------------------------------------------ outputs
    def _require(self) -> PyramidMerger | DepthMapMerger:
        merger = self._merger
        if merger is None or self.frames_merged == 0:
            raise StackerError("no frame has been merged yet")
        return merger

    @_one_at_a_time
    def reference_record(self) -> FrameRecord:
        """The merged frame whose geometry the result takes."""
        merged = [r for r in self.records if r.merged]
        if not merged:
            raise StackerError("no frame has been merged yet")
        ref = self.reference
        if ref == "first":
            return merged[0]
        if ref == "last":
            return merged[-1]
        if ref == "middle":
            if self.expected_frames:
                wanted = self.expected_frames // 2
                return min(merged, key=lambda r: abs(r.index - wanted))
            return merged[len(merged) // 2]
        assert isinstance(ref, int)
        exact = [r for r in merged if r.index == ref]
        if not exact:
            raise StackerError(
                f"reference frame {ref + 1} was not merged; choose another --reference"
            )
        return exact[0]

    def _to_reference(self, img: np.ndarray, interpolation: int) -> np.ndarray:
        ref = self.reference_record().matrix
        if np.allclose(ref, np.eye(3)):
            return img
        h, w = img.shape[:2]
        flags, border = interpolation | cv2.WARP_INVERSE_MAP, cv2.BORDER_REPLICATE
        if np.allclose(ref[2], (0.0, 0.0, 1.0)):  # affine: OpenCV's affine warp is faster
            return cv2.warpAffine(img, ref[:2], (w, h), flags=flags, borderMode=border)
        return cv2.warpPerspective(img, ref, (w, h), flags=flags, borderMode=border)

    @_one_at_a_time
    def crop_rectangle(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the area every merged frame covers, in the reference geometry."""
        self._require()
        assert self._coverage is not None
        return self._coverage.rectangle(np.linalg.inv(self.reference_record().matrix))

    @_one_at_a_time
    def _full_composite(self) -> np.ndarray:
        merger = self._require()
        if self._full_cache is None or self._full_cache[0] != self._version:
            full = merger.composite(0)
            if self.white is not None and self.white < np.iinfo(full.dtype).max:
                # The pyramid's overshoot at bright edges, past what the frames can hold (4096
                # and more in a 12-bit stack), is clipped there, as 65535 clips a 16-bit one's.
                np.minimum(full, full.dtype.type(self.white), out=full)
            self._full_cache = (self._version, full)
        return self._full_cache[1]

    def result(self, crop: bool = True) -> np.ndarray:
        """The full-quality composite in the frames' dtype, in the reference geometry.

        The composite is merged in the first frame's geometry; another reference resamples it
        once more, bicubically: a second bilinear resampling (every frame but the first was
        resampled once already) costs a real stack a quarter of its fine detail (pcb-stack fed
        far end first, put back in the near end's geometry: 0.71 of the Laplacian variance of
        the same stack fed near end first, 0.97 bicubic).

        BGR (OpenCV's order), or one channel when the stack is :attr:`greyscale`."""
        full = self._full_composite()
        if self.greyscale:
            full = cv2.extractChannel(full, 0)
        img = self._to_reference(full, cv2.INTER_CUBIC)
        if crop:
            x, y, w, h = self.crop_rectangle()
            img = img[y : y + h, x : x + w]
        return np.ascontiguousarray(img)

    def depth_frames(self, crop: bool = True) -> np.ndarray:
        """Per-pixel focus peak in frames (float32, sub-frame: 2.5 lies half-way between frames
        2 and 3), smoothed and filled (:mod:`stacker.depth`), in the geometry of :meth:`result`.
        """
        return self.upsample_depth(self.depth_frames_small(), crop)

    @_one_at_a_time
    def depth_frames_small(self) -> np.ndarray:
        """:meth:`depth_frames` at the size it is computed at, in the merge geometry: what the
        full-size maps are upsampled from (in one bilinear warp each).

        The map is filled at :func:`depth_map_size` (depth varies slowly and the fill's cost
        grows with the size), then brought to the smallest of the composite's pyramid levels at
        least four times that size (full size for frames under 3072 px long; 3000x2000 for 24 MP
        frames) with its depth steps on the composite's edges (:func:`stacker.depth.snap_edges`).
        """
        self._require()  # an empty stack: "no frame has been merged yet", not an AssertionError
        assert self._shape is not None
        if self._snapped_cache is not None and self._snapped_cache[0] == self._version:
            return self._snapped_cache[1]
        filled = self._depth_small(depth_map_size(max(self._shape)))[0]
        detail = self._snap_detail(filled.shape)
        snapped = depth.snap_edges(filled, self._depth_guide(filled.shape), detail)
        self._snapped_cache = (self._version, snapped)
        return snapped

    def _snap_detail(self, small: tuple[int, ...]) -> np.ndarray:
        """The composite a depth map of ``small`` size has its steps snapped to: the smallest
        of its pyramid levels at least four times that size."""
        merger = self._require()
        assert self._shape is not None
        stop = 0
        while max(self._shape) / 2 ** (stop + 1) >= 4 * max(small):
            stop += 1
        return self._full_composite() if stop == 0 else merger.composite(stop)

    def upsample_depth(
        self, small: np.ndarray, crop: bool = True, *, dst: np.ndarray | None = None
    ) -> np.ndarray:
        """A map at :meth:`depth_frames_small`'s size (any dtype and channels) brought to the
        geometry of :meth:`result` in one bilinear warp: scaling up, the reference's transform
        and the crop together (into ``dst`` when given, of the result's size).

        Where the reference is the merge geometry itself (the first frame, by default), the
        warp is a scaling and an offset: done as a resize and a slice, the same pixels at a
        fifth of the time (the end of a 24 MP stack spends it twice)."""
        self._require()
        assert self._shape is not None
        h, w = self._shape
        sh, sw = small.shape[:2]
        ref = self.reference_record().matrix
        if np.allclose(ref, np.eye(3)):
            full = small if (sh, sw) == (h, w) else cv2.resize(small, (w, h))  # bilinear
            x, y, cw, ch = self.crop_rectangle() if crop else (0, 0, w, h)
            if dst is None:
                dst = np.empty((ch, cw, *small.shape[2:]), small.dtype)  # never ``small`` itself
            np.copyto(dst, full[y : y + ch, x : x + cw])
            return dst
        # full-size pixel centre x maps to (x + 0.5) * sw / w - 0.5 in the small map
        up = np.array([[sw / w, 0.0, 0.5 * sw / w - 0.5], [0.0, sh / h, 0.5 * sh / h - 0.5],
                       [0.0, 0.0, 1.0]])  # fmt: skip
        x = y = 0
        if crop:
            x, y, w, h = self.crop_rectangle()
        shift = np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])
        m = up @ ref @ shift  # output pixel -> small-map pixel
        flags, border = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, cv2.BORDER_REPLICATE
        if np.allclose(m[2], (0.0, 0.0, 1.0)):
            return cv2.warpAffine(small, m[:2], (w, h), dst=dst, flags=flags, borderMode=border)
        return cv2.warpPerspective(small, m, (w, h), dst=dst, flags=flags, borderMode=border)

    def depth_index(self, crop: bool = True) -> np.ndarray:
        """Per-pixel index of the frame in best focus (uint16): :meth:`depth_frames`, rounded."""
        frames = self.depth_frames(crop)
        return np.rint(np.maximum(frames, 0)).astype(np.uint16)

    def depth_um(self, crop: bool = True) -> np.ndarray | None:
        """Per-pixel focus position in micrometres (float32, finer than the step), or None
        without positions. Converted at the computed size, then upsampled (the conversion is
        piecewise linear, so this matches converting the full-size map)."""
        um = self.frames_to_um(self.depth_frames_small())
        return None if um is None else self.upsample_depth(um, crop)

    def frames_to_um(self, frames: np.ndarray) -> np.ndarray | None:
        """A depth map in frames as focus positions in µm (interpolated between the merged
        frames' positions), or None when a merged frame has no position."""
        positions = self._merged_positions()
        if positions is None:
            return None
        return np.interp(frames, *positions).astype(np.float32)

    def _merged_positions(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(frame indices, focus positions in µm) of the merged frames, None if any is unknown."""
        merged = [r for r in self.records if r.merged]
        if not merged or any(r.position_um is None for r in merged):
            return None
        indices = np.array([r.index for r in merged], np.float64)
        return indices, np.array([float(r.position_um) for r in merged], np.float64)  # type: ignore[arg-type]

    def _depth_small(
        self, longest: int | None = None, *, live: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(depth in frames, confidence) with the longest side at most ``longest`` (default:
        the tracker's size); ``live`` (the preview after every frame) takes a cheaper path
        (push-pull fill, no halo removal, no coarse second opinion: at 24 MP that would make
        each preview 25 ms instead of 6). Cached per merge state."""
        assert self._merger is not None
        key = (self._version, longest, live)
        if self._depth_cache is not None and self._depth_cache[0] == key:
            return self._depth_cache[1]
        tracker = self._merger.tracker
        state: tuple[np.ndarray, ...] = (tracker.best, tracker.before, tracker.after, tracker.index)
        tw, th = tracker.size
        if live and longest is not None and max(tw, th) > longest:
            s = longest / max(tw, th)  # everything at preview size
            tw, th = max(1, round(tw * s)), max(1, round(th * s))
            state = tuple(cv2.resize(a, (tw, th), interpolation=cv2.INTER_NEAREST) for a in state)
        best, before, after, index = state
        merged = np.array([r.index for r in self.records if r.merged], np.float64)
        frames = self._peak_frames(best, before, after, index, merged)
        weight = depth.confidence(best)
        if not live:
            self._second_opinion(frames, weight, merged)
        if longest is not None and max(tw, th) > longest:
            s = longest / max(tw, th)
            tw, th = max(1, round(tw * s)), max(1, round(th * s))
            wd = cv2.resize(frames * weight, (tw, th), interpolation=cv2.INTER_AREA)
            weight = cv2.resize(weight, (tw, th), interpolation=cv2.INTER_AREA)
            frames = cv2.resize(frames, (tw, th), interpolation=cv2.INTER_AREA)
            np.divide(wd, weight, out=frames, where=weight > 1e-6)
        if live:
            filled = depth.push_pull(frames, weight)
        else:
            # Halos reach about eight sigmas of the focus window, at this size.
            halo_px = 8 * WINDOW_PX * tw / self._shape[1]  # type: ignore[index]
            peaks: _Peaks = (tracker.best, tracker.index, tracker.second, tracker.second_index)
            if peaks[0].shape != (th, tw):
                peaks = tuple(cv2.resize(a, (tw, th), interpolation=cv2.INTER_NEAREST)
                              for a in peaks)  # type: ignore[assignment]  # fmt: skip
            # The rules below take a lower frame for a nearer surface (occlusion: an outline
            # belongs to the nearer side): a stack shot far to near is seen mirrored.
            ends = (int(merged[0]), int(merged[-1]))
            across = self._across_blurred(merged)
            if self.far_first:
                frames, peaks = _mirrored(frames, peaks, ends)
                across = [(sum(ends) - b, sum(ends) - a) for a, b in across]
            frames = depth.resolve_occlusions(frames, peaks, max(1, round(halo_px)), across=across)
            guide = self._depth_guide((th, tw))
            filled = depth.refine(frames, weight, guide, halo_px=halo_px)
            filled = vote_flat_regions(filled, guide, peaks, halo_px=halo_px, ends=ends)
            if self.far_first:
                filled = np.float32(sum(ends)) - filled
        np.clip(filled, merged[0], merged[-1], out=filled)
        self._depth_cache = (key, (filled, weight))
        return filled, weight

    def _across_blurred(self, merged: np.ndarray) -> list[tuple[int, int]]:
        """The merged frames on either side of a merged frame far blurrier than both (a shake,
        a frame shot while the rail still rang; see :data:`BLURRED_DIP`)."""
        order = [int(i) for i in merged]
        sharp = [self._sharpness_of.get(i, 0.0) for i in order]
        return [
            (order[k - 1], order[k + 1])
            for k in range(1, len(order) - 1)
            if sharp[k] < BLURRED_DIP * min(sharp[k - 1], sharp[k + 1])
        ]

    def _peak_frames(self, best, before, after, index, merged: np.ndarray) -> np.ndarray:
        """A tracker's focus peaks in frames (sub-frame), from its state and the indices of
        the merged frames."""
        floor = _FOCUS_FLOOR * (self.white / 255.0) ** 2  # type: ignore[operator]
        frames = depth.subframe_peak(best, before, after, floor)
        if len(merged) == merged[-1] + 1:  # every frame merged: ranks are frame indices
            frames += index
            return frames
        # neighbours are neighbours in merge order: rejected frames are skipped
        rank = np.zeros(int(merged.max()) + 1, np.float32)
        rank[merged.astype(np.int64)] = np.arange(len(merged), dtype=np.float32)
        frames = np.interp(rank[index] + frames, np.arange(len(merged)), merged)
        return frames.astype(np.float32)

    def _second_opinion(self, frames: np.ndarray, weight: np.ndarray, merged: np.ndarray) -> None:
        """Where the fine measure is unsure, ``frames`` and ``weight`` (its depth and
        confidence) take the coarse measure's (:func:`stacker.focus.coarse_level`), its
        confidence counted at ``_COARSE_TRUST``: under the fill's threshold, so a coarse depth
        is never kept as confident, and only decides where no confident pixel reaches (on the
        held-out 24 MP stacks of ``benchmarks/bench_depth.py`` at 16 frames the share within a
        frame moves by 0.01 point; at 4 frames, the steps wide, it rises 4 to 9 points).

        The coarse measure's reach is wide: inside a flat shape its best frame is one that
        spreads the shape's outline there (a halo), and nothing the composite shows. So it is
        trusted where the composite's own coarse measure is as high as its best, less (by the
        square of the ratio) where it falls short."""
        assert self._merger is not None
        coarse = self._merger.coarse
        state = (coarse.best, coarse.before, coarse.after, coarse.index)
        other = self._peak_frames(*state, merged)
        composite = self._depth_guide(coarse.best.shape)  # area-averaged, as its frames were
        own = focus_measure(luma(composite), window=WINDOW_PX / 2**coarse.level)
        shown = np.divide(own, np.maximum(coarse.best, np.float32(1e-6)))
        np.clip(shown, 0.0, 1.0, out=shown)
        sure = depth.confidence(coarse.best) * shown * shown * np.float32(_COARSE_TRUST)
        size = frames.shape[::-1]
        other, sure = cv2.resize(other, size), cv2.resize(sure, size)  # bilinear
        take = sure > weight
        np.copyto(frames, other, where=take)
        np.copyto(weight, sure, where=take)

    def _depth_guide(self, shape: tuple[int, int]) -> np.ndarray:
        """The composite at the focus tracker's level, resized to ``shape`` (h, w) if need be:
        the colours that guide the depth map's fill."""
        merger = self._require()
        guide = merger.composite(merger.tracker.level)
        if guide.shape[:2] != shape:
            guide = cv2.resize(guide, shape[::-1], interpolation=cv2.INTER_AREA)
        return guide

    def _preview_fit(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        s = min(1.0, self.preview_size / max(h, w))
        if s < 1.0:
            img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                             interpolation=cv2.INTER_AREA)  # fmt: skip
        return self._shown(img)

    def _shown(self, img: np.ndarray) -> np.ndarray:
        """``img`` (a part of the composite or a frame) as the page shows it: 8-bit, rendered
        when the stack is linear and :attr:`display` says how."""
        if self.linear and self.display is not None:
            img = self.display(img)
        return to_8bit(img, self.white)

    @_one_at_a_time
    def preview(self) -> np.ndarray | None:
        """The current composite, 8-bit, longest side at most ``preview_size`` (cheap)."""
        if self._merger is None or self.frames_merged == 0:
            return None
        assert self._shape is not None
        stop = 0
        while max(self._shape) / 2 ** (stop + 1) >= self.preview_size:
            stop += 1
        return self._preview_fit(self._merger.composite(stop))

    @_one_at_a_time
    def preview_depth(self) -> np.ndarray | None:
        """The depth map, colourised, at preview size, with its colour legend below it."""
        if self._merger is None or self.frames_merged == 0:
            return None
        assert self._shape is not None
        h, w = self._shape
        s = min(1.0, self.preview_size / max(h, w))
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = self._depth_small(_PREVIEW_DEPTH_SIZE, live=True)[0]
        return self.colorize_depth(cv2.resize(small, size, interpolation=cv2.INTER_LINEAR))

    def colorize_depth(self, frames: np.ndarray) -> np.ndarray:
        """A depth map in frames as the colour preview (near blue, far red), legend included:
        colours to µm when every merged frame has a position, else to frame numbers."""
        count, positions, numbers = self._legend()
        coloured = depth.colorize(self._near_first(frames, count), count)
        return depth.add_legend(coloured, count, positions, numbers)

    def depth_preview(self, crop: bool = True) -> np.ndarray:
        """:meth:`colorize_depth` of :meth:`depth_frames`, coloured at the computed size and
        then upsampled straight into the image above its legend (colouring the full-size map
        costs more and shows nothing more)."""
        count, positions, numbers = self._legend()
        small = depth.colorize(self._near_first(self.depth_frames_small(), count), count)
        if crop:
            w, h = self.crop_rectangle()[2:]
        else:
            h, w = self._shape  # type: ignore[misc]
        strip = depth.legend_strip(w, count, positions, numbers, h=h)
        out = np.empty((h + strip.shape[0], w, 3), np.uint8)
        self.upsample_depth(small, crop, dst=out[:h])
        out[h:] = strip
        return out

    def _legend(self) -> tuple[int, list[float] | None, list[int]]:
        """How many frames the colours run over, near end first (up to the last merged frame:
        a last frame kept out left the far end of the bar labelled with a depth no pixel
        had), the focus position of each (None when any is unknown) and its number.

        A stack shot far to near is turned round, so that near is blue in every preview."""
        merged = [r.index for r in self.records if r.merged]
        count = max(merged) + 1 if merged else len(self.records)
        known = self._merged_positions()
        positions = None if known is None else np.interp(np.arange(count), *known).tolist()
        numbers = [self.numbers.get(i, i + 1) for i in range(count)]
        if self.far_first:
            numbers.reverse()
            if positions is not None:
                positions.reverse()
        return count, positions, numbers

    def _near_first(self, frames: np.ndarray, count: int) -> np.ndarray:
        """``frames`` counted from the near end (see :meth:`_legend`)."""
        return np.float32(count - 1) - frames if self.far_first else frames

    @_one_at_a_time
    def last_frame_preview(self) -> np.ndarray | None:
        """The most recent merged frame, aligned to the reference, at preview size."""
        self.wait()
        if self._warped is None or self.frames_merged == 0:
            return None
        return self._preview_fit(self._warped)

    @_one_at_a_time
    def crop(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """100 % crops of the composite and of the last merged frame at the same place.

        Coordinates are full-resolution pixels of the merge geometry (the preview's geometry
        scaled up), clamped to the frame.
        """
        full = self._full_composite()
        assert self._warped is not None
        fh, fw = full.shape[:2]
        w, h = max(1, min(w, fw)), max(1, min(h, fh))
        x, y = min(max(0, x), fw - w), min(max(0, y), fh - h)
        a = np.ascontiguousarray(full[y : y + h, x : x + w])
        b = np.ascontiguousarray(self._warped[y : y + h, x : x + w])
        return self._shown(a), self._shown(b)


BRIGHTER = 0.8
BLOWN_SHARE = 0.005
"""A frame brighter than the first (a gain below :data:`BRIGHTER` to match it) whose pixels
are blown out over more than :data:`BLOWN_SHARE` of what it shares with the frame before,
where that frame's are not, is kept out. Its clipped channels stay white while the others are
scaled down: a hue where there was none, whose edges the merge takes for detail (a frame at
twice the exposure painted 19 % of a composite with false colour, 41 dB down to 21).

The other way round, a first frame so much brighter than the second, and blown out where the
second is not, is the odd one: every frame after it is kept out the same way, and the stack is
made again without it. Else the composite took its exposure: the other frames brightened 1.6
times to match it, 13 % of the composite clipped."""

MAX_SHEAR = 0.1
"""An ``affine`` or ``homography`` registration departing further than this from a similarity
(:func:`~stacker.align.distortion`) is made again as a similarity: the frames do not pin the
extra terms down (a strip a few rows thick, texture along one line). Neighbouring frames of a
focus stack differ by breathing and shake: in pcb-stack at most 0.0016 (homography), in
synthetic stacks breathing 8 % and turning 0.5 degrees 0.0002."""

BLURRED_DIP = 0.55
"""A merged frame whose sharpness falls below this share of both its neighbours' is a blurred
frame (a shake), not a change of depth: there each pixel's focus curve dips, and the frames on
either side of it look like two humps of the curve, which the depth map's occlusion rule took
for a surface across an edge (a fifth of the pixels in focus just before the blurred frame
were put two frames deeper). In pcb-stack, the board, shapes and glow scenes no frame falls
below 0.94 of the less sharp of its neighbours; a 61 px motion blur on one
pcb-stack frame gives 0.51 of the frame before it."""

BLURRED_REFERENCE = 0.4
"""A merged frame whose sharpness (:func:`_sharpness`) falls below this share of the frame
before it is not the next frame's alignment reference; the one before stays, once.

Each frame is aligned with the last merged one, so the error of aligning one badly blurred
frame (a shake, a frame shot while the rail still rang) was carried into every frame after it:
8 synthetic frames with the fifth blurred by a Gaussian of sigma 25 px scored 24.3 dB against
the truth (33.9 dB without that frame), the later frames about 6 px off. On the benchmark
stacks (pcb-stack, bench_depth's and bench_glow's families) neighbouring frames never fall
below 0.65 of each other; blurs of sigma 3 px fall to 0.49 and do no harm, of 10 px to 0.15.
A frame that aligns with the sharper one only badly is aligned with the blurred one instead,
and after two blurred frames in a row the stack follows them (defocus towards an end)."""


VISIBLE_COLOUR = 0.02
"""Mean colour (``|B - G| + |R - G|`` as a fraction of full scale) below which a frame mixes
with greyscale ones unseen: a grey subject shot in colour, whose most defocused frames a
camera's JPEG may store without any."""
STRONG_COLOUR = 0.15
"""Colour no JPEG's chroma noise reaches: a part this coloured is a coloured part."""
STRONG_SHARE = 0.005
"""Share of the frame that, as coloured as :data:`STRONG_COLOUR`, shows: the red eye of a grey
fly, which a greyscale frame would leave grey wherever it is the sharpest."""


def _colour(small: np.ndarray, top: float) -> bool | None:
    """``None`` for a greyscale frame (decoded to three equal channels, which stay equal
    through the same resampling of each; not a frame of one flat level, a black frame, which
    has nothing to tell); else whether it is clearly coloured: :data:`VISIBLE_COLOUR` on
    average, or a part of :data:`STRONG_SHARE` of it :data:`STRONG_COLOUR`. ``small``: the
    frame's smallest copy, a few thousand pixels, which the gains are measured on too."""
    b, g, r = cv2.split(small)
    if np.array_equal(b, g) and np.array_equal(b, r) and b.min() != b.max():
        return None
    chroma = cv2.add(cv2.absdiff(b, g), cv2.absdiff(r, g))
    if cv2.mean(chroma)[0] >= VISIBLE_COLOUR * top:
        return True
    strong = np.count_nonzero(chroma >= STRONG_COLOUR * top)
    return bool(strong >= STRONG_SHARE * chroma.size)


def _mixed(colour: bool | None, stack: bool | None) -> bool:
    """Whether a frame of ``colour`` would show as a patch in a stack whose first frame had
    ``stack``: a greyscale frame among clearly coloured ones, or the other way round."""
    if (colour is None) == (stack is None):
        return False
    return bool(stack if colour is None else colour)


def _sharpness(small_luma: list[np.ndarray]) -> float:
    """Mean absolute Laplacian of a frame's registration luma one octave down (above most of
    the noise): how sharp the frame is, to compare with its neighbours. About a millisecond."""
    level = small_luma[min(1, len(small_luma) - 1)]  # a frame too small has one level
    return float(np.mean(np.abs(cv2.Laplacian(level, cv2.CV_32F))))


def depth_map_size(longest: int) -> int:
    """The longest side, in map pixels, at which the written depth map of frames ``longest``
    pixels long is filled: a quarter of the frame's, at most ``_DEPTH_SIZE``, but on frames
    over 3072 px at least one map pixel per ``_DEPTH_FINEST`` frame pixels (up to
    ``_DEPTH_SIZE_CAP``: 750 at 24 MP, 768 at 45 MP).

    The map's rules (:mod:`stacker.depth`, :mod:`stacker.depth_regions`) measure in the reach
    of a focus window's halo, 48 frame pixels: 12 map pixels at 1500 px wide, 6 at 3000, and
    3 at 6000, where a part's outline, its surround and the lettering across it no longer fit
    in the few map pixels left. Filled at 750 px, a 24 MP map keeps the 6 of 3000x2000. On
    the held-out 24 MP stacks of ``benchmarks/bench_depth.py`` (seeds 1-3, board and shapes)
    every stack gains: 6 of 6 within a frame on 97 % of the pixels instead of 5 (board 1
    95.5 -> 98.3 %, mean 98.0 -> 98.7 %), and so do the four of seeds 4 and 5 (0.1 to 0.7
    point), for about half a second more at the end of the stack (the map takes 1.1-1.6 s).
    Frames up to 3072 px (the 1500x1000 stacks the rules were chosen on, 3000x2000, the
    2048 px pcb stack) are filled as before."""
    quarter = -(-longest // 4)
    return min(quarter, max(_DEPTH_SIZE, min(-(-longest // _DEPTH_FINEST), _DEPTH_SIZE_CAP)))


class _Background:
    """``fn`` running on its own (non-daemon) thread; :meth:`join` re-raises what it raised."""

    def __init__(self, fn: Callable[[], None], name: str) -> None:
        self._fn: Callable[[], None] | None = fn
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()

    def _run(self) -> None:
        try:
            assert self._fn is not None
            self._fn()
        except BaseException as exc:  # raised again in the caller by join()
            self._error = exc
        finally:
            # ``fn`` holds its stacker, which holds this: a stacker let go with a merge not yet
            # waited for (its caller's loop raised) kept its merge state and frame buffers
            # until the cycle collector happened to run.
            self._fn = None

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


_Peaks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""The focus tracker's best measure, its frame, the runner-up's measure and its frame."""


def _mirrored(
    frames: np.ndarray, peaks: _Peaks, ends: tuple[int, int]
) -> tuple[np.ndarray, _Peaks]:
    """A depth map in frames and the tracker's (best, index, runner-up, index) with the frame
    order reversed between ``ends``: frame ``ends[0] + ends[1] - f`` for ``f``."""
    span = sum(ends)
    best, index, second, second_index = peaks

    def flip(a: np.ndarray) -> np.ndarray:
        return (span - a.astype(np.int32)).astype(np.uint16)

    return np.float32(span) - frames, (best, flip(index), second, flip(second_index))


def _beyond(gain: np.ndarray) -> list[float]:
    """``gain`` rounded for a message that says it is outside 0.5 to 2: to hundredths, or
    thousandths where hundredths would put it on the bound (2.0009 read "gain 2.0 ... holds
    0.5 to 2")."""
    rounded = gain.round(2)
    on_bound = np.any((rounded == 0.5) | (rounded == 2.0))
    return [float(g) for g in (gain.round(4) if on_bound else rounded)]


def _triple(values) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def _rows3(matrix) -> tuple[tuple[float, float, float], ...]:
    return tuple(_triple(row) for row in np.asarray(matrix))
