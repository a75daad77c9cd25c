"""Retrieval: real mouths chosen by shape along a smooth path, pasted as they are, or shown to the generator."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import DATA

from hygie_lib import retrieve
from hygie_lib.cli import main as hygie
from hygie_lib.crops import crop_matrix
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError
from hygie_lib.render import Painter, audio_features, detail_size, render_frames, video_images
from hygie_lib.retrieve import DETAIL, FLOW_MAX, THUMB, MouthLibrary, build_library, real_detail, reshape_mouths
from hygie_lib.shape import MOUTH, MOUTH_INNER, MOUTH_OUTER, ShapeSpace
from hygie_lib.video import iter_frames


def library(n: int = 40, seed: int = 0) -> MouthLibrary:
    """Mouths whose brightness is their opening: frame i is i / n bright and open, and its shape, in spread units,
    3.5 i / n."""
    rng = np.random.default_rng(seed)
    bright = (np.arange(n) / n)[:, None].astype(np.float32)
    crops = np.repeat((bright[:, :, None, None] * 255).astype(np.uint8), 8, 1).repeat(8, 2).repeat(3, 3)
    thumbs = np.repeat(bright, THUMB * THUMB, 1) + rng.normal(0, 0.01, (n, THUMB * THUMB)).astype(np.float32)
    mask = np.ones((8, 8), np.uint8)
    points = np.zeros((n, len(MOUTH), 2), np.float32)  # no mouth points: these tests never reshape
    same = np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1))  # the windows are the crops
    frames = np.arange(n) * 3  # frames 0, 3, ...: none follows another
    opens = np.zeros((1, len(MOUTH), 3))
    opens[0, MOUTH_INNER[: len(MOUTH_INNER) // 2], 1] = 1.0  # one coefficient: the lower inner lip's drop
    space = ShapeSpace(np.zeros((1, 3)), np.zeros(opens.size), opens.reshape(1, -1), np.array([1 / 3.5]))
    model = SimpleNamespace(space=space)  # all that choosing reads of the shape model
    return MouthLibrary(crops, same, bright * 3.5, frames, thumbs, points, mask, DATA, model)


def clip_library(demo: dict, frames: np.ndarray | None = None) -> MouthLibrary:
    """The library of the demo fixture's template clip: `frames`, or all of them."""
    tpl = demo["template"]
    frames = np.arange(len(tpl.crops)) if frames is None else frames
    return build_library(tpl, demo["template_video"], demo["shapes"], frames, DATA, progress=False)


def test_the_path_follows_the_wanted_shapes_and_stays_smooth():
    lib = library()
    wanted = np.array([[0.1], [0.1], [0.5], [0.52], [0.9]], np.float32) * 3.5
    picks = lib.choose(wanted)
    np.testing.assert_allclose(lib.shapes[picks, 0], wanted[:, 0], atol=0.2)
    jittery = np.array([[0.50], [0.53], [0.50], [0.53], [0.50]], np.float32) * 3.5  # tiny wiggles: no flicker
    assert len(set(lib.choose(jittery))) == 1


def test_real_runs_of_the_recording_are_preferred():
    lib = library()
    lib = replace(lib, frames=np.arange(len(lib.shapes)))  # now frame i+1 follows i
    wanted = lib.shapes[10:20] - 0.04  # between library shapes: several are as near
    assert list(lib.choose(wanted)) == list(range(10, 20))  # the recording's own order wins


def test_a_mouth_less_open_than_wanted_costs_more(monkeypatch):
    lib = library()  # mouth i: shape 3.5 i / 40, opening i / 40
    wanted = np.array([[0.915]])  # 0.04 above mouth 10, 0.0475 below mouth 11
    space = lib.model.space
    np.testing.assert_allclose(retrieve.mouth_openings(space, lib.shapes * space.scale), lib.shapes[:, 0] / 3.5)
    assert lib.choose(wanted) == [11]  # mouth 10 is less open: reshaping could not open it
    monkeypatch.setattr(retrieve, "NARROWER", 0.0)
    assert lib.choose(wanted) == [10]  # the nearest, when being narrower costs nothing


