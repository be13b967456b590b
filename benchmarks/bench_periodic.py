"""Registration on subjects that fool it: lattices, stripes, a hair, smooth beads.

Synthetic 640x480 stacks whose transforms are known: a dot or hex lattice, PCB pads, a mesh,
stripes, brushed metal, a hair, a bead or a flat frame, each optionally with one non-periodic
feature (a disc carrying text). The focus plane tilts across the frame, so the texture fades
in and out along the stack; breathing, random jitter, rotation, exposure drift and noise are
applied. It prints the worst and median corner error of the merged frames' transforms against
the truth (px), the composite's gain-fitted PSNR against the truth over the central 90 %, the
lowest alignment score and the frames refused. ``--truth`` runs the same stack again with the
true transforms, for what right alignment gives.

    python benchmarks/bench_periodic.py dots 12 --feature --truth
    python benchmarks/bench_periodic.py stripes 8 --n 40 --amp 1 --rot 0.05
"""

from __future__ import annotations

import argparse
import math

import common  # noqa: F401  # puts the checkout on the path, as every benchmark does
import cv2
import numpy as np

from evaluation.scoring import central_mask, corner_rms_error, coverage_mask, fitted_psnr
from stacker.stack import Stacker

W, H = 640, 480
M = 120  # canvas margin


def canvas(kind: str, period: float, feature: bool, seed: int = 0) -> np.ndarray:
    """float32 0..1 luma-ish BGR canvas (H+2M, W+2M)."""
    h, w = H + 2 * M, W + 2 * M
    y, x = np.mgrid[:h, :w].astype(np.float32)
    rng = np.random.default_rng(seed)
    p = float(period)
    if kind == "dots":  # compound eye / diatom-like: smooth bumps on a square lattice
        v = 0.5 + 0.22 * (np.cos(2 * np.pi * x / p) + np.cos(2 * np.pi * y / p))
    elif kind == "hex":  # hexagonal lattice (compound eye)
        v = np.zeros_like(x)
        for a in (0, 60, 120):
            t = math.radians(a)
            v += np.cos(2 * np.pi * (x * math.cos(t) + y * math.sin(t)) / p)
        v = 0.5 + 0.15 * v
    elif kind == "pads":  # PCB pin grid
        v = np.where(((x % p) < p / 2) & ((y % p) < p / 2), 0.75, 0.25)
    elif kind == "mesh":  # fabric/mesh: thin lines
        lw = max(1.0, p / 8)
        v = np.where(((x % p) < lw) | ((y % p) < lw), 0.15, 0.8)
    elif kind == "stripes":  # 1-D: ruler / brushed metal / vertical lines, constant along y
        v = 0.5 + 0.3 * np.cos(2 * np.pi * x / p)
    elif kind == "brushed":  # 1-D random (brushed metal), constant along y
        row = rng.normal(0, 1, w).astype(np.float32)
        row = cv2.GaussianBlur(row.reshape(1, -1), (0, 0), 1.5).ravel()
        v = 0.5 + 0.15 * row / row.std() * np.ones((h, 1), np.float32)
    elif kind == "hair":  # a single diagonal-ish hair on plain background... 1-D feature
        d = np.abs((x - w / 2) * math.cos(0.3) - (y - h / 2) * math.sin(0.3))
        v = 0.7 - 0.4 * np.exp(-(d**2) / 8)
    elif kind == "bead":  # smooth bead on plain backdrop
        r2 = (x - w / 2) ** 2 + (y - h / 2) ** 2
        v = 0.35 + 0.4 * np.exp(-r2 / (2 * 90.0**2))
    elif kind == "flat":
        v = np.full_like(x, 0.5)
    else:
        raise SystemExit(kind)
    v = v.astype(np.float32)
    if feature:  # one non-periodic feature: a blob with text, off-centre
        cx, cy = int(w * 0.33), int(h * 0.6)
        cv2.circle(v, (cx, cy), 40, 0.95, -1, cv2.LINE_AA)
        ink = np.zeros(v.shape, np.uint8)
        cv2.putText(
            ink, "Q7", (cx - 25, cy + 12), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 255, 3, cv2.LINE_AA
        )
        a = ink.astype(np.float32) / 255
        v = v * (1 - a) + 0.05 * a
    col = np.stack([v * 0.9, v, v * 1.05], axis=2)
    return np.clip(col, 0, 1).astype(np.float32)


