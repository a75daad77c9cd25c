import numpy as np
import pytest
from conftest import write_video
from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

from hygie_lib.io import HygieError
from hygie_lib.landmarks import LIPS, check_face_rate, detect_video, frame_table


def test_lip_indices_come_from_facemesh_lips():
    assert set(LIPS) == {i for edge in FACEMESH_LIPS for i in edge} and len(LIPS) == 40


def test_missing_faces_stay_in_the_timeline_flagged(tmp_path, face_image):
    blank = np.full_like(face_image, 128)
    frames = [blank if i in (3, 4, 8) else np.roll(face_image, i, axis=1) for i in range(10)]
    path = write_video(tmp_path / "gaps.mp4", frames, 25)
    lm = detect_video(path, 25, progress=False)
    assert lm.shape == (10, 478, 3)
    missing = np.isnan(lm[:, 0, 0])
    assert list(np.where(missing)[0]) == [3, 4, 8]
    table = frame_table(lm, 25)
    assert list(table["frame"]) == list(range(10))
    np.testing.assert_allclose(table["time"], np.arange(10) / 25)
    assert list(table["face"]) == list(~missing)
    assert table.loc[~missing, ["x0", "y0", "x1", "y1"]].notna().all().all()
    assert table.loc[missing, ["x0", "y0", "x1", "y1"]].isna().all().all()
    # the face moves one pixel a frame: frame 9's box is right of frame 0's
    assert table.loc[9, "x0"] > table.loc[0, "x0"] + 5


def test_face_rate_check(tmp_path):
    lm = np.zeros((10, 478, 3), np.float32)
    lm[:7] = np.nan
    assert check_face_rate(lm, "v.mp4", 0.2) == pytest.approx(0.3)
    with pytest.raises(HygieError, match=r"v\.mp4: a face was found in only 30% of frames"):
        check_face_rate(lm, "v.mp4", 0.5)
    with pytest.raises(HygieError, match="no face found in any"):
        check_face_rate(np.full((5, 478, 3), np.nan, np.float32), "v.mp4", 0.5)


def test_mouth_aperture_grows_when_the_lower_lip_drops(face_landmarks):
    from hygie_lib.landmarks import INNER_LIPS, OUTER_LIPS
    from hygie_lib.metrics import mouth_aperture

    assert len(OUTER_LIPS) == len(INNER_LIPS) == 20 and OUTER_LIPS[0] == 0 and INNER_LIPS[0] == 13
    from hygie_lib.landmarks import eye_centres

    closed = face_landmarks.copy()
    left, right = eye_centres(closed[None])
    across = ((left - right) / np.linalg.norm(left - right))[0]
    inner = INNER_LIPS
    assert np.ptp(closed[inner, 0]) < np.ptp(closed[OUTER_LIPS, 0])  # the inner contour is the narrower
    centre = closed[inner, :2].mean(0)
    # inner lips pressed together on one line parallel to the eyes (the face is slightly rolled)
    closed[inner, :2] = centre + np.outer((closed[inner, :2] - centre) @ across, across)
    opened = closed.copy()
    lower = inner[face_landmarks[inner, 1] > centre[1]]
    opened[lower, 1] += 10.0
    ap = mouth_aperture(np.stack([closed, opened, np.full_like(closed, np.nan)]))
    assert ap[0] < 0.02 and ap[1] > ap[0] + 0.1 and np.isnan(ap[2])