def test_of_mouths_nearly_as_near_the_sharper_is_chosen(monkeypatch):
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)  # two mouths of one shape, the second blurred
    sharp[1] = cv2.GaussianBlur(sharp[0], (0, 0), 1.0)
    square = np.array([[1, 1], [6, 1], [6, 6], [1, 6]], np.float32)
    points = np.zeros((2, len(MOUTH), 2), np.float32)
    points[:, MOUTH_OUTER] = np.resize(square, (len(MOUTH_OUTER), 2))  # the lips: the crop's middle
    lib = library(2)
    shapes = np.array([[0.0], [0.05]])  # the blurred one a little nearer the wanted shape
    lib = replace(lib, windows=sharp[::-1].copy(), points=points, shapes=shapes, thumbs=np.zeros((2, 4)))
    detail = lib.lip_detail(np.arange(2))
    assert detail[1] > 2 * detail[0] > 0
    assert list(lib.choose(np.zeros((3, 1)))) == [1, 1, 1]
    monkeypatch.setattr(retrieve, "SOFTER", 0.0)
    assert list(lib.choose(np.zeros((3, 1)))) == [0, 0, 0]  # without the cost: the nearest


def test_reshaping_moves_the_mouth_points_and_holds_the_border():
    rng = np.random.default_rng(0)
    S = 64
    src = np.stack([rng.uniform(20, 44, (1, len(MOUTH))), rng.uniform(30, 50, (1, len(MOUTH)))], -1)  # [1, M, 2]
    image = cv2.GaussianBlur(rng.integers(0, 256, (1, S, S, 3), dtype=np.uint8)[0], (0, 0), 2.0)[None]
    np.testing.assert_array_equal(reshape_mouths(image, src, src), image)  # the same shape: the same pixels
    dot = np.zeros((1, S, S, 3), np.uint8)
    x, y = np.round(src[0, 0]).astype(int)
    dot[0, y - 1 : y + 2, x - 1 : x + 2] = 255  # a bright dot on the first mouth point
    down = src + [3.0, 4.0]  # the whole mouth 3 px right and 4 px down
    moved = reshape_mouths(dot, src, down)[0, ..., 0]
    yy, xx = np.unravel_index(moved.argmax(), moved.shape)
    assert abs(xx - (x + 3)) <= 1 and abs(yy - (y + 4)) <= 1  # the dot went with its point
    still = reshape_mouths(image, src, down)
    assert np.abs(still[:, :2].astype(int) - image[:, :2]).max() <= 3  # the crop's top rows (its border) stay put
    assert np.abs(still[:, 30:40].astype(int) - image[:, 30:40]).mean() > 3  # while the mouth moved


def test_reshaping_is_lanczos_on_the_lips_and_bicubic_around(monkeypatch):
    size, rng = 160, np.random.default_rng(1)
    image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)  # fine texture: where the kernels differ most
    src = _mouth_points(size)[None]
    dst = src + [0.5, 0.3]  # a sub-pixel move: every pixel resampled
    to_crop = np.array([[[1.04, 0.0, 12.0], [0.0, 1.04, -7.0]]])  # output pixels -> crop pixels (the frame's grid)
    out = reshape_mouths(image, src, dst, size, None, to_crop).astype(int)
    grow = retrieve.RESHAPE_LIPS * size
    monkeypatch.setattr(retrieve, "RESHAPE_LIPS", 10.0)  # the lips' box grown past the crop: Lanczos everywhere
    lanczos = reshape_mouths(image, src, dst, size, None, to_crop).astype(int)
    lips = (dst[0, MOUTH_OUTER] - to_crop[0, :, 2]) / 1.04  # in output pixels
    x0, y0 = np.floor(lips.min(0) - grow).astype(int)
    x1, y1 = np.ceil(lips.max(0) + grow).astype(int)
    lips = (slice(None), slice(y0, y1), slice(x0, x1))
    np.testing.assert_array_equal(out[lips], lanczos[lips])
    around = np.ones(out.shape[:3], bool)
    around[lips] = False
    assert 0 < np.abs(out - lanczos)[around].mean() < 20  # bicubic: near Lanczos on noise, not the same


def _mouth_points(size: int) -> np.ndarray:
    """Mouth points (MOUTH's layout) in a crop of `size`: lips around (80, 45) and a jaw down to row 110 (at 160)."""
    t = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
    arc = np.linspace(0.0, np.pi, len(MOUTH) - 40)  # the jaw: a half ellipse below the lips
    xy = [(80 + 30 * np.cos(t), 45 + 10 * np.sin(t)), (80 + 20 * np.cos(t), 45 + 4 * np.sin(t))]
    xy.append((80 + 50 * np.cos(arc), 40 + 70 * np.sin(arc)))
    return np.concatenate([np.stack(p, 1) for p in xy]).astype(np.float32) * size / 160


