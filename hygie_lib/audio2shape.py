"""From audio to mouth shape: per-frame speech features, a ridge regression over a window of them, and the
recording's audio/video offset.

Why a linear model: on 15 s to 15 min of one speaker, a ridge regression from a few frames of log-mel to the
shape coefficients predicts held-out mouths as well as the small conv and GRU nets tried (README, "Real
speakers"), in a second, deterministically, and it cannot overfit the way a generator does: it has nothing
to copy but the audio.

The offset: a camera's audio often lags its video by a few frames (obama_20s: about 8). Frame t's mouth then
belongs with the audio at t + offset. `estimate_offset` finds it as the shift at which audio best predicts the
mouth on held-out time blocks; training pairs frames with the shifted audio, and new audio (render) is used as
it is, offset 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hygie_lib.audio import SILENCE_DB, frame_energy, loud_level
from hygie_lib.io import HygieError, save_npz
from hygie_lib.shape import MOUTH, ShapeSpace

BANDS = 40  # mel bands after pooling pairs of the 80: as good or better, with half the weights (README)
MAX_OFFSET = 25  # frames searched either way for the recording's A/V offset (katiehill: 12)
RIDGE = (0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge strengths tried (per training frame, on standardised features)
MAX_GAIN = 3.0  # the most a predicted shape coefficient's spread is stretched back towards the real one's
LOUD_DECAY_DB = 0.12  # the loud level follows the audio's peaks, falling this much per frame (3 dB/s at 25 fps)
SPEECH_HANGOVER = 2  # frames around speech still count as speech (the mouth opens before the sound and closes after)
SPEECH_LEAD = 8  # ... and before it, audio -> shape speaks this many frames: the mouth opens as the speaker breathes in
# (README, "Open before speaking"); a stream waits for them,
BREATH = 12  # ... after a pause this long (0.48 s of silence); through a shorter gap the lips may stay shut (a stop's
# closure; hdtf_radio34_8s: 9 frames, shut throughout)
LIVE_LEAD = 2  # live (`hygie serve`) takes fewer: 6 frames more would add 240 ms of latency
LEADS = (2, 4, 6, 8, 10, 12, 16)  # learn_shapes measures each (metrics/shape.json: aperture_corr_by_lead)


def frame_features(mel: np.ndarray, per_frame: int) -> np.ndarray:
    """Log-mel per video frame [n_frames, BANDS]: the frame's `per_frame` columns averaged, band pairs averaged."""
    n_mels, cols = mel.shape
    n = cols // per_frame
    m = mel[:, : n * per_frame].reshape(n_mels, n, per_frame).mean(2)  # [n_mels, n]
    pool = n_mels // BANDS
    return m[: BANDS * pool].reshape(BANDS, pool, n).mean(1).T.astype(np.float64)


def windowed(features: np.ndarray, frames: np.ndarray, *, half: int, offset: int = 0) -> np.ndarray:
    """Rows [len(frames), (2 half + 1) * D]: the features of frames t + offset - half .. t + offset + half (clamped)."""
    idx = np.clip(np.asarray(frames)[:, None] + offset + np.arange(-half, half + 1), 0, len(features) - 1)
    return features[idx].reshape(len(idx), -1)


def speech_frames(energy: np.ndarray, level: float = -np.inf) -> tuple[np.ndarray, float]:
    """(Frames [n] bool that are louder than SILENCE_DB below the loud level, the level after them) for frame energies
    (`frame_energy`). The loud level follows the peaks and falls LOUD_DECAY_DB per frame: causal, so a stream decides
    as the whole audio would; `level` carries it over from the previous chunk."""
    margin, decay = SILENCE_DB * np.log(10) / 10, LOUD_DECAY_DB * np.log(10) / 10
    out = np.empty(len(energy), bool)
    for i, e in enumerate(energy):
        level = max(float(e), level - decay)
        out[i] = e > level - margin
    return out, level


def silent_frames(mel: np.ndarray, per_frame: int, level: float = -np.inf) -> np.ndarray:
    """Frames [n_frames] bool where the audio is silent: no speech (`speech_frames`, from loud level `level`) within
    SPEECH_HANGOVER frames."""
    speech, _ = speech_frames(frame_energy(mel, per_frame), level)
    return np.convolve(speech, np.ones(2 * SPEECH_HANGOVER + 1), mode="same") == 0


