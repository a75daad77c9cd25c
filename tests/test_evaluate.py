import cv2
import numpy as np
import pytest

from hygie_lib.evaluate import corr_gap_interval
from hygie_lib.metrics import (
    MAX_LAG,
    lag_correlation,
    lip_distance,
    lip_sharpness,
    sharpness,
    sync,
    teeth_figures,
    teeth_fraction,
)


def test_sync_finds_the_lag_between_two_signals():
    rng = np.random.default_rng(0)
    real = np.convolve(rng.normal(size=400), np.ones(5) / 5, mode="same")
    late = np.roll(real, 3)  # generated mouth 3 frames late
    corr, offset = sync(late, real)
    assert offset == -3 and corr < lag_correlation(late, real, -3)
    assert sync(real, real) == (pytest.approx(1.0), 0)
    with_gaps = real.copy()
    with_gaps[::7] = np.nan  # frames where FaceMesh found no face are skipped, not zero
    assert sync(with_gaps, real)[1] == 0 and abs(sync(np.roll(real, 40), real)[1]) <= MAX_LAG


def test_corr_gap_interval_tells_a_real_gap_from_noise():
    rng = np.random.default_rng(0)
    real = np.convolve(rng.normal(size=300), np.ones(5) / 5, "same")  # smooth, like an aperture
    near, far = real + rng.normal(0, 0.05, 300), real + rng.normal(0, 0.5, 300)
    lo, hi = corr_gap_interval(near, far, real)
    assert 0 < lo < hi  # near follows the real signal better: the whole interval is above 0
    other = real + rng.normal(0, 0.05, 300)  # as near, other noise
    lo, hi = corr_gap_interval(near, other, real)
    assert lo < 0 < hi and hi - lo < 0.05
    assert corr_gap_interval(near, near, real) == (0.0, 0.0)


def test_lip_distance_is_in_mouth_widths_and_ignores_head_motion():
    from hygie_lib.landmarks import INNER_LIPS, OUTER_LIPS

    rng = np.random.default_rng(1)

    lm = rng.normal(200, 30, (4, 478, 3)).astype(np.float32)
    assert np.allclose(lip_distance(lm, lm), 0)
    moved = lm.copy()
    moved[:, np.concatenate([OUTER_LIPS, INNER_LIPS]), 1] += 10  # lips 10 px lower, eyes in place
    width = np.ptp(lm[:, OUTER_LIPS, 0], axis=1)
    np.testing.assert_allclose(lip_distance(moved, lm), 10 / width, rtol=1e-4)
    np.testing.assert_allclose(lip_distance(lm + 25, lm), 0, atol=1e-4)  # a head shift is not charged


def test_sharpness_sees_blur_inside_the_mouth_mask_only():
    from hygie_lib.crops import mouth_mask

    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    box, mask = np.array([150.0, 130.0, 100.0]), mouth_mask(64, 1.3)
    blurred = frame.copy()
    blurred[80:180, 100:200] = cv2.GaussianBlur(frame, (0, 0), 1.5)[80:180, 100:200]  # the mouth box, softened
    assert sharpness(blurred, box, mask) < 0.2 * sharpness(frame, box, mask)
    outside = cv2.GaussianBlur(frame, (0, 0), 1.5)
    outside[80:180, 100:200] = frame[80:180, 100:200]  # everything but the box softened: the mouth is as sharp
    assert sharpness(outside, box, mask) == pytest.approx(sharpness(frame, box, mask), rel=0.02)


def test_lip_sharpness_sees_the_lips_alone():
    from hygie_lib.landmarks import OUTER_LIPS

    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    landmarks = np.zeros((478, 3), np.float32)
    angles = np.linspace(0, 2 * np.pi, len(OUTER_LIPS), endpoint=False)
    landmarks[OUTER_LIPS, 0], landmarks[OUTER_LIPS, 1] = 160 + 50 * np.cos(angles), 150 + 25 * np.sin(angles)
    soft_lips = frame.copy()
    soft_lips[115:185, 100:220] = cv2.GaussianBlur(frame, (0, 0), 1.5)[115:185, 100:220]  # the lips and a margin
    assert lip_sharpness(soft_lips, landmarks) < 0.2 * lip_sharpness(frame, landmarks)
    soft_chin = frame.copy()
    soft_chin[190:] = cv2.GaussianBlur(frame, (0, 0), 1.5)[190:]  # below the lips (chin, collar): not counted
    assert lip_sharpness(soft_chin, landmarks) == lip_sharpness(frame, landmarks)
    assert np.isnan(lip_sharpness(frame, np.full((478, 3), np.nan, np.float32)))


