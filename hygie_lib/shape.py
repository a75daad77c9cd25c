"""Mouth shapes: the lips and jaw of FaceMesh freed from head pose, reduced to a few numbers, and drawn into crops.

A frame's landmarks are aligned onto a reference face (the speaker's mean face) by a 3D similarity fitted on
points speech does not move (eyes, nose, forehead). In that frame the lips and jaw (`MOUTH`) vary only with the
mouth, and a PCA of them over the training recording gives a few coefficients per frame (`ShapeSpace`). The
inverse path puts any coefficients back into any frame, at that frame's pose: render draws the shape the audio
asks for where the template's face is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from mediapipe.python.solutions import face_mesh_connections as fmc

from hygie_lib.crops import crop_matrix
from hygie_lib.landmarks import INNER_LIPS, JAW, LEFT_EYE, NOSE, OUTER_LIPS, RIGHT_EYE

FOREHEAD = np.array([10, 338, 297, 332, 284, 109, 67, 103, 54, 21, 251, 389, 162, 127, 356])  # upper face oval
ANCHORS = np.unique(np.concatenate([LEFT_EYE, RIGHT_EYE, NOSE, FOREHEAD]))  # points speech does not move
MOUTH = np.concatenate([OUTER_LIPS, INNER_LIPS, JAW])  # points that move with speech: outer, inner lips, jaw
MOUTH_OUTER, MOUTH_INNER, MOUTH_JAW = np.split(  # where each part lies in MOUTH
    np.arange(len(MOUTH)), [len(OUTER_LIPS), len(OUTER_LIPS) + len(INNER_LIPS)]
)
assert set(ANCHORS).isdisjoint(MOUTH) and {i for e in fmc.FACEMESH_FACE_OVAL for i in e} >= set(FOREHEAD)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama) of src [N, K, 3] onto dst [K, 3]: scale [N], rotation [N,3,3], shift [N,3]."""
    ms, md = src.mean(1, keepdims=True), dst.mean(0)
    a, b = src - ms, dst - md  # [N, K, 3], [K, 3]
    u, sv, vt = np.linalg.svd(np.einsum("kd,nke->nde", b, a))  # b^T a per frame
    flip = np.sign(np.linalg.det(u @ vt))  # no reflections
    d = np.stack([np.ones_like(flip), np.ones_like(flip), flip], 1)  # [N, 3]
    rot = u @ (d[:, :, None] * vt)
    scale = (sv * d).sum(1) / (a**2).sum((1, 2))
    shift = md - scale[:, None] * np.einsum("nde,ne->nd", rot, ms[:, 0])
    return scale, rot, shift


def _apply(scale: np.ndarray, rot: np.ndarray, shift: np.ndarray, points: np.ndarray) -> np.ndarray:
    """scale * R @ p + shift for points [N, K, 3]."""
    return scale[:, None, None] * np.einsum("nde,nke->nkd", rot, points) + shift[:, None]


