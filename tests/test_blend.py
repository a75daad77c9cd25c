import cv2
import numpy as np
import pytest

from hygie_lib.blend import paste_mouth
from hygie_lib.crops import box_roi, crop, mouth_mask, uncrop


@pytest.fixture
def scene():
    """A smooth textured frame and a mouth box inside it."""
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    frame = np.stack([120 + 60 * np.sin(xx / 17), 110 + 50 * np.cos(yy / 13), 90 + 0.2 * xx], -1).astype(np.uint8)
    return frame, np.array([160.0, 130.0, 90.0])


@pytest.mark.parametrize("mode", ["poisson", "feather"])
def test_pasting_the_frames_own_crop_changes_nothing(scene, mode):
    frame, box = scene
    mouth = crop(frame, box, 96)
    out = paste_mouth(frame, mouth, box, mouth_mask(96, 1.3), mode=mode)
    diff = np.abs(out.astype(int) - frame)
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8  # only resampling error, and no shift


@pytest.mark.parametrize("mode", ["poisson", "feather"])
def test_paste_changes_only_the_mouth_region(scene, mode):
    frame, box = scene
    mouth = crop(frame, box, 96)
    mouth[40:70, 25:70] = 20  # a dark open mouth in the middle of the mask
    out = paste_mouth(frame, mouth, box, mouth_mask(96, 1.3), mode=mode)
    cx, cy, side = box
    outside = np.ones(frame.shape[:2], bool)
    outside[int(cy - side / 2) - 1 : int(cy + side / 2) + 2, int(cx - side / 2) - 1 : int(cx + side / 2) + 2] = False
    np.testing.assert_array_equal(out[outside], frame[outside])
    centre = out[int(cy) - 5 : int(cy) + 5, int(cx) - 5 : int(cx) + 5].astype(int)
    assert (frame[int(cy) - 5 : int(cy) + 5, int(cx) - 5 : int(cx) + 5].astype(int) - centre).mean() > 40


@pytest.mark.parametrize("mode", ["poisson", "feather"])
def test_box_partly_outside_the_frame(scene, mode):
    frame, _ = scene
    box = np.array([300.0, 230.0, 90.0])
    out = paste_mouth(frame, np.zeros((96, 96, 3), np.uint8), box, mouth_mask(96, 1.3), mode=mode)
    assert out.shape == frame.shape and np.array_equal(out[:100], frame[:100])


def test_poisson_takes_the_colours_from_the_frame(scene):
    frame, box = scene
    brighter = np.clip(crop(frame, box, 96).astype(int) + 30, 0, 255).astype(np.uint8)  # same gradients, other colour
    out = paste_mouth(frame, brighter, box, mouth_mask(96, 1.3))
    assert np.abs(out.astype(int) - frame).mean() < 0.05


def test_poisson_agrees_with_opencvs_seamless_clone(scene):
    frame, box = scene
    mouth = crop(frame, box, 96)
    mouth[40:70, 25:70] = 20
    mask = mouth_mask(96, 1.3)
    out = paste_mouth(frame, mouth, box, mask)
    roi = box_roi(box, *frame.shape[:2])
    x0, y0, x1, y1 = roi
    hard = (uncrop(mask * 255, box, roi, cv2.INTER_LINEAR) > 127).astype(np.uint8) * 255
    hard[[0, -1], :], hard[:, [0, -1]] = 0, 0
    bx, by, bw, bh = cv2.boundingRect(hard)
    ref = cv2.seamlessClone(
        uncrop(mouth, box, roi), frame, hard, (x0 + bx + bw // 2, y0 + by + bh // 2), cv2.NORMAL_CLONE
    )
    diff = np.abs(out.astype(int) - ref)[y0:y1, x0:x1]
    assert diff.mean() < 0.6 and diff.max() <= 3


def test_poisson_fills_a_frame_no_taller_than_the_mask():
    frame = np.full((40, 200, 3), 120, np.uint8)  # the mask, cut by the frame at the top and the bottom
    box, mask = np.array([100.0, 20.0, 90.0]), mouth_mask(96, 1.3)
    out = paste_mouth(frame, np.full((96, 96, 3), 200, np.uint8), box, mask)
    assert out.shape == frame.shape and np.array_equal(out[:, :50], frame[:, :50])


def test_unknown_mode():
    with pytest.raises(ValueError, match="blend mode"):
        paste_mouth(
            np.zeros((10, 10, 3), np.uint8),
            np.zeros((8, 8, 3), np.uint8),
            np.array([5.0, 5, 8]),
            mouth_mask(8, 1.3),
            mode="x",
        )
