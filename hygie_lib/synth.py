"""A deterministic synthetic talking speaker: speech-like audio, per-frame mouth truth and a face that follows it.

The face is `skimage.data.astronaut()` cropped around the head and upscaled 2x. It is animated by backward
warping (cv2.remap) with smooth displacement fields built around the MediaPipe FaceMesh lip and eye contours of
the base image, then the mouth interior is painted. Everything is drawn from numpy Generators, so one seed gives
the same audio, truth and frames.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, lfilter, sosfilt
from tqdm import tqdm

from hygie_lib.audio import write_wav
from hygie_lib.io import HygieError, atomic_path
from hygie_lib.landmarks import INNER_LIPS, OUTER_LIPS, rings
from hygie_lib.video import VideoWriter, count_frames

SIZE = 512  # output frames are SIZE x SIZE
CROP = (95, 2, 256)  # x0, y0, side of the head region of astronaut() that is upscaled 2x to SIZE
NEUTRAL_POSE = (0.0, 0.0, 0.0, 1.0)  # dx px, dy px, angle degrees, scale factor

VOWEL_FORMANTS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}
FORMANT_BANDWIDTHS = (80, 100, 140)
FRICATIVE_BANDS = {"s": (3800, 7500, 0.30), "sh": (1800, 4500, 0.30), "f": (1200, 7000, 0.10)}  # lo Hz, hi Hz, rms
CONSONANTS = ("m", "p", "b", "s", "f", "sh")
MOUTH_TARGETS = {  # segment -> (openness, width)
    "a": (1.0, 0.1),
    "e": (0.6, 0.4),
    "i": (0.3, 0.8),
    "o": (0.7, -0.6),
    "u": (0.35, -0.9),
    "s": (0.15, 0.3),
    "f": (0.1, 0.0),
    "sh": (0.15, -0.4),
    "m": (0.0, 0.0),
    "p": (0.0, 0.0),
    "b": (0.0, 0.0),
    "pause": (0.0, 0.0),
}
COARTICULATION_SIGMA = 0.04  # s, gaussian smoothing of the mouth targets
COARTICULATION_REACH = 0.10  # s, the smoothing is truncated here: frame t depends on audio within t +- this
FADE = 0.006  # s, raised-cosine fade at both ends of every segment


# ---------------------------------------------------------------- small helpers


def _falloff(d: np.ndarray, radius: float) -> np.ndarray:
    """1 at d <= 0, raised-cosine down to 0 at d >= radius."""
    t = np.clip(d / radius, 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * t)


def _soft_step(d: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased step: 0 well below d = 0, 1 well above, linear over `width` pixels."""
    return np.clip(d / width + 0.5, 0.0, 1.0)


