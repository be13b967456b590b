"""Pairwise registration of neighbouring focus-stack frames.

Algorithm: Lucas-Kanade with the efficient second-order minimisation update (ESM: Benhimane &
Malis, "Real-time image-based tracking of planes using efficient second-order minimization", IROS
2004; see also Baker & Matthews, "Lucas-Kanade 20 Years On", IJCV 2004) over a Gaussian pyramid of
downscaled luma, with a linear photometric model (gain and bias refitted every iteration, so
exposure drift does not bias the geometry) and a phase-correlation seed for the translation at the
coarsest level. ESM uses the mean of the template's and the warped image's gradients: neighbouring
focus-stack frames always differ in sharpness, and a one-sided (inverse-compositional) gradient
then biases the estimate — by about 1 % of each frame's breathing step, which chaining accumulates.
Normal equations are summed over a strided grid of samples; each iteration is one warp of the
moving image and a few whole-array dot products.

Neighbouring frames look alike even in deep stacks, where the first and last frames are badly
blurred: that is why frames are registered pairwise and the transforms chained (see
:mod:`stacker.stack`). The same code serves every motion model; they differ only in the Jacobian
columns. Coordinates inside the solver are normalised to [-1, 1] about the image centre so that
the normal equations stay well conditioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

Model = Literal["translation", "similarity", "affine", "homography", "none"]
MODELS: tuple[str, ...] = ("similarity", "translation", "affine", "homography", "none")


@dataclass(frozen=True)
class Registration:
    """A pairwise registration result.

    ``matrix`` maps pixel coordinates of the moving frame to pixel coordinates of the template
    frame (3x3, at the resolution the caller gave). ``score`` is the normalised correlation of
    the two after warping (1 = identical up to gain and bias); ``converged`` is False when the
    solver ran out of iterations or diverged.
    """

    matrix: np.ndarray
    score: float
    converged: bool


def _jacobian_columns(
    model: str, x: np.ndarray, y: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """d(x', y')/dp at the identity for each parameter p of ``model``, as (dx, dy) pairs."""
    one = np.ones_like(x)
    zero = np.zeros_like(x)
    if model == "translation":
        return [(one, zero), (zero, one)]
    if model == "similarity":  # x' = (1+a)x - b y + tx ; y' = b x + (1+a) y + ty
        return [(x, y), (-y, x), (one, zero), (zero, one)]
    if model == "affine":
        return [(x, zero), (y, zero), (one, zero), (zero, x), (zero, y), (zero, one)]
    if model == "homography":
        return [
            (x, zero), (y, zero), (one, zero),
            (zero, x), (zero, y), (zero, one),
            (-x * x, -x * y), (-x * y, -y * y),
        ]  # fmt: skip
    raise ValueError(f"unknown motion model {model!r}")


def _delta_matrix(model: str, dp: np.ndarray) -> np.ndarray:
    """The 3x3 warp W(dp) for a parameter increment of ``model``."""
    m = np.eye(3)
    if model == "translation":
        m[0, 2], m[1, 2] = dp
    elif model == "similarity":
        a, b, tx, ty = dp
        m[:2] = [[1 + a, -b, tx], [b, 1 + a, ty]]
    elif model == "affine":
        m[:2] = [[1 + dp[0], dp[1], dp[2]], [dp[3], 1 + dp[4], dp[5]]]
    else:
        m[:] = [[1 + dp[0], dp[1], dp[2]], [dp[3], 1 + dp[4], dp[5]], [dp[6], dp[7], 1]]
    return m


def _normaliser(width: int, height: int) -> np.ndarray:
    """Pixel -> normalised coordinates (centre at 0, half-diagonal 1)."""
    half = 0.5 * float(np.hypot(width, height))
    return np.array(
        [[1 / half, 0, -(width - 1) / 2 / half], [0, 1 / half, -(height - 1) / 2 / half], [0, 0, 1]]
    )


def rescale_matrix(matrix: np.ndarray, factor: float) -> np.ndarray:
    """Express a pixel-coordinate transform at an image scale ``factor`` times larger.

    Uses the convention of cv2.pyrDown/pyrUp, whose pixel i sits on pixel 2i of the level
    below: x_big = factor * x.
    """
    s = np.diag([factor, factor, 1.0])
    return s @ matrix @ np.linalg.inv(s)


def project_to_model(matrix: np.ndarray, model: str) -> np.ndarray:
    """The nearest transform of ``model`` to ``matrix`` (used for predictions and chaining)."""
    m = matrix / matrix[2, 2]
    out = np.eye(3)
    if model == "none":
        return out
    if model == "translation":
        out[:2, 2] = m[:2, 2]
    elif model == "similarity":
        a = 0.5 * (m[0, 0] + m[1, 1])
        b = 0.5 * (m[1, 0] - m[0, 1])
        out[:2] = [[a, -b, m[0, 2]], [b, a, m[1, 2]]]
    elif model == "affine":
        out[:2] = m[:2]
    else:
        out = m
    return out


def luma_pyramid(luma: np.ndarray, levels: int) -> list[np.ndarray]:
    """Float32 Gaussian pyramid, finest first, lightly smoothed to stabilise gradients."""
    img = cv2.GaussianBlur(luma.astype(np.float32, copy=False), (0, 0), 0.8)
    pyr = [img]
    for _ in range(levels - 1):
        if min(pyr[-1].shape[:2]) < 48:
            break
        pyr.append(cv2.pyrDown(pyr[-1]))
    return pyr


MIN_SAMPLES_KEPT = 64
"""Fewer samples than this inside the moving frame (see :meth:`_LevelTemplate.inside`): the
pair shares too little to register."""
BACKTRACK_DROP = 1e-3
"""A step after which the score is lower than before it by more than this overshot: it is
taken back and halved (see :func:`register`)."""
SIGNAL_KEPT = 0.8
"""A coarser level whose gradients are weaker than this share of the finer one's carries no
signal of its own (see :func:`levels_with_signal`)."""


def levels_with_signal(pyramid: list[np.ndarray]) -> int:
    """How many levels of a :func:`luma_pyramid`, finest first, registration may use.

    Halving a scene's size leaves its structure and strengthens its gradients per pixel (a
    natural scene's, a PCB's, a defocused frame's: 1.1 to 1.8 times the finer level's; the
    first halving is not judged, as it takes the sensor noise away), but averages
    away what is finer than the new pixels: noise, and a periodic texture finer than them (a
    PCB's pad array, a fabric, a grid), whose coarse levels are flat but for aliasing. The
    solver started on such a level locked on to a wrong period or wandered (frames merged 60
    to 200 px off, a grid stack refused); so the pyramid stops before the first level whose
    gradients fall below :data:`SIGNAL_KEPT` of the level above it.
    """
    rms = [_gradient_rms(level) for level in pyramid[1:]]
    for k in range(1, len(rms)):
        if rms[k] < SIGNAL_KEPT * rms[k - 1]:
            return k + 1
    return len(pyramid)


def _gradient_rms(img: np.ndarray) -> float:
    """Root mean square of the horizontal and vertical differences, on every other row and
    column (enough for the mean of a level)."""
    dx = np.diff(img[::2], axis=1)
    dy = np.diff(img[:, ::2], axis=0)
    return float(np.sqrt((np.mean(dx * dx) + np.mean(dy * dy)) / 2)) if dx.size and dy.size else 0.0


@lru_cache(maxsize=32)
def _sample_grid(
    h: int, w: int, model: str, margin: float, max_samples: int
) -> tuple[slice, slice, np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns, normaliser and Jacobian (parameters x samples) of a level's sample grid.

    The same for every frame of a stack, so it is computed once per level size. The Jacobian is
    float32, like the images: in float64 it made every step's per-sample products in double
    precision, a third of a step's time (the normal equations' sums are solved in float64).
    """
    norm = _normaliser(w, h)
    # Ignore a border band: after warping, pixels there may come from outside the frame.
    bx, by = int(margin * w) + 2, int(margin * h) + 2
    stride = max(1, int(np.ceil(np.sqrt((h - 2 * by) * (w - 2 * bx) / max_samples))))
    rows, cols = slice(by, h - by, stride), slice(bx, w - bx, stride)
    ys, xs = np.mgrid[rows, cols].astype(np.float32)
    nx = (xs * norm[0, 0] + norm[0, 2]).ravel()
    ny = (ys * norm[1, 1] + norm[1, 2]).ravel()
    jac = _jacobian_columns(model, nx.astype(np.float32), ny.astype(np.float32))
    jac_x = np.stack([dx for dx, _ in jac])
    jac_y = np.stack([dy for _, dy in jac])
    jac_x.flags.writeable = jac_y.flags.writeable = False  # shared between frames
    return rows, cols, norm, jac_x, jac_y


class _LevelTemplate:
    """Per-level state for the fixed template: sample grid, coordinates, gradients.

    The normal equations are summed over a regular grid of at most ``max_samples`` pixels
    (every pixel at coarse levels, a strided subset at the finest): sub-pixel accuracy comes
    from the gradients, not from the sample count, and this keeps each iteration cheap.
    """

    def __init__(
        self, template: np.ndarray, model: str, margin: float = 0.06, max_samples: int = 300_000
    ) -> None:
        h, w = template.shape
        self.shape = (h, w)
        self.model = model
        self.rows, self.cols, self.norm, self.jac_x, self.jac_y = _sample_grid(
            h, w, model, margin, max_samples
        )
        self.gx, self.gy = self._gradients(template)
        t = template[self.rows, self.cols].ravel()
        self.t_c = t - t.mean()
        self.t_norm = float(np.sqrt(np.dot(self.t_c, self.t_c))) or 1.0

    def _gradients(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Central differences at the grid samples, in normalised coordinates."""
        r, c = self.rows, self.cols
        right = img[r, slice(c.start + 1, c.stop + 1, c.step)]
        left = img[r, slice(c.start - 1, c.stop - 1, c.step)]
        down = img[slice(r.start + 1, r.stop + 1, r.step), c]
        up = img[slice(r.start - 1, r.stop - 1, r.step), c]
        gx = (right - left).ravel() * np.float32(0.5 / self.norm[0, 0])
        gy = (down - up).ravel() * np.float32(0.5 / self.norm[1, 1])
        return gx, gy

    def inside(self, warp: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
        """Which samples ``warp`` (template -> moving pixels) takes from inside the moving
        frame of ``shape``; None when all of them are (the usual case: the grid leaves out a
        border band).

        Beyond the band, a frame that moved more than 6 % of its size from the one before
        was sampled in the border's reflection: mirrored content entered the normal
        equations, and the pair was registered 3 to 20 times less precisely (1.4 px instead
        of 0.06 at 60 px of motion in 640x480), merged without a word."""
        h, w = shape[:2]
        ys = np.arange(self.rows.start, self.rows.stop, self.rows.step, dtype=np.float64)
        xs = np.arange(self.cols.start, self.cols.stop, self.cols.step, dtype=np.float64)

        def mapped(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            z = warp[2, 0] * x + warp[2, 1] * y + warp[2, 2]
            return (
                (warp[0, 0] * x + warp[0, 1] * y + warp[0, 2]) / z,
                (warp[1, 0] * x + warp[1, 1] * y + warp[1, 2]) / z,
            )

        def within(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return (x >= 0.0) & (x <= w - 1.0) & (y >= 0.0) & (y <= h - 1.0)

        cx, cy = mapped(xs[[0, -1, 0, -1]], ys[[0, 0, -1, -1]])
        if within(cx, cy).all():
            return None
        gx, gy = np.meshgrid(xs, ys)
        return within(*mapped(gx.ravel(), gy.ravel()))

    def step(self, warped: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """One ESM step: parameter increment (forward compositional) and the current score,
        over the samples ``keep`` marks (all when None; see :meth:`inside`)."""
        i = warped[self.rows, self.cols].ravel()
        t_c, t_norm, jac_x, jac_y = self.t_c, self.t_norm, self.jac_x, self.jac_y
        gxt, gyt = self.gx, self.gy
        gxi, gyi = self._gradients(warped)
        if keep is not None:
            if np.count_nonzero(keep) < MIN_SAMPLES_KEPT:
                return np.zeros(self.jac_x.shape[0]), -1.0
            i, gxi, gyi, gxt, gyt = i[keep], gxi[keep], gyi[keep], gxt[keep], gyt[keep]
            t_c = t_c[keep] - t_c[keep].mean()
            t_norm = float(np.sqrt(np.dot(t_c, t_c))) or 1.0
            jac_x, jac_y = jac_x[:, keep], jac_y[:, keep]
        i_c = i - i.mean()
        cross = float(np.dot(i_c, t_c))
        score = cross / (t_norm * (float(np.sqrt(np.dot(i_c, i_c))) or 1.0))
        gain = cross / (t_norm**2)
        if abs(gain) < 1e-6:
            return np.zeros(self.jac_x.shape[0]), score
        inv_gain = np.float32(1.0 / gain)
        gx = np.float32(0.5) * (gxt + gxi * inv_gain)
        gy = np.float32(0.5) * (gyt + gyi * inv_gain)
        g = jac_x * gx + jac_y * gy
        err = t_c - i_c * inv_gain
        hess = (g @ g.T).astype(np.float64)
        rhs = (g @ err).astype(np.float64)
        try:
            return np.linalg.solve(hess, rhs), score
        except np.linalg.LinAlgError:
            return np.linalg.lstsq(hess, rhs, rcond=None)[0], score


def register(
    template: np.ndarray | list[np.ndarray],
    moving: np.ndarray | list[np.ndarray],
    *,
    model: str = "similarity",
    init: np.ndarray | None = None,
    levels: int = 5,
    iterations: int = 12,
    coarsest_iterations: int = 60,
    tolerance: float = 1e-5,
) -> Registration:
    """Register ``moving`` to ``template`` (both single-channel, same size).

    Returns the 3x3 matrix mapping ``moving`` pixel coordinates to ``template`` pixel
    coordinates. ``init`` is an initial guess in the same convention (e.g. the previous pair's
    transform: breathing changes smoothly from frame to frame). Either image may be given as
    its :func:`luma_pyramid`, so a stream of frames builds each frame's pyramid once.
    """
    tpl = template if isinstance(template, list) else luma_pyramid(template, levels)
    mov = moving if isinstance(moving, list) else luma_pyramid(moving, len(tpl))
    if model == "none":
        return Registration(np.eye(3), _score(tpl[0], mov[0]), True)
    n = levels_with_signal(tpl)
    # Internally the warp maps template coordinates -> moving coordinates.
    warp = np.linalg.inv(init) if init is not None else np.eye(3)
    warp = rescale_matrix(warp, 1 / 2 ** (n - 1))
    # Seeded on the level the solver starts on: the pyramid may stop above its coarsest.
    warp = _seed_translation(tpl[n - 1], mov[n - 1], warp)
    score, converged = -1.0, False
    for lvl in range(n - 1, -1, -1):
        # Coarse levels only seed the finest, whose precision grows with its sample count.
        lt = _LevelTemplate(tpl[lvl], model, max_samples=300_000 if lvl == 0 else 60_000)
        h, w = lt.shape
        nrm, nrm_inv = lt.norm, np.linalg.inv(lt.norm)
        warp_n = nrm @ warp @ nrm_inv
        converged = False
        back: tuple[np.ndarray, float, np.ndarray] | None = None
        # Bilinear interpolation biases sub-pixel estimates toward whole pixels (up to 0.05 px
        # at quarter-pixel offsets); bicubic does not, so the finest level uses it.
        interp = cv2.INTER_CUBIC if lvl == 0 else cv2.INTER_LINEAR
        for _ in range(coarsest_iterations if lvl == n - 1 else iterations):
            to_moving = nrm_inv @ warp_n @ nrm
            warped = _warped(mov[lvl], to_moving, (w, h), interp)
            dp, score = lt.step(warped, lt.inside(to_moving, mov[lvl].shape))
            if not np.all(np.isfinite(dp)):
                return Registration(np.eye(3), -1.0, False)
            if back is not None and score < back[1] - BACKTRACK_DROP:
                # The last step overshot: go back and take half of it. On a level where a
                # lattice's period is 3 px the full steps swung by whole periods, and the
                # solver wandered off to a wrong period, scale or rotation (40-170 px).
                base, score, dp = back[0], back[1], back[2] * 0.5
                back = (base, score, dp)
                warp_n = project_to_model(base @ _delta_matrix(model, dp), model)
                if float(np.max(np.abs(dp))) < tolerance:
                    converged = True
                    break
                continue
            back = (warp_n, score, dp)
            warp_n = warp_n @ _delta_matrix(model, dp)
            warp_n = project_to_model(warp_n, model)
            if float(np.max(np.abs(dp))) < tolerance:
                converged = True
                break
        warp = nrm_inv @ warp_n @ nrm
        if lvl > 0:
            warp = rescale_matrix(warp, 2.0)
    matrix = np.linalg.inv(warp)
    return Registration(matrix / matrix[2, 2], score, converged)


def _warped(moving: np.ndarray, warp: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """``moving`` sampled at ``warp`` (template -> moving pixels) over a template of ``size``.

    A warp without perspective (every model but the homography) takes ``warpAffine``: the
    same samples, to a few thousandths of a level where the two round a coordinate
    differently, in 60 % of ``warpPerspective``'s time with bicubic interpolation (it has no
    division per pixel to make).
    """
    flags = interp | cv2.WARP_INVERSE_MAP
    if warp[2, 0] == 0.0 and warp[2, 1] == 0.0 and warp[2, 2] == 1.0:
        return cv2.warpAffine(moving, warp[:2], size, flags=flags, borderMode=cv2.BORDER_REFLECT)
    return cv2.warpPerspective(moving, warp, size, flags=flags, borderMode=cv2.BORDER_REFLECT)


def _seed_translation(template: np.ndarray, moving: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """Add the residual shift that phase correlation finds after applying ``warp``."""
    h, w = template.shape
    warped = _warped(moving, warp, (w, h), cv2.INTER_LINEAR)
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    # OpenCV 5's phaseCorrelate applies the window to its inputs in place: pass copies.
    (dx, dy), response = cv2.phaseCorrelate(template.copy(), warped, window)
    if response < 0.05 or abs(dx) > w / 4 or abs(dy) > h / 4:
        return warp
    shift = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)
    return warp @ shift


def _score(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    a -= a.mean()
    b -= b.mean()
    den = float(np.sqrt(np.dot(a, a) * np.dot(b, b))) or 1.0
    return float(np.dot(a, b)) / den


def distortion(matrix: np.ndarray, width: int, height: int) -> float:
    """How far ``matrix`` departs from a similarity (turn, scale and shift) on the frame: the
    largest, over its corners, of the local Jacobian's part that is neither a turn nor a scale
    (shear, a stretch along one axis, perspective's change across the frame), relative to its
    scale. Two frames of one focus stack differ by breathing and a little shake: a few
    thousandths."""
    out = []
    for x, y in ((0, 0), (width, 0), (0, height), (width, height)):
        w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
        warped = matrix[:2] @ np.array([x, y, 1.0]) / w
        jac = (matrix[:2, :2] - np.outer(warped, matrix[2, :2])) / w
        p, q = 0.5 * (jac[0, 0] + jac[1, 1]), 0.5 * (jac[1, 0] - jac[0, 1])
        rest = jac - np.array([[p, -q], [q, p]])
        out.append(float(np.linalg.norm(rest)) / max(float(np.hypot(p, q)), 1e-12))
    return max(out)


def corner_displacement(matrix: np.ndarray, width: int, height: int) -> float:
    """Largest distance in pixels that ``matrix`` moves a frame corner (a plausibility check)."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], float).T
    moved = matrix @ corners
    moved = moved[:2] / moved[2]
    return float(np.max(np.hypot(*(moved - corners[:2]))))