def test_blend_keeps_the_drawn_shape_with_real_detail_on_the_mouth_and_the_templates_where_nothing_moved():
    size, rng = 320, np.random.default_rng(0)  # real_detail scales with the side: 320 px, so regions hold many pixels
    at = lambda y0, y1, x0, x1: (slice(2 * y0, 2 * y1), slice(2 * x0, 2 * x1))  # noqa: E731  (160 px coordinates)
    ys, xs = np.mgrid[:size, :size].astype(np.float32) * 160 / size
    drawn = np.repeat((50 + 0.6 * ys + 0.3 * xs)[..., None], 3, 2)  # smooth: the shape, no detail
    real_fine, own_fine = (rng.normal(0, 12, (size, size, 1)).repeat(3, 2) for _ in range(2))
    moved = np.zeros_like(drawn)
    moved[at(70, 160, 80, 160)] = -80  # the template shows something else there (a collar where the drawn jaw now is)
    real, own = (np.clip(drawn + d, 0, 255).astype(np.uint8) for d in (30 + real_fine, own_fine + moved))
    points = _mouth_points(size)[None]
    out = real_detail(drawn.astype(np.uint8)[None], real[None], own[None], points, points)[0].astype(float)
    detail = out - drawn
    corr = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    regions = {
        "lips": (at(42, 49, 65, 96), real_fine, own_fine),
        "cheek, as the template shows it": (at(75, 91, 38, 51), own_fine, real_fine),
        "jaw, moved in the template": (at(78, 96, 92, 105), real_fine, own_fine),
        "far below both mouths": (at(140, 156, 100, 141), own_fine, real_fine),
    }
    for name, (region, source, other) in regions.items():
        assert corr(detail[region], source[region]) > 0.85 and abs(corr(detail[region], other[region])) < 0.1, name
    low = lambda a: cv2.GaussianBlur(a.astype(np.float32), (0, 0), 3 * DETAIL * size)[40:-40, 40:-40]  # noqa: E731
    assert np.abs(low(out) - low(drawn)).max() < 2.0  # the coarse image is the drawn one
    same = real_detail(real[None], real[None], real[None], points, points)[0]
    np.testing.assert_array_equal(same, real)  # nothing to add when the drawing is the real mouth


def test_blend_gives_the_open_mouth_the_library_mouths_contrast_up_to_tone_max(monkeypatch):
    """Teeth against the dark of the mouth: the generator draws them paler than they are (an average); inside the open
    lips the drawn tones are stretched about their mean to the library mouth's contrast, at most TONE_MAX times."""
    size = 320
    ramp = np.clip(np.arange(size, dtype=np.float32) - 160, -100, 100)[None, :, None].repeat(size, 0).repeat(3, 2)
    drawn, real = (np.clip(120 + k * ramp, 0, 255).astype(np.uint8) for k in (0.4, 1.0))  # smooth: no fine detail
    points = _mouth_points(size)[None]  # the open lips: x 120-200, y 82-98 (an ellipse)
    shut = points.copy()
    shut[0, MOUTH_INNER, 1] = 90.0  # the same mouth, its lips closed

    def slope(wanted: np.ndarray) -> float:
        """The output's rise per px along the open lips' middle row (the drawn one's: 0.4, the library's: 1.0)."""
        out = real_detail(drawn[None], real[None], drawn[None], wanted, points)[0].astype(float).mean(-1)
        assert np.abs(out[:40] - drawn[:40].mean(-1)).max() <= 1  # far above the mouth: as drawn
        assert abs(out[90, 160] - 120) <= 1  # the mean stays: no mouth darker or brighter, only more contrast
        return float(np.polyfit(np.arange(140, 181), out[90, 140:181], 1)[0])

    assert 0.7 < slope(points) <= 0.4 * retrieve.TONE_MAX  # 0.4 x (1 + 0.89 x (2 - 1)): the cap, feathered
    assert abs(slope(shut) - 0.4) < 0.02  # closed lips: nothing inside to stretch
    monkeypatch.setattr(retrieve, "TONE_MAX", 10.0)
    assert 0.8 < slope(points) < 1.0  # uncapped: towards the library's (24 / 10 over the lips, +1 levels each)


def _collar(size: int, lower: float) -> np.ndarray:
    """A collar's V far below the mouths in a [size, size, 3] float image: skin (80) above, a white collar (220)
    below, its edge at row 250 + lower in the middle, anti-aliased as a camera's edges are (averaged from 4x)."""
    ys, xs = (np.mgrid[: 4 * size, : 4 * size] + 0.5) / 4 - 0.5
    v = np.where(ys < 250 + lower + np.abs(xs - 160) / 2, 80.0, 220.0).astype(np.float32)
    return cv2.resize(v, (size, size), interpolation=cv2.INTER_AREA)[..., None].repeat(3, 2)