def test_teeth_fraction_counts_bright_pale_pixels_inside_the_inner_lips():
    from hygie_lib.landmarks import INNER_LIPS

    frame = np.full((200, 200, 3), (120, 40, 40), np.uint8)  # dark red lips and mouth
    landmarks = np.zeros((478, 3), np.float32)
    angles = np.linspace(0, 2 * np.pi, len(INNER_LIPS), endpoint=False)
    landmarks[INNER_LIPS, 0], landmarks[INNER_LIPS, 1] = 100 + 40 * np.cos(angles), 100 + 20 * np.sin(angles)
    assert teeth_fraction(frame, landmarks) == 0.0
    frame[80:100, 50:150] = (235, 230, 220)  # upper teeth: the top half of the opening
    assert teeth_fraction(frame, landmarks) == pytest.approx(0.5, abs=0.05)
    assert np.isnan(teeth_fraction(frame, np.full((478, 3), np.nan, np.float32)))


def test_appearance_compares_generated_with_real_frames_box_for_box():
    from types import SimpleNamespace

    from hygie_lib.crops import mouth_mask
    from hygie_lib.evaluate import _appearance
    from hygie_lib.landmarks import INNER_LIPS, OUTER_LIPS

    rng = np.random.default_rng(3)
    real = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(4)]
    for f in real:
        f[108:152, 108:192] = (120, 40, 40)  # the mouth's opening, dark red
        f[120:140, 120:180] = 240  # teeth in it
    lm = np.zeros((4, 478, 3), np.float32)
    angles = np.linspace(0, 2 * np.pi, len(INNER_LIPS), endpoint=False)
    lm[:, INNER_LIPS, 0], lm[:, INNER_LIPS, 1] = 150 + 40 * np.cos(angles), 130 + 20 * np.sin(angles)
    lm[:, OUTER_LIPS, 0], lm[:, OUTER_LIPS, 1] = 150 + 50 * np.cos(angles), 130 + 28 * np.sin(angles)
    template = SimpleNamespace(boxes=np.tile([150.0, 130.0, 100.0], (4, 1)), mask=mouth_mask(64, 1.3))
    same, real_teeth, gen_teeth = _appearance(real, lm, iter(real), lm, template)
    assert same == {"sharpness_ratio": pytest.approx(1.0), "lip_sharpness_ratio": pytest.approx(1.0)}
    assert real_teeth == pytest.approx(gen_teeth)
    assert real_teeth == pytest.approx(np.full(4, 0.48), abs=0.03)  # a 60x20 teeth patch in an ellipse of pi 40x20
    soft = [cv2.GaussianBlur(f, (0, 0), 2.0) for f in real]
    for f in soft:
        f[108:152, 108:192] = (120, 40, 40)  # an opening without teeth
    blurred, _, gen_teeth = _appearance(real, lm, iter(soft), lm, template)
    assert blurred["sharpness_ratio"] < 0.2 and blurred["lip_sharpness_ratio"] < 0.2 and (gen_teeth == 0).all()


def test_teeth_figures_tell_narrow_openings_from_grey_drawing():
    rng = np.random.default_rng(0)
    real_ap = rng.uniform(0.03, 0.2, 200)  # eye distances
    real_teeth = np.clip((real_ap - 0.05) * 2, 0, None)  # real mouths show more teeth the wider they open
    real_teeth[::50] = np.nan  # no opening found
    is_open = real_ap > 0.06
    same = teeth_figures(real_teeth, real_teeth, real_ap, real_ap, is_open)
    assert same == {
        "teeth_ratio": 1.0,
        "teeth_real": pytest.approx(np.nanmean(real_teeth[is_open])),
        "teeth_ceiling": 1.0,
    }
    grey = teeth_figures(real_teeth, 0.5 * real_teeth, real_ap, real_ap, is_open)  # right openings, half the teeth
    assert grey["teeth_ratio"] == pytest.approx(0.5) and grey["teeth_ceiling"] == 1.0
    narrow_ap = 0.05 + 0.5 * (real_ap - 0.05)  # half as open, each showing a real mouth's teeth at that opening
    narrow = teeth_figures(real_teeth, np.clip((narrow_ap - 0.05) * 2, 0, None), real_ap, narrow_ap, is_open)
    assert narrow["teeth_ceiling"] == pytest.approx(narrow["teeth_ratio"], abs=0.05) and narrow["teeth_ceiling"] < 0.6
    lost = narrow_ap.copy()
    lost[is_open.nonzero()[0][:3]] = np.nan  # no face found in three generated frames: left out
    assert teeth_figures(real_teeth, real_teeth, real_ap, lost, is_open)["teeth_ceiling"] == pytest.approx(
        narrow["teeth_ceiling"], abs=0.01
    )
    assert np.isnan(teeth_figures(real_teeth, real_teeth, real_ap, real_ap, np.zeros(200, bool))["teeth_ceiling"])
