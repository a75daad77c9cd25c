"""Tests for the synthetic talking speaker (hygie_lib.synth): determinism, truth vs audio, face vs truth, files."""

from __future__ import annotations

import math
from pathlib import Path

import mediapipe as mp
import numpy as np
import pandas as pd
import pytest

from hygie_lib import synth
from hygie_lib.audio import load_audio, read_wav
from hygie_lib.video import iter_frames, probe_video

FPS, SR = 25, 16000
SHORT = {"train_seconds": 3.0, "template_seconds": 1.0, "audio_seconds": 2.0, "progress": False}


def _frame_rms(y: np.ndarray, n_frames: int, half_window: float) -> np.ndarray:
    """RMS of the audio within +-half_window seconds of each frame time."""
    h = int(half_window * SR)
    centres = np.round(np.arange(n_frames) / FPS * SR).astype(int)
    return np.array([np.sqrt(np.mean(y[max(0, c - h) : c + h + 1] ** 2)) for c in centres])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    return synth.make_demo_data(tmp_path_factory.mktemp("demo"), seed=7, **SHORT)


@pytest.fixture(scope="module")
def mesh():
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as m:
        yield m


def _landmarks(mesh, img: np.ndarray) -> np.ndarray | None:
    result = mesh.process(img)
    if not result.multi_face_landmarks:
        return None
    return np.array([[p.x * img.shape[1], p.y * img.shape[0]] for p in result.multi_face_landmarks[0].landmark])


# ---------------------------------------------------------------- determinism


def test_speech_plan_is_deterministic_per_seed():
    y1, t1 = synth.speech_plan(np.random.default_rng(3), 3.0, FPS, SR)
    y2, t2 = synth.speech_plan(np.random.default_rng(3), 3.0, FPS, SR)
    y3, t3 = synth.speech_plan(np.random.default_rng(4), 3.0, FPS, SR)
    assert y1.dtype == np.float32 and y1.shape == (3 * SR,)
    np.testing.assert_array_equal(y1, y2)
    pd.testing.assert_frame_equal(t1, t2)
    assert not np.array_equal(y1, y3)
    assert not t1["openness"].equals(t3["openness"])


def test_make_demo_data_same_seed_same_bytes(demo, tmp_path):
    again = synth.make_demo_data(tmp_path / "again", seed=7, **SHORT)
    other = synth.make_demo_data(tmp_path / "other", seed=8, **SHORT)
    for key in ("new_audio", "truth"):
        assert demo[key].read_bytes() == again[key].read_bytes(), key
        assert demo[key].read_bytes() != other[key].read_bytes(), key
    pd.testing.assert_frame_equal(pd.read_parquet(demo["truth"]), pd.read_parquet(again["truth"]))
    # x264 is deterministic for a given thread count, which is fixed within one process on one machine
    for key in ("train_video", "template"):
        assert demo[key].read_bytes() == again[key].read_bytes(), key
        assert demo[key].read_bytes() != other[key].read_bytes(), key