@pytest.mark.parametrize("lower", [-8, -4, 4, 8, 12, -30, 30])
def test_the_templates_edge_sharpens_the_drawn_one_instead_of_doubling_it(lower):
    """A collar that the generator draws `lower` px lower (or higher) than the template shows it: the template's
    detail is moved onto the drawn edge, which it sharpens, not added where the template had it (a line along the
    collar, down to 36 grey levels where the skin is 80 without the move, 68 with optical flow; README, "Sharp
    mouths"). Drawn further than the move reaches (FLOW_MAX sigmas: 20 px here), it is left out, soft but single."""
    size = 320
    own = _collar(size, 0).astype(np.uint8)  # the jaw ends at row 220
    drawn = cv2.GaussianBlur(_collar(size, lower), (0, 0), size / 32).astype(np.uint8)  # soft
    points = _mouth_points(size)[None]
    out = real_detail(drawn[None], own[None], own[None], points, points)[0].astype(float).mean(-1)
    arms = out[230:, 90:231]  # the V's arms, clear of the square's corners
    assert arms.min() >= 80 - 10 and arms.max() <= 220 + 10  # no line darker than the skin, or brighter than the collar
    if abs(lower) > FLOW_MAX * DETAIL * size:  # beyond reach: the drawn edge as it was drawn (a line: 74-86 levels off)
        assert np.abs(arms - drawn[230:, 90:231].mean(-1)).max() < 20
        return
    for x in (110, 210):  # the V's edge at row 275 in the template, 275 + lower as drawn
        steps = out[232:, x] - out[230:-2, x]  # rise over 2 px
        assert abs(steps.argmax() + 231 - (275 + lower)) <= 2 and steps.max() > 100, x  # sharp, where drawn


def test_library_of_a_clip_round_trips_and_gives_its_crops_at_their_own_shapes(tmp_path, demo):
    tpl, frames = demo["template"], np.arange(0, len(demo["template"].crops), 2)
    lib = clip_library(demo, frames)
    assert lib.size == 32 and len(lib.windows) == len(frames) and lib.thumbs.shape == (len(frames), THUMB**2)
    assert lib.windows.shape[1] > tpl.boxes[frames, 2].max()  # the recorded pixels, not resampled to 32 px
    own = lib.mouths(np.arange(len(frames)), lib.points)
    diff = np.abs(own.astype(int) - tpl.crops[frames])  # at its own shape a mouth is its crop:
    grow = retrieve.RESHAPE_LIPS * lib.size
    for d, lips in zip(diff, lib.points[:, MOUTH_OUTER]):  # on the lips' box Lanczos, as the crops were made
        (x0, y0), (x1, y1) = np.floor(lips.min(0) - grow).astype(int), np.ceil(lips.max(0) + grow).astype(int)
        assert d[max(y0, 0) : y1, max(x0, 0) : x1].max() <= 2
    assert diff.mean() < 0.3 and diff.max() <= 6  # bicubic around: a few levels at most, rarely
    lib.save(tmp_path / "library.npz")
    back = MouthLibrary.load(tmp_path / "library.npz")
    np.testing.assert_array_equal(back.frames, frames)
    np.testing.assert_array_equal(back.points, lib.points)
    np.testing.assert_array_equal(back.windows, lib.windows)
    assert back.points.shape == (len(frames), len(MOUTH), 2) and np.isfinite(back.points).all()
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(HygieError, match="not a mouth library"):
        MouthLibrary.load(tmp_path / "junk.npz")
    with pytest.raises(HygieError, match="not the video these crops were cut from"):
        build_library(tpl, demo["audio"], demo["shapes"], frames, DATA, progress=False)


