import numpy as np
import pytest
from conftest import write_video

from hygie_lib.crops import (
    Crops,
    build_crops,
    crop,
    crop_matrix,
    grid_boxes,
    mouth_boxes,
    mouth_mask,
    recrop,
    smooth_boxes,
)
from hygie_lib.io import HygieError
from hygie_lib.landmarks import JAW, LEFT_EYE, LIPS, RIGHT_EYE


def in_crop(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Frame points [K, 2] in crop pixel coordinates."""
    m = crop_matrix(box, size)
    return points @ m[:, :2].T + m[:, 2]


def test_box_side_grows_with_padding_and_holds_lips_jaw_and_chin(face_landmarks):
    lm = face_landmarks[None]
    b0, b13 = mouth_boxes(lm, 0.0)[0], mouth_boxes(lm, 1.3)[0]
    assert b13[2] == pytest.approx(2.3 * b0[2])
    np.testing.assert_allclose(b0[:2], b13[:2])
    moving = face_landmarks[np.concatenate([LIPS, JAW[3:-3]]), :2]  # lips, chin and jaw line below the mouth corners
    assert np.all(np.abs(moving - b13[:2]) < 0.45 * b13[2])  # well inside the box


def test_box_does_not_move_when_only_the_mouth_moves(face_landmarks):
    """No leak: opening the jaw (lower lip down 30% of the mouth width) must not change the box at all."""
    opened = face_landmarks.copy()
    lips = face_landmarks[LIPS, :2]
    lower = LIPS[lips[:, 1] > lips[:, 1].mean()]
    opened[lower, 1] += 0.3 * np.ptp(lips[:, 0])
    opened[JAW, 1] += 0.3 * np.ptp(lips[:, 0])
    np.testing.assert_array_equal(mouth_boxes(face_landmarks[None], 1.3), mouth_boxes(opened[None], 1.3))


def test_mask_hides_lips_jaw_and_chin_at_full_jaw_drop_and_leaves_a_border(face_landmarks):
    size = 96
    mask = mouth_mask(size, 1.3)
    np.testing.assert_array_equal(mask, mouth_mask(size, 1.3))
    assert set(np.unique(mask)) == {0, 1}
    box = mouth_boxes(face_landmarks[None], 1.3)[0]
    iod = np.linalg.norm(np.subtract(*(face_landmarks[e, :2].mean(0) for e in (LEFT_EYE, RIGHT_EYE))))
    dropped = face_landmarks.copy()  # the jaw dropped by a third of an eye distance, more than any real clip showed
    lips = face_landmarks[LIPS, :2]
    dropped[LIPS[lips[:, 1] > lips[:, 1].mean()], 1] += iod / 3
    dropped[JAW[3:-3], 1] += iod / 3
    for lm in (face_landmarks, dropped):
        xy = in_crop(lm[np.concatenate([LIPS, JAW[3:-3]]), :2], box, size).round().astype(int)
        assert mask[xy[:, 1], xy[:, 0]].all(), "every lip, chin and lower jaw point is inside the mask"
    border = np.ones_like(mask, bool)
    border[3:-3, 3:-3] = False
    assert not mask[border].any(), "a ring around the crop stays unmasked for blending"
    assert 0.3 < mask.mean() < 0.7
    with pytest.raises(HygieError, match="MOUTH_PAD 0.5 makes the crop too small.*use 1.17 or more"):
        mouth_mask(size, 0.5)


def test_smoothing_constant_is_constant_and_steps_have_zero_lag():
    const = np.tile([100.0, 50.0, 40.0], (20, 1))
    np.testing.assert_allclose(smooth_boxes(const, 0.7), const)
    step = np.zeros((41, 3))
    step[21:] = 10.0
    out = smooth_boxes(step, 0.7)[:, 0]
    assert np.all(np.diff(out) >= -1e-9)  # monotone, no overshoot
    assert 0 < out[20] < 5 < out[21] < 10  # centred on the step: zero lag
    assert abs((out[20] + out[21]) / 2 - 5.0) < 0.5
    np.testing.assert_allclose(smooth_boxes(step, 0.0), step)


def test_smoothing_fills_gaps_by_holding_boxes():
    boxes = np.array([[np.nan] * 3, [10.0, 10, 10], [np.nan] * 3, [np.nan] * 3, [20.0, 20, 20]])
    filled = smooth_boxes(boxes, 0.0)
    np.testing.assert_allclose(filled[:, 0], [10, 10, 10, 10, 20])
    assert not np.isnan(smooth_boxes(boxes, 0.8)).any()
    with pytest.raises(HygieError):
        smooth_boxes(np.full((3, 3), np.nan), 0.5)
    with pytest.raises(HygieError, match="EMA_ALPHA"):
        smooth_boxes(boxes, 1.0)


def test_crop_takes_the_box_and_repeats_borders():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:60, 140:160] = 255
    out = crop(frame, np.array([150.0, 50.0, 20.0]), 40)
    assert out.shape == (40, 40, 3) and out[6:-6, 6:-6].min() == 255  # Lanczos rings near the edge only
    edge = crop(np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (100, 1, 3)), np.array([195.0, 50, 20]), 20)
    assert edge[:, -1, 0].max() == 199  # outside the frame: the last column repeated


def test_build_crops_keeps_every_frame(tmp_path, face_image, face_landmarks):
    frames = [np.roll(face_image, 2 * i, axis=1) for i in range(6)]
    path = write_video(tmp_path / "v.mp4", frames, 25)
    lm = np.stack([face_landmarks + np.array([2 * i, 0, 0], np.float32) for i in range(6)])
    lm[2] = np.nan  # a frame without a face keeps its place, with a held box
    out = build_crops(path, lm, 25, size=64, pad=1.3, alpha=0.0, progress=False)
    assert out.crops.shape == (6, 64, 64, 3) and out.crops.dtype == np.uint8 and out.size == 64
    assert list(out.face) == [True, True, False, True, True, True]
    np.testing.assert_allclose(out.boxes[2], out.boxes[1])
    assert np.abs(out.crops[0].astype(int) - out.crops[5]).mean() < 12  # box follows the face
    np.testing.assert_array_equal(out.mask, mouth_mask(64, 1.3))


def test_crops_file_records_how_and_from_what_it_was_made(tmp_path, face_image, face_landmarks):
    path = write_video(tmp_path / "v.mp4", [face_image] * 3, 25)
    made = build_crops(path, np.stack([face_landmarks] * 3), 25, size=32, pad=1.3, alpha=0.5, progress=False)
    made.save(tmp_path / "crops.npz")
    back = Crops.load(tmp_path / "crops.npz")
    assert (back.size, back.pad, back.alpha, back.fps) == (32, 1.3, 0.5, 25.0)
    np.testing.assert_array_equal(back.crops, made.crops)
    assert back.fits(size=32, pad=1.3, fps=25.0, mask=mouth_mask(32, 1.3))
    assert not back.fits(size=32, pad=1.4, fps=25.0, mask=mouth_mask(32, 1.3))
    assert not back.fits(size=32, pad=1.3, fps=30.0, mask=mouth_mask(32, 1.3))
    assert not back.fits(size=32, pad=1.3, fps=25.0, mask=1 - mouth_mask(32, 1.3))
    assert back.made_from(path)
    other = write_video(tmp_path / "w.mp4", [np.roll(face_image, 5, axis=0)] * 3, 25)  # same frame count, other content
    assert not back.made_from(other)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(HygieError, match=r"junk\.npz: not a crops file made by build_crops"):
        Crops.load(tmp_path / "junk.npz")


def test_grid_box_crops_are_the_frames_own_pixels_and_hold_the_box():
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[70.3, 50.8, 41.7], [20.0, 30.5, 40.2]])
    grid = grid_boxes(boxes, 44)
    for box, g in zip(boxes, grid):
        x0, y0 = int(g[0] - 22), int(g[1] - 22)
        assert g[0] - 22 == x0 and g[2] == 44  # on the pixel grid
        assert x0 <= box[0] - box[2] / 2 and box[0] + box[2] / 2 <= x0 + 44  # holds the box
        expected = np.pad(frame, ((44, 44), (44, 44), (0, 0)), mode="edge")[y0 + 44 : y0 + 88, x0 + 44 : x0 + 88]
        np.testing.assert_array_equal(crop(frame, g, 44), expected)  # copied, border repeated, not resampled


def test_recrop_moves_a_crop_into_another_box():
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32)
    frame = np.stack([100 + 50 * np.sin(xx / 9), 100 + 50 * np.cos(yy / 11), 0.5 * xx], -1).astype(np.uint8)
    box, to = np.array([100.0, 100.0, 60.0]), np.array([103.4, 98.2, 66.0])
    moved = recrop(crop(frame, box, 120), box, to, 60)
    inner = (slice(8, -8), slice(8, -8))  # away from where `box` ends inside `to`
    assert np.abs(moved.astype(int) - crop(frame, to, 60))[inner].mean() < 1.5
    assert np.abs(crop(frame, box, 60).astype(int) - crop(frame, to, 60))[inner].mean() > 5  # the boxes differ