def true_transforms(n, breathing, motion, amp, rot_deg, seed):
    """ref->frame 3x3 transforms."""
    rng = np.random.default_rng([seed, 7])
    cx, cy = (W - 1) / 2, (H - 1) / 2
    out = []
    pos = np.zeros(2)
    for i in range(n):
        s = 1.0 + breathing * i / max(n - 1, 1)
        if i == 0:
            sh, rot = np.zeros(2), 0.0
        elif motion == "jitter":
            sh = rng.uniform(-1, 1, 2) * amp
            rot = rng.uniform(-1, 1) * rot_deg
        elif motion == "drift":  # steady slope drift of amp px/frame plus small vibration
            pos = pos + np.array([amp, 0.6 * amp]) + rng.uniform(-0.3, 0.3, 2)
            sh = pos.copy()
            rot = rng.uniform(-1, 1) * rot_deg
        elif motion == "step":  # one knock: frames from n//2 on moved by amp
            sh = np.array([amp, amp * 0.4]) if i >= n // 2 else np.zeros(2)
            sh = sh + rng.uniform(-0.3, 0.3, 2)
            rot = rng.uniform(-1, 1) * rot_deg
        else:
            raise SystemExit(motion)
        t = math.radians(rot)
        lin = s * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        m = np.eye(3)
        m[:2, :2] = lin
        m[:2, 2] = np.array([cx, cy]) + sh - lin @ np.array([cx, cy])
        out.append(m)
    return out