def test_a_mouth_reshaped_from_the_recorded_pixels_keeps_the_detail_a_reshaped_crop_loses():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, 220, 220, 3), dtype=np.uint8)  # detail up to the finest scale, like lips
    box, S = np.array([110.3, 109.6, 199.0]), 160  # a 199 px mouth box cropped to 160 px, as on the demo speaker
    to_frame = cv2.invertAffineTransform(crop_matrix(box, S))[None]
    crop = cv2.warpAffine(frame[0], crop_matrix(box, S), (S, S), flags=cv2.INTER_LANCZOS4)[None]
    src = _mouth_points(S)[None]
    dst = src + rng.uniform(-1.0, 1.0, src.shape)  # another shape, a pixel or less away: every pixel moves a little
    lips = (slice(30, 60), slice(45, 115))  # the lips' box (rows 35-55, columns 50-110): resampled with Lanczos
    energy = lambda a: cv2.Laplacian(a[0].astype(np.float32), cv2.CV_32F)[lips].var()  # noqa: E731
    once = energy(reshape_mouths(frame, src, dst, S, to_frame))
    twice = energy(reshape_mouths(crop, src, dst))
    assert once > 1.15 * twice and once > 0.9 * energy(crop)


def test_retrieve_pastes_library_mouths_and_blend_shows_them_to_the_model(demo):
    tpl, model = demo["template"], MouthModel(demo["model"], "torch")
    lib = clip_library(demo)
    lib = replace(lib, windows=np.full_like(lib.windows, 255))  # white mouths: easy to spot
    mel = audio_features(demo["audio"], model.data)
    frames = {
        m: list(render_frames(model, tpl, demo["template_video"], mel, blend="feather", mouth=m, library=lib))
        for m in ("generate", "retrieve", "blend")
    }
    cx, cy, _ = tpl.boxes[0]
    centre = lambda f: f[int(cy) - 2 : int(cy) + 3, int(cx) - 2 : int(cx) + 3].mean()  # noqa: E731
    assert centre(frames["retrieve"][0]) > 240 > centre(frames["generate"][0])  # the library's mouth, pasted
    assert not np.array_equal(frames["blend"][0], frames["generate"][0])  # the reference changed what was drawn
    with pytest.raises(HygieError, match="need a mouth library"):
        next(render_frames(model, tpl, demo["template_video"], mel, mouth="retrieve"))


