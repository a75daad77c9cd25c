import numpy as np
import pytest

from hygie_lib.metrics import MAX_LAG, lag_correlation, lip_distance, sync


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
