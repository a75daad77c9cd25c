"""Retrieval: real mouths of the training recording, chosen for the shape the audio asks for, without flicker.

The library holds the training block's mouths (the recorded pixels around each crop box, so that a mouth reshaped to
another shape is resampled once, as a crop is) and their shape coefficients (`build_library`), with what it takes to
render from it alone (how the crops and mel were made, the mask, the shape model): the fast path, usable seconds
after train_shape while the generator trains. For a sequence of wanted shapes, the K nearest mouths of each frame
(scikit-learn's KD-tree) are the candidates, and a Viterbi path picks one per frame: close to the wanted shape, and
costing little to go from one to the next (none when the next is the recording's next frame, so real runs of the
recording play as they were), not less open than wanted (reshaping can close a mouth, not open one), and as sharp
as the sharpest candidate (a recording has soft mouths).
`reshape_mouths` moves each chosen mouth onto its wanted shape (rendering alone uses it: training does not depend on
this file). `real_detail` gives a drawn mouth real fine detail: the chosen one's on the lips and where the jaw moved,
the template frame's where nothing moved, moved onto the drawn edges (render.mouth blend).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from sklearn.neighbors import NearestNeighbors

from hygie_lib.audio2shape import ShapeModel
from hygie_lib.checkpoint import DataInfo
from hygie_lib.crops import Crops, frame_windows, per_channel
from hygie_lib.io import HygieError, save_npz
from hygie_lib.shape import MOUTH_INNER, MOUTH_OUTER, ShapeSpace, crop_points

CANDIDATES = 8  # nearest library mouths considered per frame
THUMB = 16  # side of the grey thumbnails the jump cost compares
JUMP = 1.0  # weight of the visual jump between two consecutive picks (thumbnail RMS, 0-1 units) against shape error
SWITCH = 0.05  # cost of leaving the recording's own order, even between similar mouths
NARROWER = 1.0  # cost of a mouth less open than wanted, per spread of the library's openings, squared: reshaping
# stretches a closed mouth's lips but cannot show the inside it never recorded (README, "Sharp mouths")
SOFTER = 0.25  # cost of a mouth whose lips hold less fine detail than the sharpest candidate's, per share, squared:
# recorded mouths can be soft (motion blur, focus), and blend takes its lips' detail from the chosen one
DETAIL = 1 / 64  # blend keeps the drawn mouth's detail coarser than this share of the crop's side (2.5 px at 160 px)
AGREE_SCALE = 8  # the template gives its detail where, blurred AGREE_SCALE x DETAIL, it is near the drawn mouth:
AGREE_LEVELS = 20.0  # within about this many grey levels (mean over RGB)
LIPS_MARGIN = 4  # blend takes the library mouth's detail this many DETAIL sigmas beyond the outer lips, always
FAR_MARGIN = 2  # the template's detail is taken as it is this many DETAIL sigmas away from both mouths' hulls
EDGE_LEVELS = 40.0  # its detail is moved onto the drawn edges near its own, which rise this many grey levels per sigma
FLOW_MAX = 4  # ... by at most this many DETAIL sigmas
FOUND = 0.25  # ... onto a drawn edge at least this share as steep (no detail near a template edge without one)
TONE_MAX = 2.0  # inside the open lips, blend raises the drawn mouth's coarse contrast to the library mouth's, at most x
RESHAPE_BORDER = 8  # points per side of the crop that a reshaped mouth holds still
RESHAPE_GRID = 20  # the reshaping's displacement is computed on this grid and interpolated (it is smooth)
RESHAPE_SMOOTH = 1.0  # thin-plate regularisation: points that coincide (closed lips) may ask for different moves
RESHAPE_LIPS = 1 / 8  # Lanczos within this share of the side around the outer lips' box, bicubic (4x faster) beyond:
# about as far as real_detail takes the library mouth's lips (LIPS_MARGIN DETAIL sigmas, then feathered)


@dataclass(frozen=True)
class MouthLibrary:
    """Real mouths of a recording with their shapes: what retrieval chooses from."""

    windows: np.ndarray  # [M, W, W, 3] uint8 the recorded frames' pixels around each crop box (`frame_windows`)
    to_window: np.ndarray  # [M, 2, 3] affines from crop pixels to window pixels
    shapes: np.ndarray  # [M, K] shape coefficients, in units of each coefficient's spread
    frames: np.ndarray  # [M] frame numbers in the recording
    thumbs: np.ndarray  # [M, THUMB * THUMB] grey thumbnails of the mask's box, in [0, 1]
    points: np.ndarray  # [M, len(shape.MOUTH), 2] each crop's mouth points (its shape as placed), in crop pixels
    mask: np.ndarray  # [S, S] the region a pasted mouth replaces
    data: DataInfo  # how the crops and the mel the shape model hears were made (mel_win 0: no generator)
    model: ShapeModel  # the recording's audio -> shape model

    def save(self, path: str | os.PathLike) -> None:
        """Write a deterministic .npz, atomically."""
        arrays = {f"model.{k}": v for k, v in self.model.arrays().items()}
        data = np.array(json.dumps(asdict(self.data), sort_keys=True))
        save_npz(
            path,
            windows=self.windows,
            to_window=self.to_window,
            shapes=self.shapes,
            frames=self.frames,
            thumbs=self.thumbs,
            points=self.points,
            mask=self.mask,
            data=data,
            **arrays,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MouthLibrary:
        """Read a build_library output; a HygieError names a file of another layout."""
        try:
            with np.load(path) as z:
                model = ShapeModel.from_arrays({k[6:]: z[k] for k in z.files if k.startswith("model.")})
                data = DataInfo.from_dict(json.loads(str(z["data"])))
                return cls(
                    z["windows"],
                    z["to_window"],
                    z["shapes"],
                    z["frames"],
                    z["thumbs"],
                    z["points"],
                    z["mask"],
                    data,
                    model,
                )
        except (OSError, KeyError, ValueError) as e:
            raise HygieError(f"{path}: not a mouth library made by build_library ({e}); run `dvc repro`.") from e

    @property
    def size(self) -> int:
        """Side of the crops it gives."""
        return self.mask.shape[0]

    def mouths(
        self, picks: np.ndarray, points: np.ndarray, size: int | None = None, to_crop: np.ndarray | None = None
    ) -> np.ndarray:
        """Crops [B, size, size, 3] (size: the library's crop side unless given) of the library mouths `picks` [B],
        reshaped so that their mouth points land on `points` [B, M, 2] (pixels of those crops); with `to_crop`
        [B, 2, 3], images [B, size, size, 3] whose pixels it maps into those crops'."""
        size = size or self.size
        scale = size / self.size  # the library's crop pixels -> the wanted crops' pixels
        to_window = self.to_window[picks].copy()
        to_window[:, :, :2] /= scale
        return reshape_mouths(self.windows[picks], self.points[picks] * scale, points, size, to_window, to_crop)

    def lip_detail(self, picks: np.ndarray) -> np.ndarray:
        """The fine detail [B] of mouths `picks` [B]: the variance of the grey Laplacian of their recorded pixels on
        their lips."""
        out = np.zeros(len(picks))
        for i, j in enumerate(picks):  # one window at a time: the library's windows are large
            m = self.to_window[j]
            outline = np.round(self.points[j][MOUTH_OUTER] @ m[:, :2].T + m[:, 2]).astype(np.int32)  # window pixels
            lips = cv2.fillConvexPoly(np.zeros(self.windows.shape[1:3], np.uint8), cv2.convexHull(outline), 1) > 0
            out[i] = cv2.Laplacian(cv2.cvtColor(self.windows[j], cv2.COLOR_RGB2GRAY), cv2.CV_32F)[lips].var()
        return out

    def choose(self, shapes: np.ndarray) -> np.ndarray:
        """Library indices [n] for wanted shapes [n, K] (same units as `self.shapes`): the cheapest Viterbi path."""
        k = min(CANDIDATES, len(self.shapes))
        dist, cand = NearestNeighbors(n_neighbors=k).fit(self.shapes).kneighbors(shapes)  # [n, k] each
        space = self.model.space
        have, want = (mouth_openings(space, s * space.scale) for s in (self.shapes, shapes))
        narrower = np.maximum(want[:, None] - have[cand], 0.0) / max(have.std(), 1e-9)
        used, where = np.unique(cand, return_inverse=True)  # only the candidates' detail is needed
        detail = self.lip_detail(used)[where].reshape(cand.shape)  # [n, k]
        softer = 1.0 - detail / np.maximum(detail.max(1, keepdims=True), 1e-9)
        dist = dist**2 + NARROWER * narrower**2 + SOFTER * softer**2  # [n, k]
        cost, back = dist[0], np.zeros(cand.shape, np.int64)
        for t in range(1, len(shapes)):
            a, b = cand[t - 1], cand[t]  # [k] previous and current candidates
            jump = np.sqrt(((self.thumbs[a][:, None] - self.thumbs[b][None]) ** 2).mean(-1))  # [k, k]
            follows = self.frames[b][None] == self.frames[a][:, None] + 1
            step = cost[:, None] + np.where(follows, 0.0, JUMP * jump + SWITCH)  # [k prev, k cur]
            back[t] = step.argmin(0)
            cost = step.min(0) + dist[t]
        path = np.empty(len(shapes), np.int64)
        path[-1] = int(cost.argmin())
        for t in range(len(shapes) - 1, 0, -1):
            path[t - 1] = back[t, path[t]]
        return cand[np.arange(len(shapes)), path]


def mouth_openings(space: ShapeSpace, coefficients: np.ndarray) -> np.ndarray:
    """The opening [N] of shapes [N, K]: their inner lips' height on the reference face, in eye distances."""
    inner = (space.mean + coefficients @ space.components).reshape(len(coefficients), -1, 3)[:, MOUTH_INNER]
    return np.ptp(inner[..., 1], axis=1)


def reshape_mouths(
    images: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    size: int | None = None,
    to_image: np.ndarray | None = None,
    to_crop: np.ndarray | None = None,
) -> np.ndarray:
    """Real mouths given other shapes: crops [B, size, size, 3] whose mouth points `src` [B, len(MOUTH), 2] (crop
    pixels) land on `dst`, by a thin-plate spline that holds the crop's border still. Nothing is drawn: every output
    pixel is a pixel of `images` [B, H, W, 3], moved (Lanczos on the lips, bicubic around them: RESHAPE_LIPS).
    `images` are the crops themselves, or the recorded frames' pixels around them, which `to_image` [B, 2, 3] maps
    crop pixels into: then each pixel is resampled once, not twice, and the lips keep their finest detail (README,
    "Sharp mouths"). `to_crop` [B, 2, 3] maps the output's pixels into the crops' when they differ (the frame's pixel
    grid, around a crop slightly off it)."""
    b, size = len(images), size or images.shape[1]
    edge = np.linspace(0.0, size - 1.0, RESHAPE_BORDER)
    still = np.concatenate(
        [np.stack(np.broadcast_arrays(edge, e), 1) for e in (0.0, size - 1.0)]
        + [np.stack(np.broadcast_arrays(e, edge[1:-1]), 1) for e in (0.0, size - 1.0)]
    )  # [4 RESHAPE_BORDER - 4, 2] points on the border
    ctrl = np.concatenate([dst, np.broadcast_to(still, (b, *still.shape))], 1)  # [B, n, 2]: where output pixels are
    move = np.concatenate([src - dst, np.zeros((b, *still.shape))], 1)  # [B, n, 2]: where to fetch them from
    n = ctrl.shape[1]
    affine = np.concatenate([np.ones((b, n, 1)), ctrl], 2)  # [B, n, 3]
    system = np.zeros((b, n + 3, n + 3))
    system[:, :n, :n] = _tps_kernel(ctrl, ctrl) + RESHAPE_SMOOTH * np.eye(n)
    system[:, :n, n:], system[:, n:, :n] = affine, affine.transpose(0, 2, 1)
    w = np.linalg.solve(system, np.concatenate([move, np.zeros((b, 3, 2))], 1))  # [B, n + 3, 2]
    at = (np.arange(RESHAPE_GRID) + 0.5) * size / RESHAPE_GRID - 0.5  # the coarse grid cv2.resize interpolates from
    coarse = np.broadcast_to(np.stack(np.meshgrid(at, at), -1).reshape(-1, 2), (b, RESHAPE_GRID**2, 2))
    disp = _tps_kernel(coarse, ctrl) @ w[:, :n] + np.concatenate([np.ones((b, len(at) ** 2, 1)), coarse], 2) @ w[:, n:]
    fine = np.stack(np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)), -1)
    identity = np.eye(2, 3)
    to_crop = np.broadcast_to(identity, (b, 2, 3)) if to_crop is None else to_crop
    to_image = np.broadcast_to(identity, (b, 2, 3)) if to_image is None else to_image
    out = np.empty((b, size, size, images.shape[-1]), images.dtype)
    grow = RESHAPE_LIPS * size
    for i, d in enumerate(disp.reshape(b, RESHAPE_GRID, RESHAPE_GRID, 2)):
        # fetch = to_image(to_crop(p) + field(p)) for output pixels p: the field is smooth (taken at p as is) and
        # to_image's linear part commutes with its interpolation, so it is applied on the coarse grid
        linear = to_image[i, :, :2]
        both = linear @ to_crop[i]  # to_crop, then to_image
        both[:, 2] += to_image[i, :, 2]
        field = cv2.resize((d @ linear.T).astype(np.float32), (size, size))
        fetch = cv2.transform(fine, both) + field  # [S, S, 2] in the pixels of images[i]
        out[i] = cv2.remap(images[i], fetch, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        to_out = cv2.invertAffineTransform(np.ascontiguousarray(to_crop[i]))
        lips = cv2.transform(dst[i][MOUTH_OUTER][None], to_out)[0]  # in output pixels
        x0, y0 = np.clip(np.floor(lips.min(0) - grow), 0, size).astype(int)
        x1, y1 = np.clip(np.ceil(lips.max(0) + grow) + 1, 0, size).astype(int)
        if x1 > x0 and y1 > y0:
            near = fetch[y0:y1, x0:x1]
            out[i, y0:y1, x0:x1] = cv2.remap(images[i], near, None, cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
    return out


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The thin-plate spline's radial basis r^2 log r between points a [B, N, 2] and b [B, M, 2]: [B, N, M]."""
    dx, dy = (a[:, :, None, j] - b[:, None, :, j] for j in (0, 1))
    r2 = dx * dx + dy * dy
    return 0.5 * r2 * np.log(np.maximum(r2, 1e-12))


def build_library(
    crops: Crops, video: str | os.PathLike, model: ShapeModel, frames: np.ndarray, data: DataInfo, progress: bool = True
) -> MouthLibrary:
    """The library of `frames` (its training block, with a face) of the recording `video` that `crops` were cut from:
    its pixels around the mouths, shapes, thumbnails, and what rendering from it needs (`data`, the mask, the shape
    `model`)."""
    if not crops.made_from(video):
        raise HygieError(f"{video}: is not the video these crops were cut from (its content differs); `dvc repro`.")
    space = model.space
    coefficients = space.coefficients(crops.landmarks[frames])
    points = crop_points(space, coefficients, crops.landmarks[frames], crops.boxes[frames], crops.size)
    ys, xs = np.nonzero(crops.mask)
    thumbs = (
        np.stack(
            [
                cv2.resize(
                    cv2.cvtColor(c[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], cv2.COLOR_RGB2GRAY),
                    (THUMB, THUMB),
                    interpolation=cv2.INTER_AREA,
                ).reshape(-1)
                for c in crops.crops[frames]
            ]
        ).astype(np.float32)
        / 255.0
    )
    windows, to_window = frame_windows(video, crops.fps, crops.boxes, frames, crops.size, progress)
    return MouthLibrary(
        windows,
        to_window,
        (coefficients / space.scale).astype(np.float32),
        frames.astype(np.int64),
        thumbs,
        points.astype(np.float32),
        crops.mask,
        data,
        model,
    )


def real_detail(
    drawn: np.ndarray, real: np.ndarray, own: np.ndarray, wanted: np.ndarray, own_points: np.ndarray
) -> np.ndarray:
    """Drawn mouths [B, S, S, 3] uint8 with real fine detail, as [B, D, D, 3] (D the side of `real` and `own`; all three
    show the same square): their Gaussian low-pass (DETAIL of the side: the shape, which follows the audio; in the open
    lips with `real`'s contrast, `_contrast`) plus the high-pass of real images. On the lips (the outer-lip hulls of the
    `wanted` mouth points [B, M, 2] and of the template's `own_points`, in D pixels, grown by LIPS_MARGIN) it is that of
    `real` (library mouths reshaped to `wanted`: their lips and teeth); elsewhere that of `own` (the template frame's
    own pixels) where it shows what was drawn or lies beyond FAR_MARGIN of both mouths (nothing there moves with
    speech), and `real`'s on the rest of both mouths' hulls (where the jaw moved: no template chin edge drawn twice).
    Near the template's edges its detail is moved onto the drawn ones (`_flow`): a collar drawn a few pixels off is
    sharpened there, not drawn twice; near an edge not drawn within reach it is left out. The regions, smooth, are found
    at S; the detail is added at D."""
    size, side = drawn.shape[1], real.shape[1]
    sigma = DETAIL * size

    def grown(region: np.ndarray, margin: float) -> np.ndarray:
        width = 2 * round(margin * sigma) + 1
        return cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))

    def feathered(region: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(region.astype(np.float32), (0, 0), 2 * sigma)

    def at(image: np.ndarray, n: int, interp: int = cv2.INTER_AREA) -> np.ndarray:
        return image if image.shape[0] == n else cv2.resize(image, (n, n), interpolation=interp)

    grid = np.stack(np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32)), -1)
    out = np.empty((len(drawn), side, side, 3), np.uint8)
    for i in range(len(drawn)):
        mouths, lips = np.zeros((2, size, size), np.uint8)
        for points in (wanted[i], own_points[i]):
            points = np.round(points * size / side).astype(np.int32)
            cv2.fillConvexPoly(mouths, cv2.convexHull(points), 1)
            cv2.fillConvexPoly(lips, cv2.convexHull(points[MOUTH_OUTER]), 1)
        lips = feathered(grown(lips, LIPS_MARGIN))
        d, r, o = (a[i].astype(np.float32) for a in (drawn, real, own))
        small = at(o, size // 4) - at(d, size // 4)  # coarse: 1/4 size will do
        differ = at(np.abs(cv2.GaussianBlur(small, (0, 0), AGREE_SCALE * sigma / 4)).mean(-1), size, cv2.INTER_LINEAR)
        far = 1.0 - feathered(grown(mouths, FAR_MARGIN))
        fits = np.maximum(np.exp(-((differ / AGREE_LEVELS) ** 2)), far)  # where the template's detail fits
        keep = (1.0 - lips) * fits  # the template's detail
        take = lips + (1.0 - lips) * (1.0 - fits) * feathered(mouths)  # the library mouth's
        lows = [cv2.GaussianBlur(at(image, size), (0, 0), sigma) for image in (r, o)]  # at S: nothing kept is finer
        coarse = _contrast(cv2.GaussianBlur(d, (0, 0), sigma), lows[0], wanted[i][MOUTH_INNER] * size / side, sigma)
        mix = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_LINEAR)  # a copy: _flow reads coarse
        for image, low, weight in ((r, lows[0], take), (o, lows[1], keep)):
            detail = image - at(low, side, cv2.INTER_LINEAR)
            if image is o:  # onto the drawn edges; none near an edge not drawn within reach
                flow, lost = _flow(coarse, low, sigma)
                flow = at(flow, side, cv2.INTER_LINEAR) * (side / size)
                detail = cv2.remap(detail, grid + flow, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                weight = weight * (1 - lost)
            mix += per_channel(at(weight, side, cv2.INTER_LINEAR)) * detail
        out[i] = np.clip(mix + 0.5, 0, 255).astype(np.uint8)
    return out


def _contrast(coarse: np.ndarray, real: np.ndarray, inner: np.ndarray, sigma: float) -> np.ndarray:
    """`coarse` ([S, S, 3] float, low-passed by `sigma` px; changed in place) with its contrast inside the open lips
    (the polygon of the `inner` lip points [N, 2], in S pixels) stretched about its mean there to that of `real`
    (low-passed alike), by a gain from 1 (never lowered) to TONE_MAX, feathered by sigma; as it is where the lips are
    (nearly) shut. Only the box the feather reaches is computed."""
    pad = math.ceil(4 * sigma)  # the feather's reach (OpenCV's kernel for float images)
    x0, y0 = np.clip(np.floor(inner.min(0)).astype(int) - pad, 0, coarse.shape[1::-1])  # the box it reaches
    x1, y1 = np.clip(np.ceil(inner.max(0)).astype(int) + pad + 1, (x0, y0), coarse.shape[1::-1])
    polygon = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(polygon, [np.round(inner - (x0, y0)).astype(np.int32)], 1)
    inside = polygon.astype(bool)
    if inside.sum() < 4 * sigma**2:  # a slit: its contrast is the lips' edges, not teeth against the dark
        return coarse
    box = coarse[y0:y1, x0:x1]
    ours, theirs = box[inside], real[y0:y1, x0:x1][inside]
    gain = np.clip((theirs.std(0) + 1.0) / (ours.std(0) + 1.0), 1.0, TONE_MAX)  # per channel; + 1: flat stays flat
    weight = per_channel(cv2.GaussianBlur(polygon.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_CONSTANT))
    box += weight * (box - ours.mean(0)) * (gain - 1.0)
    return coarse


def _flow(a: np.ndarray, b: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Where image b's edges lie in image a ([H, W, 3] float 0-255, both low-passed by `sigma` px): a flow [H, W, 2]
    float32, a(p) showing what b shows at p + flow(p), near b's edges alone (in flat skin a flow is a guess, and
    moving texture by a guess blurs it) and at most FLOW_MAX sigmas long. Edges are matched across, never along (the
    aperture problem of optical flow): on lines every sigma px along b's smoothed gradient, the steepest rise of each
    image, to a fraction of a pixel; their distance, averaged over sigma, weighted by the edges' rise. Also `lost`
    [H, W] 0-1: how much of b's edges there has no drawn edge within reach, FOUND as steep (its detail would land on
    nothing: a chin dropped further than FLOW_MAX)."""
    a, b = (cv2.cvtColor(np.clip(x, 0, 255).astype(np.float32), cv2.COLOR_RGB2GRAY) for x in (a, b))
    bx, by = cv2.Sobel(b, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(b, cv2.CV_32F, 0, 1) / 8

    def edge(slope: np.ndarray) -> np.ndarray:
        """How much a slope (grey levels per px) is an edge: none below half EDGE_LEVELS per sigma, whole from it."""
        return np.clip(2 * slope * sigma / EDGE_LEVELS - 1, 0, 1)

    edges = edge(cv2.magnitude(bx, by))
    reach = FLOW_MAX * sigma
    near = cv2.dilate(edges, np.ones((2 * round(reach) + 1,) * 2, np.uint8))  # where an edge may have moved to
    on = (slice(None, None, math.ceil(sigma)),) * 2  # a line every sigma px will do: the flow is smoothed by sigma
    normal = np.stack([cv2.GaussianBlur(g, (0, 0), reach / 2)[on] for g in (bx, by)], -1)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    t = np.arange(-round(reach) - 1, round(reach) + 2, dtype=np.float32)  # 1 px steps along it
    ys, xs = np.indices(a.shape, np.float32)[(slice(None), *on)]
    line_x = (xs[..., None] + t * normal[..., :1]).reshape(len(xs), -1)  # lines side by side
    line_y = (ys[..., None] + t * normal[..., 1:]).reshape(len(ys), -1)

    def steepest(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where on each line `image` rises most (a parabola through the three best rises) and by how much."""
        line = cv2.remap(image, line_x, line_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        line = line.reshape(*xs.shape, len(t))
        rise = line[..., 2:] - line[..., :-2]  # at t[1:-1]
        i = np.clip(rise.argmax(-1), 1, rise.shape[-1] - 2)[..., None]
        before, top, after = (np.take_along_axis(rise, i + k, -1)[..., 0] for k in (-1, 0, 1))
        curve = np.minimum(before - 2 * top + after, -1e-6)
        return t[1:-1][i[..., 0]] + np.clip(0.5 * (before - after) / curve, -1, 1), top

    (to, rise_a), (start, rise_b) = steepest(a), steepest(b)
    within = (np.abs(to) < t[-3]) & (np.abs(start - to) < reach)  # else the drawn edge lies beyond reach
    found = np.clip(rise_a / np.maximum(FOUND * rise_b, 1e-6), 0, 1) * within * (near[on] > 0)
    weight = np.clip(np.minimum(rise_a, rise_b), 0, None) * found  # a drawn edge as steep as b's counts as much
    strong = edge(rise_b / 2)  # rise_b is over 2 px
    flow, total = np.zeros(a.shape + (2,), np.float32), np.zeros(a.shape, np.float32)
    lost, lines = np.zeros(a.shape, np.float32), np.zeros(a.shape, np.float32)
    flow[on], total[on] = ((start - to) * weight)[..., None] * normal, weight
    lost[on], lines[on] = strong * (1 - found), 1
    total = np.maximum(cv2.GaussianBlur(total, (0, 0), sigma), 1e-6)
    flow = cv2.GaussianBlur(flow, (0, 0), sigma) / per_channel(total, 2)
    lost = cv2.GaussianBlur(lost, (0, 0), sigma) / cv2.GaussianBlur(lines, (0, 0), sigma)
    on_edges = cv2.GaussianBlur(near, (0, 0), sigma)
    length = cv2.magnitude(flow[..., 0], flow[..., 1])
    return flow * per_channel(on_edges * np.minimum(1.0, reach / np.maximum(length, 1e-6)), 2), np.clip(lost, 0, 1)