def test_real_mouths_are_composed_on_the_frames_own_pixel_grid(demo):
    """A template's own mouths, retrieved at their own shapes, come back nearly as they were: composed on the frame's
    pixel grid, around the largest mouth box (`detail_size`), not resampled through the model's 32 px crops."""
    tpl, model, n = demo["template"], MouthModel(demo["model"], "torch"), 12
    lib, side = clip_library(demo), tpl.boxes[tpl.face, 2].max()
    assert tpl.size == 32 and side + 2 <= detail_size(tpl) < side + 3
    real = [f for _, f in zip(range(n), iter_frames(demo["template_video"], tpl.fps))]
    wanted, picks = model.shapes.space.coefficients(tpl.landmarks[:n]), np.arange(n)  # each frame its own mouth
    x0, y0, x1, y1 = (tpl.boxes[:n, :2].mean(0).repeat(2) + np.array([-1, -1, 1, 1]) * 0.3 * side).astype(int)
    box = lambda f: f[y0:y1, x0:x1].astype(np.float32)  # noqa: E731
    energy = lambda f: cv2.Laplacian(cv2.cvtColor(box(f), cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()  # noqa: E731
    images = video_images(demo["template_video"], tpl.fps, len(tpl.crops), n)
    kw = {"blend": "feather", "mouth": "retrieve", "library": lib}
    out = [image for _, image, _ in Painter(model, tpl, images, name="t", **kw).paint(n, None, picks, wanted)]
    error = np.mean([np.abs(box(o) - box(r)).mean() for o, r in zip(out, real)])
    ratio = np.mean([energy(o) / energy(r) for o, r in zip(out, real)])
    assert error < 0.05 and ratio > 0.99  # 2.7 levels and 0.62 of the energy through the 32 px crops


def test_render_draws_a_batch_while_it_starts_the_next_and_pastes_the_last(demo, monkeypatch):
    """render_frames runs `Painter`'s three steps in three threads (README, "Figures"): each draw waits here for the
    next batch's start to begin, each paste for the next draw; the frames are those of `paint`, one batch at a time."""
    tpl, model, lib, batch = demo["template"], MouthModel(demo["model"], "torch"), clip_library(demo), 16
    mel = audio_features(demo["audio"], model.data)
    heard, wanted = model.hear(mel), model.mouth_shapes(mel)
    picks = lib.choose(wanted / model.shapes.space.scale)
    images = video_images(demo["template_video"], tpl.fps, len(tpl.crops), mel.n_frames)
    painter = Painter(model, tpl, images, name="t", mouth="blend", library=lib)
    alone = [
        image
        for k0 in range(0, mel.n_frames, batch)
        for _, image, _ in painter.paint(
            min(batch, mel.n_frames - k0), *(a[k0 : k0 + batch] for a in (heard, picks, wanted))
        )
    ]
    n = len(range(0, mel.n_frames, batch))
    began = {step: [threading.Event() for _ in range(n + 1)] for step in ("start", "draw")}
    overlapped = []

    def step(name: str, waits_for: str | None):
        calls, run = iter(range(n)), getattr(Painter, name)

        def wrapped(self, *args):
            k = next(calls)
            if name in began:
                began[name][k].set()
            out = run(self, *args)
            if waits_for and k + 1 < n:
                overlapped.append(began[waits_for][k + 1].wait(timeout=10))
            return out

        monkeypatch.setattr(Painter, name, wrapped)

    for name, waits_for in (("start", None), ("draw", "start"), ("paste", "draw")):
        step(name, waits_for)
    out = list(render_frames(model, tpl, demo["template_video"], mel, batch=batch, mouth="blend", library=lib))
    assert n >= 3 and overlapped == [True] * (2 * (n - 1))
    assert len(out) == len(alone) == mel.n_frames and all(np.array_equal(a, b) for a, b in zip(out, alone))


@pytest.mark.parametrize("mouth", ["generate", "retrieve", "blend"])
def test_a_batch_without_any_face_passes_through_in_every_mode(demo, mouth):
    tpl, model = demo["template"], MouthModel(demo["model"], "torch")
    tpl = replace(tpl, face=np.arange(len(tpl.crops)) >= 8)  # the first batch of 8 has no face
    mel = audio_features(demo["audio"], model.data)
    lib = clip_library(demo, np.arange(8, len(tpl.crops)))
    out = list(render_frames(model, tpl, demo["template_video"], mel, batch=8, mouth=mouth, library=lib))
    source = [f for _, f in zip(range(8), iter_frames(demo["template_video"], tpl.fps))]
    assert len(out) == mel.n_frames and all(np.array_equal(o, s) for o, s in zip(out, source))


def test_render_command_retrieves_from_the_given_library(demo, tmp_path, capsys):
    clip_library(demo).save(tmp_path / "library.npz")
    args = ["render", "--model", str(demo["model"]), "--template", str(demo["template_video"])]
    args += ["--audio", str(demo["audio"]), "--mouth", "retrieve", "--blend", "feather", "--backend", "torch"]
    assert hygie([*args, "--library", str(tmp_path / "library.npz"), "--out", str(tmp_path / "o.mp4")]) == 0
    assert sum(1 for _ in iter_frames(tmp_path / "o.mp4", 25)) == 75
    assert hygie([*args, "--library", str(tmp_path / "none.npz"), "--out", str(tmp_path / "p.mp4")]) == 2
    assert "none.npz" in capsys.readouterr().err and not (tmp_path / "p.mp4").exists()


def test_the_library_alone_renders_the_fast_path(demo, tmp_path):
    """Before the generator has trained, the library (real mouths, the shape model, how crops were made) renders."""
    tpl = demo["template"]
    clip_library(demo).save(tmp_path / "library.npz")
    fast = MouthModel(tmp_path / "library.npz")
    assert fast.data == DATA and fast.shapes.space.k == demo["shapes"].space.k
    mel = audio_features(demo["audio"], fast.data)
    lib = MouthLibrary.load(tmp_path / "library.npz")
    frames = list(render_frames(fast, tpl, demo["template_video"], mel, mouth="retrieve", library=lib))
    assert len(frames) == mel.n_frames
    with pytest.raises(HygieError, match="draws no mouths, so render.mouth generate needs models/best.pt"):
        next(render_frames(fast, tpl, demo["template_video"], mel, mouth="generate"))


def test_the_render_command_reads_a_library_given_as_model_and_library_once(demo, tmp_path, monkeypatch):
    clip_library(demo).save(tmp_path / "library.npz")
    loads = []
    load = MouthLibrary.load.__func__
    monkeypatch.setattr(MouthLibrary, "load", classmethod(lambda cls, path: loads.append(path) or load(cls, path)))
    lib = str(tmp_path / "library.npz")
    args = ["render", "--model", lib, "--library", lib, "--template", str(demo["template_video"])]
    args += ["--audio", str(demo["audio"]), "--mouth", "retrieve", "--blend", "feather"]
    assert hygie([*args, "--out", str(tmp_path / "o.mp4")]) == 0 and (tmp_path / "o.mp4").is_file()
    assert len(loads) == 1  # the fast path's model is the library's shape model: no second read of its mouths