def _ridge(x: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """Weights [D + 1, K] (last row: bias) of a ridge regression on centred data."""
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + strength * len(x) * np.eye(x.shape[1]), xc.T @ (y - ym))
    return np.vstack([w, ym - xm @ w])


def _blocks(frames: np.ndarray, folds: int, gap: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Contiguous time blocks: (fit frames, test frames) per fold, `gap` frames left out on each side of the test."""
    edges = np.linspace(frames.min(), frames.max() + 1, folds + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        test = frames[(frames >= lo) & (frames < hi)]
        fit = frames[(frames < lo - gap) | (frames >= hi + gap)]
        out.append((fit, test))
    return out


def _explained(pred: np.ndarray, real: np.ndarray, weight: np.ndarray) -> float:
    """Share of the real shape's variance the prediction explains (R^2 over coefficients, weighted)."""
    sse = (((pred - real) ** 2).sum(0) * weight).sum()
    sst = (((real - real.mean(0)) ** 2).sum(0) * weight).sum()
    return float(1.0 - sse / sst)


@dataclass(frozen=True)
class AudioToShape:
    """A ridge regression from a window of standardised speech features to shape coefficients."""

    mean: np.ndarray  # [BANDS] feature mean (training audio)
    std: np.ndarray  # [BANDS] feature standard deviation
    weights: np.ndarray  # [(2 half + 1) * BANDS + 1, K]
    rest: np.ndarray  # [K] the mouth at rest: the shape drawn where the audio is silent
    half: int  # the window holds frames t - half .. t + half
    smooth: float  # Gaussian smoothing of the predictions over time, sigma in frames (0 = none)
    loud: float  # the training audio's loud level (95th percentile of its frame energy): where the silence gate starts

    def predict(self, mel: np.ndarray, per_frame: int, *, offset: int = 0, lead: int = SPEECH_LEAD) -> np.ndarray:
        """Shape coefficients [n_frames, K] for every frame of `mel` [n_mels, C] (new audio: offset 0): the
        `ShapeStream` fed the whole mel, so a stream of the same `lead` gives the same shapes."""
        stream = ShapeStream(self, per_frame, lead)
        out = np.vstack([stream.push(mel), stream.flush()])
        return out[np.clip(np.arange(len(out)) + offset, 0, len(out) - 1)]

    @property
    def radius(self) -> int:
        """Frames either side that the temporal smoothing reaches: its Gaussian is cut at one sigma, as every frame
        it reaches past a frame adds 40 ms to a live stream's latency."""
        return int(np.ceil(self.smooth))

    @classmethod
    def untrained(cls, k: int, half: int = 2) -> AudioToShape:
        """A predictor of the average shape for any audio, for speed benchmarks (what it predicts does not matter)."""
        weights = np.zeros(((2 * half + 1) * BANDS + 1, k))
        return cls(np.zeros(BANDS), np.ones(BANDS), weights, np.zeros(k), half, 1.0, -np.inf)

    def save_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store, keyed by field."""
        return {
            "mean": self.mean,
            "std": self.std,
            "weights": self.weights,
            "rest": self.rest,
            "half": np.int64(self.half),
            "smooth": np.float64(self.smooth),
            "loud": np.float64(self.loud),
        }


def fit_audio_to_shape(
    mel: np.ndarray,
    per_frame: int,
    shapes: np.ndarray,
    frames: np.ndarray,
    *,
    half: int,
    offset: int,
    smooth: float,
    weight: np.ndarray,
    rest: np.ndarray,
    folds: int = 4,
) -> tuple[AudioToShape, float]:
    """Fit on `frames` (shapes [n_frames, K], weighted per coefficient), the ridge strength chosen by blocked
    cross-validation; `rest` is the shape drawn in silence. Returns the model and its cross-validated explained
    variance."""
    feats = frame_features(mel, per_frame)
    mean, std = feats[frames].mean(0), feats[frames].std(0) + 1e-6
    feats = (feats - mean) / std
    x, y = windowed(feats, frames, half=half, offset=offset), shapes[frames]
    scores = {s: _cv_score(x, y, frames, s, weight, folds, half) for s in RIDGE}
    strength = max(scores, key=scores.get)
    w = _ridge(x, y, strength)
    pred = x @ w[:-1] + w[-1]
    # a ridge regression shrinks towards the mean mouth: give each coefficient back the real one's spread (at most 3x),
    # so mouths open as wide as the speaker's do; correlations are unchanged
    gain, centre = np.clip(y.std(0) / (pred.std(0) + 1e-9), 1.0, MAX_GAIN), pred.mean(0)
    w = np.vstack([w[:-1] * gain, (w[-1] - centre) * gain + centre])
    loud = loud_level(frame_energy(mel, per_frame)[frames])
    return AudioToShape(mean, std, w, rest, half, smooth, loud), scores[strength]


def _cv_score(
    x: np.ndarray, y: np.ndarray, frames: np.ndarray, strength: float, weight: np.ndarray, folds: int, gap: int
) -> float:
    """Blocked cross-validated explained variance of a ridge of `strength` (rows of x, y belong to `frames`)."""
    pred = np.empty_like(y)
    for fit, test in _blocks(frames, folds, gap):
        w = _ridge(x[np.isin(frames, fit)], y[np.isin(frames, fit)], strength)
        rows = np.isin(frames, test)
        pred[rows] = x[rows] @ w[:-1] + w[-1]
    return _explained(pred, y, weight)


def estimate_offset(
    mel: np.ndarray,
    per_frame: int,
    shapes: np.ndarray,
    frames: np.ndarray,
    weight: np.ndarray,
    *,
    half: int = 2,
    folds: int = 4,
) -> tuple[int, float, dict[int, float]]:
    """The recording's A/V offset in frames (positive: the audio lags the video), a confidence, and the score of each
    shift: the blocked cross-validated share of the mouth's variance the audio explains when shifted so."""
    feats = frame_features(mel, per_frame)
    feats = (feats - feats[frames].mean(0)) / (feats[frames].std(0) + 1e-6)
    y = shapes[frames]
    scores = {}
    for s in range(-MAX_OFFSET, MAX_OFFSET + 1):
        x = windowed(feats, frames, half=half, offset=s)
        scores[s] = _cv_score(x, y, frames, 10.0, weight, folds, half + MAX_OFFSET)
    best = max(scores, key=scores.get)
    confidence = scores[best] - float(np.median(list(scores.values())))
    return best, confidence, scores


class ShapeStream:
    """`AudioToShape.predict` for mel columns arriving in chunks: each frame's shape as soon as the audio
    `lookahead` frames past it has arrived, the same numbers whatever the chunking (every frame computed on its own).
    A silent frame rests the mouth unless speech lies within SPEECH_HANGOVER frames of it, or within `lead` frames
    after it following a pause of BREATH frames or more (the audio's start counts as one).
    Only the frames still needed are kept: memory stays flat over a session of any length."""

    def __init__(self, predictor: AudioToShape, per_frame: int, lead: int = SPEECH_LEAD) -> None:
        self.p, self.per_frame, self.lead = predictor, per_frame, lead
        if lead < SPEECH_HANGOVER:
            raise ValueError(f"lead {lead}: below SPEECH_HANGOVER ({SPEECH_HANGOVER}), which a mouth always opens for")
        r = predictor.radius
        kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / max(predictor.smooth, 1e-9)) ** 2)
        self.kernel = kernel / kernel.sum()
        self.cols: np.ndarray | None = None  # columns of a frame not yet complete
        self.level = predictor.loud  # the loud level (speech_frames): the training audio's, until the audio says
        self.base = 0  # frame index of the first row kept below
        self.feats = np.zeros((0, len(predictor.mean)))  # standardised features of frames base..n-1
        self.speech = np.zeros(0, bool)  # speech flags of frames base..n-1
        self.gated = np.zeros((0, predictor.weights.shape[1]))  # shapes before smoothing, frames base..g-1
        self.n = self.done = 0  # frames heard; frames whose shape is out

    @property
    def lookahead(self) -> int:
        """Frames of audio past a frame that its shape depends on: the window, the lead, the smoothing."""
        return max(self.p.half, self.lead) + self.p.radius

    def push(self, mel: np.ndarray) -> np.ndarray:
        """The shapes [new, K] of the frames these columns [n_mels, C] complete (lookahead frames behind)."""
        cols = mel if self.cols is None else np.hstack([self.cols, mel])
        n = cols.shape[1] // self.per_frame
        frames, self.cols = cols[:, : n * self.per_frame], cols[:, n * self.per_frame :]
        if n:
            self.feats = np.vstack([self.feats, (frame_features(frames, self.per_frame) - self.p.mean) / self.p.std])
            speech, self.level = speech_frames(frame_energy(frames, self.per_frame), self.level)
            self.speech = np.concatenate([self.speech, speech])
            self.n += n
        return self._advance(final=False)

    def flush(self) -> np.ndarray:
        """The shapes of the last frames, the audio's end now known (edges held, as `windowed` and the smoothing do)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> np.ndarray:
        """Gate and smooth every frame whose inputs are all known; return the newly finished shapes."""
        p, n, b = self.p, self.n, self.base
        g = b + len(self.gated)
        gate_end = n if final else max(g, n - max(p.half, self.lead))
        if gate_end > g:
            t = np.arange(g, gate_end)
            idx = np.clip(t[:, None] + np.arange(-p.half, p.half + 1), 0, n - 1) - b
            x = self.feats[idx].reshape(len(t), -1)
            raw = np.einsum("nd,dk->nk", x, p.weights[:-1]) + p.weights[-1]  # einsum: each row on its own
            rel = np.arange(-BREATH, self.lead + 1)
            h = t[:, None] + rel
            speech = self.speech[np.clip(h, 0, n - 1) - b] & (h >= 0) & (h < n)
            near = speech[:, np.abs(rel) <= SPEECH_HANGOVER].any(1)
            k = np.argmax(speech[:, rel > 0] | (rel[rel > 0] == self.lead), 1) + 1  # frames to speech (or lead)
            coming = speech[np.arange(len(t)), BREATH + k]  # speech within `lead` frames...
            paused = ~(speech[:, :BREATH] & (rel[:BREATH] >= (k - BREATH)[:, None])).any(1)  # ... after BREATH silent
            raw[~near & ~(coming & paused)] = p.rest
            self.gated = np.vstack([self.gated, raw])
        end = gate_end if final else max(self.done, gate_end - p.radius)
        if end <= self.done:
            return np.zeros((0, p.weights.shape[1]))
        t = np.arange(self.done, end)
        out = np.zeros((len(t), p.weights.shape[1]))
        for j, w in zip(range(-p.radius, p.radius + 1), self.kernel):  # the same order for every frame
            out += w * self.gated[np.clip(t + j, 0, gate_end - 1) - b]
        self.done = end
        keep = max(0, self.done - max(p.radius, p.half, BREATH) - b)  # rows no later frame reaches
        self.feats, self.speech, self.gated = self.feats[keep:], self.speech[keep:], self.gated[keep:]
        self.base = b + keep
        return out


@dataclass(frozen=True)
class ShapeModel:
    """What the train_shape stage learns from the recording: its shape space, audio -> shape, and its A/V offset."""

    space: ShapeSpace
    predictor: AudioToShape
    offset: int  # frames; positive: the recording's audio lags its video

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, keyed `space.*`, `predictor.*` and `offset`: for an .npz, a checkpoint or ONNX metadata."""
        out = {f"space.{k}": v for k, v in self.space.save_arrays().items()}
        out.update({f"predictor.{k}": v for k, v in self.predictor.save_arrays().items()})
        return {**out, "offset": np.int64(self.offset)}

    @classmethod
    def from_arrays(cls, arrays: dict) -> ShapeModel:
        """Inverse of `arrays` (values may be arrays, tensors or lists)."""
        a = {k: np.asarray(v) for k, v in arrays.items()}
        space = ShapeSpace(*(a[f"space.{f}"] for f in ("reference", "mean", "components", "scale")))
        p = {f: a[f"predictor.{f}"] for f in ("mean", "std", "weights", "rest")}
        predictor = AudioToShape(
            **p,
            half=int(a["predictor.half"]),
            smooth=float(a["predictor.smooth"]),
            loud=float(a.get("predictor.loud", -np.inf)),  # models made before it: the gate starts from silence
        )
        return cls(space, predictor, int(a["offset"]))

    def save(self, path: str | os.PathLike) -> None:
        """Write a deterministic .npz, atomically."""
        save_npz(path, **self.arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShapeModel:
        """Read a train_shape output; a HygieError names a file of another layout."""
        try:
            with np.load(path) as z:
                return cls.from_arrays(dict(z))
        except (OSError, KeyError, ValueError) as e:
            raise HygieError(
                f"{path}: not a shape model made by train_shape ({e}). Rerun `dvc repro train_shape`."
            ) from e


def openings_at(space: ShapeSpace, coefficients: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The mouth openings [N] (`metrics.mouth_aperture`) of shapes `coefficients` [N, K] drawn at the poses of
    `landmarks` [N, 478, 3]: what FaceMesh would measure of them in those frames."""
    from hygie_lib.metrics import mouth_aperture

    placed = landmarks.copy()
    placed[:, MOUTH, :2] = space.place(coefficients, landmarks)
    return mouth_aperture(placed)


def learn_shapes(
    landmarks: np.ndarray,
    face: np.ndarray,
    mel: np.ndarray,
    per_frame: int,
    *,
    train_split: float,
    components: int,
    half: int,
    smooth: float,
    av_offset: int | str = "auto",
) -> tuple[ShapeModel, dict]:
    """Fit the shape space and audio -> shape on the training block of a recording; measure them on its held-out block.

    `av_offset` "auto" estimates the recording's A/V offset on all its frames (one number: the held-out block's
    mouths are never fitted), else it is taken as given. Returns the model and its metrics: the offset, its
    confidence and per-shift scores, the cross-validated explained variance, `aperture_corr`, how well the
    predicted shapes' mouth opening follows the real one on held-out frames (the ceiling for any renderer;
    `aperture_corr_live` with live's shorter lead, `aperture_corr_by_lead` with each of LEADS), and
    `speech_opening`: the mean real and predicted openings on each block's frames with speech (the model is fitted
    to the training block's; a held-out block spoken more open than it shows here, which its audio cannot teach).
    """
    from hygie_lib.metrics import closed_level, mouth_aperture
    from hygie_lib.split import time_split

    n = min(len(landmarks), mel.shape[1] // per_frame)
    landmarks, face, mel = landmarks[:n], face[:n], mel[:, : n * per_frame]
    fit_frames = np.flatnonzero(face[: int(round(n * train_split))])
    if len(fit_frames) < 50:
        raise HygieError(f"only {len(fit_frames)} training frames with a face; record a longer video (5-15 min).")
    space = ShapeSpace.fit(landmarks[fit_frames], components)
    shapes = np.nan_to_num(space.coefficients(landmarks))  # [n, K]; frames without a face are never used
    weight = space.scale**2 / (space.scale**2).sum()
    metrics: dict = {}
    if av_offset == "auto":
        offset, confidence, scores = estimate_offset(mel, per_frame, shapes, np.flatnonzero(face), np.ones(space.k))
        metrics.update(
            av_offset=offset,
            av_offset_confidence=round(confidence, 4),
            av_offset_scores={str(k): round(v, 4) for k, v in scores.items()},
        )
    else:
        offset = int(av_offset)
        metrics["av_offset"] = offset
    split = time_split(face, train_split=train_split, gap=2 * half + 1 + abs(offset))  # no audio heard on both sides
    if len(split.val_frames) < 10:
        raise HygieError(f"only {len(split.val_frames)} held-out frames with a face; record a longer video (5-15 min).")
    apertures = mouth_aperture(landmarks[split.train_frames])
    closed = split.train_frames[apertures <= closed_level(apertures)]  # the speaker's mouth at rest: closed
    predictor, cv = fit_audio_to_shape(
        mel,
        per_frame,
        shapes,
        split.train_frames,
        half=half,
        offset=offset,
        smooth=smooth,
        weight=weight,
        rest=shapes[closed].mean(0),
    )
    val = split.val_frames
    real = mouth_aperture(landmarks[val])
    predicted = {lead: predictor.predict(mel, per_frame, offset=offset, lead=lead) for lead in LEADS}
    by_lead = {
        str(k): round(float(np.corrcoef(real, openings_at(space, p[val], landmarks[val]))[0, 1]), 4)
        for k, p in predicted.items()
    }
    speech = ~silent_frames(mel, per_frame, predictor.loud)[np.clip(np.arange(n) + offset, 0, n - 1)]
    opening = {}
    for block, frames in (("train", split.train_frames), ("heldout", val)):
        frames = frames[speech[frames]]
        if not len(frames):  # a block without speech has no opening to tell
            opening.update({f"{block}_real": None, f"{block}_predicted": None})
            continue
        opening[f"{block}_real"] = round(float(np.mean(mouth_aperture(landmarks[frames]))), 4)
        default = openings_at(space, predicted[SPEECH_LEAD][frames], landmarks[frames])
        opening[f"{block}_predicted"] = round(float(np.mean(default)), 4)
    metrics.update(
        aperture_corr=by_lead[str(SPEECH_LEAD)],
        aperture_corr_live=by_lead[str(LIVE_LEAD)],
        aperture_corr_by_lead=by_lead,
        speech_opening=opening,
        explained_variance_cv=round(cv, 4),
        components=space.k,
        train_frames=len(split.train_frames),
        heldout_frames=len(val),
    )
    return ShapeModel(space, predictor, offset), metrics