def _split_ring(ring: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ring of landmark indices at its x-extremes: (upper chain, lower chain), each left to right."""
    xs = points[ring, 0]
    i, j = sorted((int(np.argmin(xs)), int(np.argmax(xs))))
    one, two = ring[i : j + 1], np.concatenate([ring[j:], ring[: i + 1]])
    chains = [c[np.argsort(points[c, 0])] for c in (one, two)]
    chains.sort(key=lambda c: points[c, 1].mean())
    return chains[0], chains[1]


def _polygon_area(p: np.ndarray) -> float:
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))


def _curve(points: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """y of a left-to-right polyline at `xs` (clamped at both ends), lightly smoothed."""
    order = np.argsort(points[:, 0], kind="stable")
    y = np.interp(xs, points[order, 0], points[order, 1])
    return gaussian_filter1d(y, sigma=4.0, mode="nearest")


# ---------------------------------------------------------------- the base face and its landmarks (once per process)


@functools.lru_cache(maxsize=1)
def _source_image() -> np.ndarray:
    """astronaut() upscaled 2x (Lanczos): the texture every frame samples from."""
    from skimage import data

    img = data.astronaut()
    return cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_LANCZOS4)


def base_face() -> np.ndarray:
    """The neutral 512x512 RGB face (head region of astronaut(), upscaled 2x), unanimated."""
    x0, y0, side = CROP
    return _source_image()[2 * y0 : 2 * y0 + 2 * side, 2 * x0 : 2 * x0 + 2 * side].copy()


@functools.lru_cache(maxsize=1)
def base_landmarks() -> np.ndarray:
    """The 478 FaceMesh landmarks of `base_face()` in pixels [478, 2] (run once per process)."""
    import mediapipe as mp

    img = base_face()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as mesh:
        result = mesh.process(img)
    if not result.multi_face_landmarks:
        raise HygieError("MediaPipe FaceMesh found no face in the synthetic base image; check the mediapipe install.")
    lm = result.multi_face_landmarks[0].landmark
    return np.array([[p.x * img.shape[1], p.y * img.shape[0]] for p in lm], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def lip_chains() -> dict[str, np.ndarray]:
    """FaceMesh indices of the lip contours, left to right: inner_upper, inner_lower, outer_upper, outer_lower."""
    lm = base_landmarks()
    iu, il = _split_ring(INNER_LIPS, lm)
    ou, ol = _split_ring(OUTER_LIPS, lm)
    return {"inner_upper": iu, "inner_lower": il, "outer_upper": ou, "outer_lower": ol}


@functools.lru_cache(maxsize=1)
def eye_chains() -> list[tuple[np.ndarray, np.ndarray]]:
    """FaceMesh landmark indices of both eye contours as (upper lid, lower lid) chains, left to right."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE

    lm = base_landmarks()
    return [_split_ring(rings(conns)[0], lm) for conns in (FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE)]


@functools.lru_cache(maxsize=1)
def _feature_points() -> dict[str, np.ndarray]:
    """Landmark pixel positions of the nose and eyebrows (from the FaceMesh connection sets)."""
    from mediapipe.python.solutions import face_mesh_connections as fc

    lm = base_landmarks()
    points = lambda conns: lm[sorted({i for edge in conns for i in edge})]  # noqa: E731
    return {"nose": points(fc.FACEMESH_NOSE), "brows": points(fc.FACEMESH_LEFT_EYEBROW | fc.FACEMESH_RIGHT_EYEBROW)}


# ---------------------------------------------------------------- the face rig (computed once per process)

TABLE_STEP = 0.25  # px between samples of the per-column tables along face-space x


def _lookup(tables: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Linear interpolation of per-column tables [1, n, k] (k <= 4, float32) at face-space x: k arrays like x."""
    pos = x * np.float32(1.0 / TABLE_STEP)
    out = cv2.remap(tables, pos, np.zeros_like(pos), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.split(out) if out.ndim == 3 else (out,)


def _screen_region(box: tuple[float, float, float, float], pivot: tuple[float, float], pose) -> tuple[slice, slice]:
    """Screen rows and columns covering a face-space box (x0, y0, x1, y1) once the head is moved by `pose`."""
    dx, dy, angle, scale = pose
    cos, sin = math.cos(math.radians(angle)) * scale, math.sin(math.radians(angle)) * scale
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]]) - pivot
    xs = cos * corners[:, 0] - sin * corners[:, 1] + pivot[0] + dx
    ys = sin * corners[:, 0] + cos * corners[:, 1] + pivot[1] + dy
    rows = slice(max(0, int(ys.min()) - 2), max(0, min(SIZE, int(ys.max()) + 3)))
    cols = slice(max(0, int(xs.min()) - 2), max(0, min(SIZE, int(xs.max()) + 3)))
    return rows, cols


@dataclass(frozen=True)
class _Eye:
    tables: np.ndarray  # [1, n, 2] float32: lid line (top of the visible eye) and lower lid, per table x
    brow_gap: float  # px from the lid line up to the eyebrow, which stays put during a blink
    box: tuple[float, float, float, float]  # face-space region the blink touches


@dataclass(frozen=True)
class _Rig:
    lips: np.ndarray  # [1, n, 4] per table x: closed-lip line, corner-pull profile, upper and lower lip shift to it
    shape: np.ndarray  # [1, n, 4] per table x: opening profile, smile corner lift, jaw-drop profile, teeth height
    cx: float  # mouth centre x
    half: float  # half the inner mouth width
    mouth_width: float  # outer corner to outer corner
    jaw_drop: float  # px the lower lip drops at openness 1
    lip_lift: float  # px the upper lip rises at openness 1
    upper_reach: float  # the upper-lip fields fade out over this many px above the lips (to the nose)
    lower_reach: float  # the lip-closing field fades out over this many px below the lips
    chin_depth: float  # lips to just below the chin: the jaw drop builds up to its full value over this
    neck_reach: float  # below the chin the jaw drop fades out over this
    spread_px: float  # corner pull at width +1 (each side)
    round_px: float  # corner push at width -1 (each side)
    spread_height: float  # vertical reach of the corner pull
    pucker_px: float  # lip thickening at width -1
    lip_thickness: float
    mouth_box: tuple[float, float, float, float]  # face-space region the mouth fields touch (x0, y0, x1, y1)
    core_box: tuple[float, float, float, float]  # part of it where the mouth interior or lip seam can be painted
    eyes: tuple[_Eye, ...]
    pivot: tuple[float, float]  # head sway rotates and scales about this point


def _eye_rig(upper: np.ndarray, lower: np.ndarray, brows: np.ndarray, xs: np.ndarray) -> _Eye:
    left, right = upper[0, 0], upper[-1, 0]
    cx, half = (left + right) / 2, (right - left) / 2 + 3.0  # the visible eye reaches a little past the mesh
    inside = np.sqrt(np.clip(1.0 - ((xs - cx) / half) ** 2, 0.0, 1.0))
    bottom = _curve(lower, xs) + 1.0 * inside
    top = np.where(inside > 0, _curve(upper, xs) - 2.0 * inside, bottom)
    top = np.minimum(top, bottom)
    near = brows[np.abs(brows[:, 0] - cx) < 0.5 * half]
    top_mid = float(np.interp(cx, xs, top))
    brow_gap = max(8.0, 0.9 * (top_mid - float(near[:, 1].max()))) if len(near) else 12.0
    box = (cx - half - 3, top.min() - brow_gap - 4, cx + half + 3, bottom.max() + 4)
    return _Eye(np.dstack([top, bottom]).astype(np.float32), brow_gap, box)


@functools.lru_cache(maxsize=1)
def _rig() -> _Rig:
    lm = base_landmarks()
    chains = lip_chains()
    xs = np.arange(0, SIZE, TABLE_STEP)
    iu, il = lm[chains["inner_upper"]], lm[chains["inner_lower"]]
    outer = lm[np.concatenate([chains["outer_upper"], chains["outer_lower"]])]
    cx, half = (iu[0, 0] + iu[-1, 0]) / 2, (iu[-1, 0] - iu[0, 0]) / 2
    mouth_width = float(outer[:, 0].max() - outer[:, 0].min())
    t = (xs - cx) / half
    inside = np.clip(1.0 - t**2, 0.0, 1.0)
    upper, lower = _curve(iu, xs), _curve(il, xs)
    teeth = np.maximum(lower - upper, 0.0) * np.clip(3.0 * inside, 0.0, 1.0)  # the photo's smile shows teeth here
    line = upper + 0.3 * teeth  # closed lips meet here: the upper lip comes down 30% of the gap, the lower 70%
    a = np.abs(t)
    fade = 0.5 + 0.5 * np.cos(np.pi / 2 * np.clip(a - 1, 0, 2))
    spread = np.where(a <= 1, np.sin(np.pi / 2 * np.minimum(a, 1)), fade)  # corners move most, 0 at 3 half-widths
    jaw_half = 1.1 * mouth_width
    jaw = 0.5 + 0.5 * np.cos(np.pi * np.clip(np.abs(xs - cx) / jaw_half, 0.0, 1.0))
    lips = [line, np.sign(t) * spread, -0.3 * teeth, 0.7 * teeth]  # _Rig.lips channels
    mid = float(np.interp(cx, xs, line))
    corner_lift = (mid - line) * _falloff(np.abs(xs - cx) - half, half)  # how far the smile raises the line here
    shape = [inside**0.6, corner_lift, jaw, teeth]  # _Rig.shape channels
    chin = float(lm[:, 1].max())
    nose = _feature_points()["nose"]
    upper_reach = max(12.0, mid - float(nose[:, 1].max()))
    spread_height = 0.6 * mouth_width
    jaw_drop, neck_reach, chin_depth = 0.33 * mouth_width, 0.55 * mouth_width, (chin - mid) + 10.0
    side = max(jaw_half, 3 * half) + 2
    bottom = mid + jaw_drop + chin_depth + neck_reach + 4
    box = (cx - side, line.min() - max(upper_reach, spread_height) - 4, cx + side, bottom)
    lower_outer = float(np.interp(cx, *lm[chains["outer_lower"]].T))
    lip_line = line[inside > 0]
    reach = half + 0.1 * mouth_width + 3  # corners pulled out at width +1
    core = (cx - reach, lip_line.min() - 0.07 * mouth_width - 4, cx + reach, lip_line.max() + jaw_drop + 4)
    brows = _feature_points()["brows"]
    return _Rig(
        lips=np.dstack(lips).astype(np.float32),
        shape=np.dstack(shape).astype(np.float32),
        cx=float(cx),
        half=float(half),
        mouth_width=mouth_width,
        jaw_drop=jaw_drop,
        lip_lift=0.07 * mouth_width,
        upper_reach=upper_reach,
        lower_reach=0.9 * (chin - mid),
        chin_depth=chin_depth,
        neck_reach=neck_reach,
        spread_px=0.10 * mouth_width,
        round_px=0.2 * mouth_width,
        spread_height=spread_height,
        pucker_px=0.04 * mouth_width,
        lip_thickness=max(4.0, lower_outer - float(np.interp(cx, xs, lower))),
        mouth_box=box,
        core_box=core,
        eyes=tuple(_eye_rig(lm[u], lm[lo], brows, xs) for u, lo in eye_chains()),
        pivot=(float(cx), mid),
    )


@functools.lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return xs, ys


# ---------------------------------------------------------------- rendering

MOUTH_DARK = np.array([22.0, 8.0, 10.0], np.float32)  # the mouth cavity
TONGUE = np.array([122.0, 52.0, 56.0], np.float32)
SEAM = np.array([112.0, 56.0, 58.0], np.float32)  # where closed lips meet
TEETH_SHADE = 0.2  # teeth inside the mouth are darkened this much
LASH_BAND = 6.0  # px above the lid edge that move down rigidly in a blink


def _mouth(rig: _Rig, qx: np.ndarray, qy: np.ndarray, openness: float, width: float, core: tuple[slice, slice]):
    """Source x, y for face-space points (qx, qy) around the mouth; paint alpha and premultiplied colour on `core`."""
    # Backward map, column by column: above the closed-lip line the upper lip region shifts (closing the photo's
    # teeth gap, lifting when open), below it the lower lip and jaw drop; between the inner lip edges is the mouth.
    line0, pull_profile, _, _ = _lookup(rig.lips, qx)
    pull = width * (rig.spread_px if width > 0 else rig.round_px)
    x = qx - pull * pull_profile * _falloff(np.abs(qy - line0), rig.spread_height)  # corners out (i) or in (u)
    line, _, up, lo = _lookup(rig.lips, x)
    profile, corner_lift, jaw, teeth = _lookup(rig.shape, x)
    roundness = max(-width, 0.0)
    y = qy
    if roundness > 0:  # rounded lips: rounder opening, the smile's raised corners come down, lips push out
        profile = profile ** (1.0 - 0.5 * roundness)
        y = qy - 0.6 * roundness * corner_lift * _falloff(np.abs(qy - line), rig.spread_height)
        z = (y - line) / rig.lip_thickness
        y = y - rig.pucker_px * roundness * profile * z * np.exp(0.5 * (1.0 - z * z))
    drop = openness * rig.jaw_drop * jaw
    lift = openness * rig.lip_lift * profile
    top, bottom = line - lift, line + drop * profile  # inner lip edges on screen
    d = y - bottom
    follow = profile + (1.0 - profile) * np.clip(d / rig.chin_depth, 0.0, 1.0)  # share of the jaw drop below the lips
    follow = np.where(d > rig.chin_depth, _falloff(d - rig.chin_depth, rig.neck_reach), follow)
    below = y + lo * _falloff(d, rig.lower_reach) - drop * follow
    above = y + (up + lift) * _falloff(top - y, rig.upper_reach)  # also the inside: the upper teeth hang from here
    sy = np.where(d >= 0, below, above)

    at = [a[core] for a in (x, y, top, bottom, line, profile, teeth)]
    alpha, paint = _mouth_paint(rig, *at, roundness)
    return x, sy, alpha, paint


def _mouth_paint(rig: _Rig, x, y, top, bottom, line, profile, teeth, roundness: float) -> tuple[np.ndarray, np.ndarray]:
    """Alpha and premultiplied colour of the mouth interior (cavity, tongue, shaded teeth) and the closed-lip seam."""
    gap = bottom - top
    inside = _soft_step(y - top, 1.2) * _soft_step(bottom - y, 1.2) * np.clip(gap / 1.5, 0.0, 1.0)
    teeth_shown = np.minimum(0.85 * teeth, 0.4 * gap) * (1.0 - 0.5 * roundness)  # pushed-out lips hide teeth
    dark = inside * _soft_step(y - top - teeth_shown, 1.5)
    depth = np.clip((y - top) / np.maximum(gap, 1.0), 0.0, 1.0)
    centre = np.clip(1.0 - ((x - rig.cx) / (0.7 * rig.half)) ** 2, 0.0, 1.0)
    tongue = (np.clip((depth - 0.45) / 0.5, 0.0, 1.0) * centre * np.clip(gap / 14.0, 0.0, 1.0))[..., None]
    seam = 0.5 * np.exp(-(((y - line) / 1.1) ** 2)) * np.sqrt(profile) * (1.0 - np.clip(gap / 3.0, 0.0, 1.0))
    alpha = np.clip(dark + TEETH_SHADE * (inside - dark) + seam, 0.0, 1.0)
    paint = dark[..., None] * (MOUTH_DARK + (TONGUE - MOUTH_DARK) * tongue) + seam[..., None] * SEAM
    return alpha, paint


def _lid(eye: _Eye, qx: np.ndarray, qy: np.ndarray, blink: float) -> tuple[np.ndarray, np.ndarray]:
    """Source y of the eyelid layer around one eye and its alpha: the upper lid slides down by `blink` (0..1)."""
    top, bottom = _lookup(eye.tables, qx)
    delta = blink * (bottom - top)
    edge = top + delta
    lashes = edge - LASH_BAND  # the lash line moves down unchanged; only the lid skin above it stretches
    stretch = np.clip(1.0 - (lashes - qy) / (eye.brow_gap - LASH_BAND + delta), 0.0, 1.0)
    return qy - delta * stretch, _soft_step(edge - qy, 1.0)


def _face_coords(rig: _Rig, pose: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Face-space coordinates of every screen pixel under head `pose` (inverse similarity about the pivot)."""
    gx, gy = _grid()
    dx, dy, angle, scale = pose
    cos, sin = math.cos(math.radians(angle)) / scale, math.sin(math.radians(angle)) / scale
    cx, cy = rig.pivot[0] + dx, rig.pivot[1] + dy
    qx = gx * np.float32(cos) + gy * np.float32(sin) + np.float32(rig.pivot[0] - cos * cx - sin * cy)
    qy = gy * np.float32(cos) - gx * np.float32(sin) + np.float32(rig.pivot[1] - cos * cy + sin * cx)
    return qx, qy


def render_face(
    openness: float,
    width: float,
    blink: float = 0.0,
    pose: tuple[float, float, float, float] = NEUTRAL_POSE,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One RGB frame [512, 512, 3] uint8: mouth as given, eyelids at `blink`, head at `pose`, noise/flicker from rng."""
    openness, width, blink = float(np.clip(openness, 0, 1)), float(np.clip(width, -1, 1)), float(np.clip(blink, 0, 1))
    rig = _rig()
    source = _source_image()
    ox, oy = 2 * CROP[0], 2 * CROP[1]
    qx, qy = _face_coords(rig, pose)
    lids = []
    if blink > 0:
        for eye in rig.eyes:
            screen = _screen_region(eye.box, rig.pivot, pose)
            sy, alpha = _lid(eye, qx[screen], qy[screen], blink)
            lids.append((screen, qx[screen] + ox, sy + oy, alpha))
    box = _screen_region(rig.mouth_box, rig.pivot, pose)
    core_screen = _screen_region(rig.core_box, rig.pivot, pose)
    core = tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(core_screen, box))
    sx, sy, alpha, paint = _mouth(rig, qx[box], qy[box], openness, width, core)
    qx[box], qy[box] = sx, sy
    qx += ox
    qy += oy
    frame = cv2.remap(source, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    painted = frame[core_screen]
    painted[:] = np.clip(painted * (1.0 - alpha)[..., None] + paint + 0.5, 0, 255).astype(np.uint8)
    for screen, mx, my, a in lids:
        lid = cv2.remap(source, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        a = a[..., None]
        frame[screen] = (lid * a + frame[screen] * (1.0 - a) + 0.5).astype(np.uint8)
    if rng is not None:
        frame = cv2.convertScaleAbs(frame, alpha=1.0 + 0.012 * rng.standard_normal())  # brightness flicker
        bits = np.frombuffer(rng.bytes(frame.size), np.uint8).reshape(frame.shape)
        frame = cv2.subtract(cv2.add(frame, bits & 3), bits >> 6)  # sensor noise: -3..3, triangular, mean 0
    return frame


# ---------------------------------------------------------------- speech


def _fade(n: int, sr: int, fade_in: float = FADE, fade_out: float = FADE) -> np.ndarray:
    """Envelope of n samples: raised-cosine ramps at both ends, 1 in between."""
    env = np.ones(n)
    for seconds, ramp in ((fade_in, slice(None)), (fade_out, slice(None, None, -1))):
        k = min(n // 2, int(seconds * sr))
        if k:
            env[ramp][:k] *= 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)
    return env


def _rms_to(x: np.ndarray, rms: float) -> np.ndarray:
    return x * (rms / max(float(np.sqrt(np.mean(x**2))), 1e-12))


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """Two-pole resonance (a formant) at `freq` Hz, unit gain at DC."""
    r = math.exp(-math.pi * bandwidth / sr)
    a = [1.0, -2.0 * r * math.cos(2 * math.pi * freq / sr), r * r]
    return lfilter([sum(a)], a, x)


def _glottal_source(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Voice source for the whole utterance: pulse train with slow intonation (110-220 Hz) and jitter, glottal tilt."""
    t = np.arange(n) / sr
    rates, phases = rng.uniform([0.1, 0.3, 0.9], [0.3, 0.7, 1.5]), rng.uniform(0, 2 * np.pi, 3)
    contour = sum(d * np.sin(2 * np.pi * rate * t + ph) for d, rate, ph in zip((0.14, 0.07, 0.03), rates, phases))
    f0 = np.clip(rng.uniform(130.0, 180.0) * np.exp(contour), 110.0, 220.0)
    jitter = 1.0 + 0.01 * rng.standard_normal(int(n / sr * 260) + 2)  # more periods than can fit
    shimmer = 1.0 + 0.05 * rng.standard_normal(len(jitter))
    pulses = np.zeros(n + 2)
    pos, k = 0.0, 0
    while pos < n:
        i = int(pos)
        frac = pos - i
        pulses[i] += shimmer[k] * (1 - frac)
        pulses[i + 1] += shimmer[k] * frac
        pos += sr / f0[i] * jitter[k]
        k += 1
    glottal = lfilter([1.0], [1.0, -1.94, 0.9409], pulses[:n])  # double pole at 0.97: -12 dB/octave
    return np.diff(glottal, prepend=0.0)  # lip radiation: +6 dB/octave


def _vowel(source: np.ndarray, vowel: str, sr: int) -> np.ndarray:
    out = source
    for freq, bandwidth in zip(VOWEL_FORMANTS[vowel], FORMANT_BANDWIDTHS):
        out = _resonator(out, freq, bandwidth, sr)
    return out


def _noise_band(rng: np.random.Generator, n: int, lo: float, hi: float, sr: int) -> np.ndarray:
    hi = min(hi, 0.45 * sr)  # stay below Nyquist at low sample rates
    sos = butter(4, [min(lo, 0.5 * hi), hi], btype="band", fs=sr, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


def _segment_audio(rng: np.random.Generator, name: str, source: np.ndarray, sr: int) -> np.ndarray:
    """Audio of one segment, given the voice source over its span."""
    n = len(source)
    if name in VOWEL_FORMANTS:
        return _rms_to(_vowel(source, name, sr), rng.uniform(0.6, 1.0)) * _fade(n, sr, 0.015, 0.03)
    if name in FRICATIVE_BANDS:
        lo, hi, rms = FRICATIVE_BANDS[name]
        return _rms_to(_noise_band(rng, n, lo, hi, sr), rms) * _fade(n, sr, 0.012, 0.012)
    if name == "m":  # lips closed, voice through the nose: a low hum
        hum = _resonator(_resonator(source, 250.0, 100.0, sr), 250.0, 300.0, sr)
        return _rms_to(hum, 0.12) * _fade(n, sr)
    if name in ("p", "b"):  # closure, then a short burst as the lips release
        out = np.zeros(n)
        if name == "b":
            out += _rms_to(_resonator(source, 180.0, 150.0, sr), 0.04)
        k = min(n, int(0.012 * sr))
        burst = _noise_band(rng, k, 500.0, 6000.0, sr) * np.exp(-np.arange(k) / (0.004 * sr))
        out[n - k :] += _rms_to(burst, 0.5 if name == "p" else 0.25)
        return out * _fade(n, sr, FADE, 0.002)
    return np.zeros(n)  # pause


def _segments(rng: np.random.Generator, seconds: float) -> list[tuple[str, float]]:
    """Random utterance: words of 1-4 (consonant +) vowel syllables separated by 0.2-0.8 s pauses."""
    segments = [("pause", rng.uniform(0.2, 0.5))]
    total = segments[0][1]
    while total < seconds:
        for _ in range(rng.integers(1, 5)):
            if rng.random() < 0.8:
                segments.append((CONSONANTS[rng.integers(len(CONSONANTS))], rng.uniform(0.04, 0.12)))
            segments.append((tuple(VOWEL_FORMANTS)[rng.integers(len(VOWEL_FORMANTS))], rng.uniform(0.08, 0.25)))
        segments.append(("pause", rng.uniform(0.2, 0.8)))
        total = sum(d for _, d in segments)
    return segments


def speech_plan(rng: np.random.Generator, seconds: float, fps: float, sr: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Speech-like audio (float32, peak 0.5) and per-frame mouth targets: frame, time, openness 0..1, width -1..1."""
    # frame t is at t / fps; its targets depend only on the audio within +-COARTICULATION_REACH of that time
    n = int(round(seconds * sr))
    if n < 1:
        raise HygieError(f"speech_plan: {seconds} s is too short to synthesise.")
    segments = _segments(rng, seconds)
    bounds = np.round(np.cumsum([0.0] + [d for _, d in segments]) * sr).astype(int)
    source = _glottal_source(rng, bounds[-1], sr)
    audio = np.zeros(bounds[-1])
    targets = np.zeros((int(math.ceil(bounds[-1] / sr * 1000)) + 1, 2))  # openness, width per millisecond
    for (name, _), start, stop in zip(segments, bounds[:-1], bounds[1:]):
        audio[start:stop] = _segment_audio(rng, name, source[start:stop], sr)
        targets[int(round(start / sr * 1000)) : int(round(stop / sr * 1000)) + 1] = MOUTH_TARGETS[name]
    audio = audio[:n] + 0.002 * rng.standard_normal(n)  # room noise
    audio = (audio * (0.5 / max(float(np.abs(audio).max()), 1e-9))).astype(np.float32)
    sigma = COARTICULATION_SIGMA * 1000
    smooth = gaussian_filter1d(targets, sigma, axis=0, mode="nearest", truncate=COARTICULATION_REACH * 1000 / sigma)
    frames = np.arange(count_frames(n / sr, fps))
    ms = np.minimum(np.round(frames / fps * 1000).astype(int), len(smooth) - 1)
    truth = pd.DataFrame(
        {
            "frame": frames.astype(np.int64),
            "time": frames / fps,
            "openness": np.clip(smooth[ms, 0], 0.0, 1.0),
            "width": np.clip(smooth[ms, 1], -1.0, 1.0),
        }
    )
    return audio, truth


# ---------------------------------------------------------------- life that does not depend on the audio

SWAY = (5.0, 4.0, 2.0, 0.02)  # max |dx| px, |dy| px, |angle| degrees, |scale - 1|
BLINK_EVERY = (2.0, 6.0)  # s between blinks
BLINK_SHUT, BLINK_RAMP = 0.02, 0.055  # s fully shut, s closing (and opening): ~150 ms in all


def idle_motion(rng: np.random.Generator, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Head pose per frame [n, 4] (dx, dy, angle, scale) from slow random sinusoids, and blink 0..1 per frame [n]."""
    t = np.arange(n_frames) / fps
    pose = np.zeros((n_frames, 4))
    for k, amplitude in enumerate(SWAY):
        rates, phases = rng.uniform(0.04, 0.25, 2), rng.uniform(0, 2 * np.pi, 2)
        waves = np.sin(2 * np.pi * rates[:, None] * t + phases[:, None])
        pose[:, k] = amplitude * (0.6 * waves[0] + 0.4 * waves[1])
    pose[:, 3] += 1.0
    blink = np.zeros(n_frames)
    when = rng.uniform(0.5, 2.5)
    while when < n_frames / fps + 1.0:
        away = np.abs(t - when) - BLINK_SHUT
        blink = np.maximum(blink, np.where(away <= 0, 1.0, _falloff(away, BLINK_RAMP) * (away < BLINK_RAMP)))
        when += rng.uniform(*BLINK_EVERY)
    return pose, blink


# ---------------------------------------------------------------- demo data set


def _write_video(
    path: Path,
    truth: pd.DataFrame,
    rng: np.random.Generator,
    fps: int,
    audio: np.ndarray | None,
    sr: int,
    desc: str,
    progress: bool,
) -> None:
    """Render one frame per truth row (with idle motion and noise from rng) into an H.264 MP4, atomically."""
    pose, blink = idle_motion(rng, len(truth), fps)
    openness, width = truth["openness"].to_numpy(), truth["width"].to_numpy()
    with atomic_path(path) as tmp, VideoWriter(tmp, fps, SIZE, SIZE, audio=audio, sr=sr) as writer:
        for i in tqdm(range(len(truth)), desc=desc, unit="frame", disable=not progress):
            writer.write(render_face(openness[i], width[i], blink[i], tuple(pose[i]), rng))


def make_demo_data(
    out_dir: str | Path,
    *,
    seed: int = 0,
    train_seconds: float = 120.0,
    template_seconds: float = 20.0,
    audio_seconds: float = 10.0,
    fps: int = 25,
    sr: int = 16000,
    progress: bool = True,
) -> dict[str, Path]:
    """Write the synthetic demo set (train video with audio, idle template, new audio, ground truth) into out_dir."""
    out = Path(out_dir)
    paths = {
        "train_video": out / "train_video.mp4",
        "template": out / "template_idle.mp4",
        "new_audio": out / "new_audio.wav",
        "truth": out / "demo_truth.parquet",
    }
    streams = np.random.SeedSequence(seed).spawn(4)
    speech_rng, new_rng, train_life, template_life = (np.random.default_rng(s) for s in streams)
    audio, truth = speech_plan(speech_rng, train_seconds, fps, sr)
    new_audio, new_truth = speech_plan(new_rng, audio_seconds, fps, sr)
    table = pd.concat([truth.assign(clip="train"), new_truth.assign(clip="new_audio")], ignore_index=True)
    table = table[["clip", "frame", "time", "openness", "width"]]
    with atomic_path(paths["truth"]) as tmp:
        table.to_parquet(tmp, index=False)
    write_wav(paths["new_audio"], new_audio, sr)
    idle = pd.DataFrame({"openness": np.zeros(count_frames(template_seconds, fps)), "width": 0.0})
    _write_video(paths["template"], idle, template_life, fps, None, sr, "template video", progress)
    _write_video(paths["train_video"], truth, train_life, fps, audio, sr, "train video", progress)
    return paths