def test_render_face_is_deterministic():
    a = synth.render_face(0.4, -0.3, 0.5, (2.0, -1.0, 1.0, 1.01), np.random.default_rng(1))
    b = synth.render_face(0.4, -0.3, 0.5, (2.0, -1.0, 1.0, 1.01), np.random.default_rng(1))
    assert a.shape == (synth.SIZE, synth.SIZE, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(synth.render_face(0.4, -0.3), synth.render_face(0.4, -0.3))  # no rng: no noise


# ---------------------------------------------------------------- truth vs audio


@pytest.mark.parametrize("seconds", [3.0, 2.01, 0.5])
def test_truth_has_one_row_per_frame(seconds):
    y, truth = synth.speech_plan(np.random.default_rng(0), seconds, FPS, SR)
    n = math.ceil(seconds * FPS)
    assert len(y) == round(seconds * SR)
    assert list(truth.columns) == ["frame", "time", "openness", "width"]
    np.testing.assert_array_equal(truth["frame"], np.arange(n))
    np.testing.assert_allclose(truth["time"], np.arange(n) / FPS)
    assert truth["openness"].between(0, 1).all() and truth["width"].between(-1, 1).all()
    assert np.abs(y).max() == pytest.approx(0.5, abs=1e-3)


def test_truth_follows_the_audio():
    y, truth = synth.speech_plan(np.random.default_rng(11), 30.0, FPS, SR)
    openness = truth["openness"].to_numpy()
    window = _frame_rms(y, len(truth), synth.COARTICULATION_REACH)  # everything frame t may depend on
    silent = window < 0.01 * window.max()
    assert silent.sum() > 0.1 * len(truth), "expected pauses in 30 s of speech"
    assert openness[silent].max() < 0.01  # mouth closed when nothing is heard around the frame
    local = _frame_rms(y, len(truth), 0.02)
    assert np.corrcoef(local, openness)[0, 1] > 0.5  # loud vowels open the mouth
    assert openness.max() > 0.8 and (truth["width"] > 0.3).any() and (truth["width"] < -0.3).any()


# ---------------------------------------------------------------- the face follows the truth


def test_face_mesh_sees_the_mouth_follow_openness(mesh):
    rng = np.random.default_rng(5)
    chains = synth.lip_chains()
    upper, lower = chains["inner_upper"], chains["inner_lower"]
    eyes = synth.eye_chains()
    openness = rng.permutation(np.linspace(0, 1, 40))
    width = rng.uniform(-1, 1, 40)
    blink = np.tile([0.0, 0.0, 0.5, 1.0], 10)
    gaps, widths, eye_open = [], [], []
    for o, w, b in zip(openness, width, blink):
        lo, hi = np.array(synth.NEUTRAL_POSE) - synth.SWAY, np.array(synth.NEUTRAL_POSE) + synth.SWAY
        img = synth.render_face(o, w, b, tuple(rng.uniform(lo, hi)), rng)
        lm = _landmarks(mesh, img)
        assert lm is not None, f"no face found at openness={o:.2f} width={w:.2f} blink={b}"
        eye_distance = np.linalg.norm(lm[np.concatenate(eyes[0])].mean(0) - lm[np.concatenate(eyes[1])].mean(0))
        gaps.append(np.linalg.norm(lm[upper[len(upper) // 2]] - lm[lower[len(lower) // 2]]) / eye_distance)
        widths.append(np.linalg.norm(lm[upper[0]] - lm[upper[-1]]) / eye_distance)
        eye_open.append(
            np.mean([np.linalg.norm(lm[u[len(u) // 2]] - lm[d[len(d) // 2]]) for u, d in eyes]) / eye_distance
        )
    gaps, eye_open = np.array(gaps), np.array(eye_open)
    assert np.corrcoef(openness, gaps)[0, 1] > 0.9
    assert gaps[openness < 0.05].max() < 0.05  # closed reads as closed
    assert np.corrcoef(width, widths)[0, 1] > 0.8  # spread / round shows
    assert eye_open[blink == 1.0].max() < 0.5 * eye_open[blink == 0.0].min()


def test_mouth_fields_vanish_at_their_border():
    """No seams: the warp only touches its region, and fades to nothing at the region's edge."""
    rig = synth._rig()
    for pose in [synth.NEUTRAL_POSE, (5.0, -4.0, 2.0, 1.02), (-5.0, 4.0, -2.0, 0.98)]:
        rest = synth.render_face(0.0, 0.0, 0.0, pose).astype(int)
        rows, cols = synth._screen_region(rig.mouth_box, rig.pivot, pose)
        for openness, width in [(1.0, -1.0), (1.0, 1.0), (0.0, -1.0), (0.5, 0.5)]:
            diff = np.abs(synth.render_face(openness, width, 0.0, pose).astype(int) - rest).max(axis=-1)
            assert diff.sum() > 1000  # something moved
            inside = np.zeros_like(diff, bool)
            inside[rows.start + 1 : rows.stop - 1, cols.start + 1 : cols.stop - 1] = True
            assert diff[~inside].max() <= 1, (pose, openness, width)


# ---------------------------------------------------------------- the files


def test_make_demo_data_writes_the_four_files(demo, capsys):
    out = demo["truth"].parent
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["train_video.mp4", "template_idle.mp4", "new_audio.wav", "demo_truth.parquet"]
    )
    assert set(demo) == {"train_video", "template", "new_audio", "truth"}
    assert "frame" not in capsys.readouterr().err  # progress=False: no progress bar

    train = probe_video(demo["train_video"])
    assert train.has_audio and train.fps == pytest.approx(FPS, abs=0.01)
    assert (train.width, train.height) == (synth.SIZE, synth.SIZE)
    assert train.duration == pytest.approx(SHORT["train_seconds"], abs=0.05)
    template = probe_video(demo["template"])
    assert not template.has_audio and template.fps == pytest.approx(FPS, abs=0.01)
    assert template.duration == pytest.approx(SHORT["template_seconds"], abs=0.05)

    y, sr = read_wav(demo["new_audio"])
    assert sr == SR and len(y) == round(SHORT["audio_seconds"] * SR)

    truth = pd.read_parquet(demo["truth"])
    assert list(truth.columns) == ["clip", "frame", "time", "openness", "width"]
    counts = truth["clip"].value_counts()
    assert counts["train"] == math.ceil(SHORT["train_seconds"] * FPS)
    assert counts["new_audio"] == math.ceil(SHORT["audio_seconds"] * FPS)
    assert len(load_audio(demo["train_video"], SR)) == pytest.approx(SHORT["train_seconds"] * SR, rel=0.02)


def test_train_video_frame_t_shows_truth_t(demo):
    truth = pd.read_parquet(demo["truth"])
    openness = truth.loc[truth["clip"] == "train", "openness"].to_numpy()
    x0, y0, x1, y1 = (int(v) for v in synth._rig().core_box)
    darkness = np.array([255.0 - f[y0:y1, x0:x1].mean() for f in iter_frames(demo["train_video"], FPS)])
    assert len(darkness) == len(openness)
    corr = {
        lag: np.corrcoef(
            darkness[max(lag, 0) : len(darkness) + min(lag, 0)], openness[max(-lag, 0) : len(openness) + min(-lag, 0)]
        )[0, 1]
        for lag in (-1, 0, 1)
    }
    assert corr[0] > 0.8 and corr[0] > corr[-1] and corr[0] > corr[1], corr