def render(canv, T, sigma_map, gain, noise, seed):
    """Frame = canvas blurred per pixel (by sigma_map, canvas geometry), warped by T."""
    ladder = [0.7, 1.2, 2.0, 3.2, 5.0, 8.0]
    s = np.clip(sigma_map, ladder[0], ladder[-1])
    acc = np.zeros_like(canv)
    for j in range(len(ladder) - 1):
        a, b = ladder[j], ladder[j + 1]
        wlo = np.where((s >= a) & (s <= b), (b - s) / (b - a), 0)
        whi = np.where((s >= a) & (s <= b), (s - a) / (b - a), 0)
        for sig, wt in ((a, wlo), (b, whi)):
            if wt.any():
                acc += cv2.GaussianBlur(canv, (0, 0), sig) * wt[..., None].astype(np.float32)
    # pixels exactly on a ladder boundary counted twice: normalise
    tot = np.zeros(s.shape, np.float32)
    for j in range(len(ladder) - 1):
        a, b = ladder[j], ladder[j + 1]
        inr = (s >= a) & (s <= b)
        tot += inr.astype(np.float32)
    acc /= np.maximum(tot, 1)[..., None]
    off = np.array([[1.0, 0, -M], [0, 1.0, -M], [0, 0, 1.0]])
    img = cv2.warpAffine(
        acc, (T @ off)[:2], (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
    )
    rng = np.random.default_rng(seed)
    img = img * gain * 255 + rng.normal(0, noise, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def make_stack(
    kind,
    period,
    feature,
    n=24,
    breathing=0.03,
    motion="jitter",
    amp=3.0,
    rot=0.2,
    exposure=0.03,
    noise=1.5,
    depth="tilt",
    blur_max=6.0,
    seed=0,
):
    canv = canvas(kind, period, feature, seed)
    Ts = true_transforms(n, breathing, motion, amp, rot, seed)
    hc, wc = canv.shape[:2]
    _, x = np.mgrid[:hc, :wc].astype(np.float32)
    if depth == "tilt":  # focus plane sweeps across x: each strip sharp in a few frames
        d = (x - M) / W
    elif depth == "flat":  # whole subject at one depth: sharp in the middle, fades both ends
        d = np.full_like(x, 0.5)
    else:
        raise SystemExit(depth)
    rng = np.random.default_rng([seed, 9])
    frames = []
    for i in range(n):
        f = i / max(n - 1, 1)
        sig = 0.7 + blur_max * np.abs(d - f) * 2
        g = 1.0 + rng.uniform(-1, 1) * exposure if i else 1.0
        frames.append(render(canv, Ts[i], sig, g, noise, seed * 1000 + i))
    truth = cv2.GaussianBlur(canv, (0, 0), 0.7)[M : M + H, M : M + W]
    truth = np.clip(truth * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames, Ts, truth


class TruthRegistration:
    """Patch Stacker._register so the pair transform is the truth (the 'right alignment' case)."""

    def __init__(self, Ts):
        self.Ts = Ts
        self.i = 0
        self.orig = Stacker._register

    def __enter__(self):
        outer = self
        from stacker.align import Registration, rescale_matrix

        def fake(st, small_luma):
            chain = np.linalg.inv(outer.Ts[outer.i])
            pair_full = np.linalg.inv(st._prev_chain) @ chain
            pair = rescale_matrix(pair_full, 1 / 2**st._align_level)
            return Registration(pair, 1.0, True), None

        Stacker._register = fake
        return self

    def __exit__(self, *a):
        Stacker._register = self.orig


def run(frames, Ts, truth, use_truth=False, **kw):
    st = Stacker(overlap=False, **kw)
    ctx = TruthRegistration(Ts) if use_truth else None
    if ctx:
        ctx.__enter__()
    try:
        recs = []
        for i, fr in enumerate(frames):
            if ctx:
                ctx.i = i
            recs.append(st.add(fr, name=f"f{i:02d}"))
    finally:
        if ctx:
            ctx.__exit__()
    errs = []
    for r, T in zip(recs, Ts, strict=True):
        if not r.merged:
            errs.append(float("nan"))
            continue
        est = np.linalg.inv(r.matrix)  # ref -> frame
        errs.append(corner_rms_error(est, T, W, H))
    merged = [T for r, T in zip(recs, Ts, strict=True) if r.merged]
    res = st.result(crop=False)
    cov = coverage_mask(merged, (W, H)) & central_mask(H, W, 0.9)
    p = fitted_psnr(res, truth, cov)
    return recs, np.array(errs), p


def summary(label, recs, errs, p):
    rej = [(r.index, r.reason) for r in recs if not r.merged]
    scores = [r.score for r in recs[1:]]
    return (
        f"{label:34s} maxerr {np.nanmax(errs):7.2f} px  mederr {np.nanmedian(errs):6.2f}  "
        f"psnr {p:5.1f}  minscore {min(scores):.2f}  rejected {len(rej)}"
        + (f" {rej[:3]}" if rej else "")
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("kind")
    ap.add_argument("period", type=float)
    ap.add_argument("--feature", action="store_true")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--breathing", type=float, default=0.03)
    ap.add_argument("--motion", default="jitter")
    ap.add_argument("--amp", type=float, default=3.0)
    ap.add_argument("--rot", type=float, default=0.2)
    ap.add_argument("--depth", default="tilt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--truth", action="store_true")
    ap.add_argument("--perframe", action="store_true")
    a = ap.parse_args()
    frames, Ts, truth = make_stack(
        a.kind,
        a.period,
        a.feature,
        a.n,
        a.breathing,
        a.motion,
        a.amp,
        a.rot,
        depth=a.depth,
        seed=a.seed,
    )
    label = f"{a.kind} P{a.period:g}{'+f' if a.feature else ''} {a.motion}{a.amp:g} b{a.breathing}"
    recs, errs, p = run(frames, Ts, truth)
    print(summary(label, recs, errs, p))
    if a.perframe:
        for r, e in zip(recs, errs, strict=True):
            print(f"  {r.index:2d} err {e:7.2f} score {r.score:.3f} {r.reason or ''}")
    if a.truth:
        recs, errs, p = run(frames, Ts, truth, use_truth=True)
        print(summary(label + " [TRUE]", recs, errs, p))