@dataclass(frozen=True)
class ShapeSpace:
    """The speaker's mouth shapes: a reference face to align on, and a PCA of the aligned lips and jaw."""

    reference: np.ndarray  # [len(ANCHORS), 3] the mean anchor points, in eye distances
    mean: np.ndarray  # [len(MOUTH) * 3] mean aligned mouth points
    components: np.ndarray  # [K, len(MOUTH) * 3] principal axes (unit rows)
    scale: np.ndarray  # [K] standard deviation of each coefficient over the training frames

    @classmethod
    def fit(cls, landmarks: np.ndarray, k: int) -> ShapeSpace:
        """Fit on frames with a face [N, 478, 3]: the reference by iterated alignment, then a k-component PCA."""
        lm = landmarks[~np.isnan(landmarks[:, 0, 0])].astype(np.float64)
        iod = np.linalg.norm(lm[:, LEFT_EYE].mean(1) - lm[:, RIGHT_EYE].mean(1), axis=1).mean()
        reference = lm[len(lm) // 2, ANCHORS] / iod
        for _ in range(3):  # align everything on the current reference, average, repeat
            reference = _apply(*similarity(lm[:, ANCHORS], reference), lm[:, ANCHORS]).mean(0)
        space = cls(reference, np.zeros(len(MOUTH) * 3), np.zeros((0, len(MOUTH) * 3)), np.zeros(0))
        flat = space.aligned(lm)
        mean = flat.mean(0)
        _, sv, vt = np.linalg.svd(flat - mean, full_matrices=False)
        k = min(k, len(vt))
        return cls(reference, mean, vt[:k], sv[:k] / np.sqrt(len(flat)))

    @property
    def k(self) -> int:
        """Number of coefficients."""
        return len(self.components)

    def aligned(self, landmarks: np.ndarray) -> np.ndarray:
        """Mouth points of each frame in the reference frame, flattened [N, len(MOUTH) * 3] (NaN where no face)."""
        return _apply(*similarity(landmarks[:, ANCHORS], self.reference), landmarks[:, MOUTH]).reshape(
            len(landmarks), -1
        )

    def coefficients(self, landmarks: np.ndarray) -> np.ndarray:
        """The shape of each frame [N, K] (NaN where no face)."""
        return (self.aligned(landmarks) - self.mean) @ self.components.T

    def place(self, coefficients: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Mouth points [N, len(MOUTH), 2] in frame pixels: shapes `coefficients` [N, K] at the poses of `landmarks`."""
        flat = self.mean + coefficients @ self.components  # [N, M * 3]
        scale, rot, shift = similarity(landmarks[:, ANCHORS], self.reference)  # frame -> reference
        inv_rot = np.transpose(rot, (0, 2, 1))
        pts = np.einsum("nde,nke->nkd", inv_rot, flat.reshape(len(flat), -1, 3) - shift[:, None]) / scale[:, None, None]
        return pts[..., :2]

    def save_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store (e.g. in a checkpoint or an .npz), keyed by field."""
        return {"reference": self.reference, "mean": self.mean, "components": self.components, "scale": self.scale}


def draw_shape(points: np.ndarray, size: int) -> np.ndarray:
    """The mouth drawn as the renderer sees it, [3, size, size] float32 in [0, 1]: lips filled, mouth opening filled,
    jaw line, from mouth points [len(MOUTH), 2] in crop pixels."""
    out = np.zeros((3, size, size), np.uint8)
    fixed = np.round(points * 16).astype(np.int32)  # 4 fractional bits: sub-pixel anti-aliased drawing
    cv2.fillPoly(out[0], [fixed[MOUTH_OUTER]], 255, cv2.LINE_AA, shift=4)
    cv2.fillPoly(out[1], [fixed[MOUTH_INNER]], 255, cv2.LINE_AA, shift=4)
    cv2.polylines(out[2], [fixed[MOUTH_JAW]], False, 255, max(1, size // 64), cv2.LINE_AA, shift=4)
    return out.astype(np.float32) / 255.0


def crop_points(
    space: ShapeSpace, coefficients: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray, size: int
) -> np.ndarray:
    """Mouth points [B, len(MOUTH), 2] in crop pixels: shapes [B, K] at the poses of `landmarks` [B, 478, 3], in the
    crops of `boxes` [B, 3]."""
    points = space.place(coefficients, landmarks)  # [B, M, 2] frame pixels
    for i, box in enumerate(boxes):
        m = crop_matrix(box, size)
        points[i] = points[i] @ m[:, :2].T + m[:, 2]
    return points


def sketches(
    space: ShapeSpace, coefficients: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray, size: int
) -> np.ndarray:
    """Shapes [B, K] drawn at the poses of `landmarks` [B, 478, 3] into the crops of `boxes` [B, 3]: [B, 3, S, S]."""
    points = crop_points(space, coefficients, landmarks, boxes, size)
    out = np.empty((len(points), 3, size, size), np.float32)
    for i, p in enumerate(points):
        out[i] = draw_shape(p, size)
    return out
