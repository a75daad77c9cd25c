"""MediaPipe FaceMesh landmarks for every frame of a video, with missing faces kept in the timeline."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mediapipe as mp
import numpy as np
import pandas as pd
from mediapipe.python.solutions import face_mesh_connections as fmc
from tqdm import tqdm

from hygie_lib.io import HygieError, HygieWarning
from hygie_lib.video import count_frames, iter_frames, probe_video

N_LANDMARKS = 478  # FaceMesh with refined eyes/irises


def _indices(connections: frozenset[tuple[int, int]]) -> np.ndarray:
    return np.array(sorted({i for edge in connections for i in edge}))


def rings(connections: frozenset[tuple[int, int]]) -> list[np.ndarray]:
    """The closed loops of a FaceMesh connection set, each as landmark indices in walking order."""
    neighbours: dict[int, list[int]] = {}
    for a, b in connections:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        ring, prev, node = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in neighbours[node] if n != prev and n not in seen]
            if not nxt:
                break
            prev, node = node, min(nxt)
            ring.append(node)
            seen.add(node)
        loops.append(np.array(ring))
    return loops


LIPS = _indices(fmc.FACEMESH_LIPS)  # outer + inner lip contours
OUTER_LIPS, INNER_LIPS = rings(fmc.FACEMESH_LIPS)  # the two 20-point lip contours in walking order (0 and 13 first)
LEFT_EYE = _indices(fmc.FACEMESH_LEFT_EYE)
RIGHT_EYE = _indices(fmc.FACEMESH_RIGHT_EYE)
NOSE = _indices(fmc.FACEMESH_NOSE)
# the face oval's lower half, ear to ear under the chin (152), in contour order: what moves with the jaw
JAW = np.array([93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323])


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres [N, 2] of the subject's left and right eye contours."""
    return landmarks[:, LEFT_EYE, :2].mean(1), landmarks[:, RIGHT_EYE, :2].mean(1)


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eye distance [N], the face's unit down axis [N, 2]): scale and roll from landmarks that speech does not move."""
    left, right = eye_centres(landmarks)
    across = left - right
    iod = np.linalg.norm(across, axis=1)
    return iod, np.stack([-across[:, 1], across[:, 0]], axis=1) / iod[:, None]


class FaceMesh:
    """One-face MediaPipe FaceMesh returning [478, 3] landmarks in pixels (z scaled like x), all NaN when no face."""

    def __init__(self, *, static: bool = False, min_confidence: float = 0.5) -> None:
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            return np.full((N_LANDMARKS, 3), np.nan, np.float32)
        pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], np.float32)
        return pts * np.array([w, h, w], np.float32)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def frame_table(landmarks: np.ndarray, fps: float) -> pd.DataFrame:
    """Per-frame table: frame, time (s), face (found?), and the face's landmark box x0, y0, x1, y1 (NaN if none)."""
    face = ~np.isnan(landmarks[:, 0, 0])
    with warnings.catch_warnings():  # all-NaN rows (no face) give NaN boxes, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(landmarks[:, :, :2], axis=1), np.nanmax(landmarks[:, :, :2], axis=1)
    n = len(landmarks)
    return pd.DataFrame(
        {
            "frame": np.arange(n),
            "time": np.arange(n) / fps,
            "face": face,
            "x0": lo[:, 0],
            "y0": lo[:, 1],
            "x1": hi[:, 0],
            "y1": hi[:, 1],
        }
    )


def detect_video(
    path: str | os.PathLike, fps: float, *, min_confidence: float = 0.5, progress: bool = True
) -> np.ndarray:
    """Landmarks [N, 478, 3] float32 (pixels) for every constant-rate frame; NaN where no face was found."""
    path = Path(path)
    total = count_frames(probe_video(path).duration, fps)
    with FaceMesh(min_confidence=min_confidence) as mesh:
        bar = tqdm(
            iter_frames(path, fps), total=total, desc=f"landmarks {path.name}", unit="frame", disable=not progress
        )
        landmarks = np.stack([mesh(rgb) for rgb in bar])
    if len(landmarks) < total:
        warnings.warn(
            f"{path}: only {len(landmarks)} of the {total} frames its header declares could be decoded; the file "
            f"looks truncated, so only those {len(landmarks)} are used. Re-export it to use the whole clip.",
            HygieWarning,
            stacklevel=2,
        )
    return landmarks


def check_face_rate(landmarks: np.ndarray, path: str | os.PathLike, min_rate: float) -> float:
    """Fraction of frames with a face; raise a HygieError naming the file if it is below `min_rate`."""
    rate = float(np.mean(~np.isnan(landmarks[:, 0, 0])))
    if rate == 0.0:
        raise HygieError(
            f"{path}: no face found in any of {len(landmarks)} frames. Film the face from the front, well lit."
        )
    if rate < min_rate:
        raise HygieError(
            f"{path}: a face was found in only {rate:.0%} of frames (minimum {min_rate:.0%}, "
            "param detect_landmarks.min_face_rate). Use a clip where the face stays in view, or lower the param."
        )
    return rate
