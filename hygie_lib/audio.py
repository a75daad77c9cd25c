"""Audio: decode any container to mono PCM, WAV I/O, frame-aligned log-mel (the `Mel` file), per-frame mel windows."""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import av
import librosa
import numpy as np

from hygie_lib.io import HygieError, atomic_path, save_npz
from hygie_lib.video import open_media

LOG_FLOOR = 1e-5  # mel power floor before the log (silence reads as log(1e-5) = -11.5)


def iter_audio(path: str | os.PathLike, sr: int) -> Iterator[np.ndarray]:
    """Decode the first audio stream of any file (wav, mp3, m4a, flac, mp4, mov, mkv, webm) to mono float32 at `sr`,
    chunk by chunk as it is read (memory does not grow with the file's length)."""
    path = Path(path)
    with open_media(path) as c:
        if not c.streams.audio:
            raise HygieError(
                f"{path}: has no audio stream. Record the video with sound, or give the audio as a separate file."
            )
        stream = c.streams.audio[0]
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        left = round(declared * sr) if declared is not None else None  # AAC pads its last frame: keep the real length
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        try:
            for frame in chain(c.decode(stream), [None]):  # None flushes the resampler
                for out in resampler.resample(frame):
                    y = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    if left is not None:
                        y, left = y[:left], max(0, left - len(y))
                    if len(y):
                        yield y
        except av.error.FFmpegError as e:
            raise HygieError(f"{path}: audio decoding failed ({e}). The file is corrupt or truncated.") from e


def load_audio(path: str | os.PathLike, sr: int) -> np.ndarray:
    """The whole first audio stream of any file as mono float32 at `sr` (see `iter_audio`)."""
    chunks = list(iter_audio(path, sr))
    if not chunks:
        raise HygieError(f"{path}: the audio stream is empty (0 samples). Re-export the file with its sound.")
    return np.concatenate(chunks)


def write_wav(path: str | os.PathLike, y: np.ndarray, sr: int) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM WAV, atomically."""
    pcm = (np.clip(y, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a 16-bit mono WAV written by `write_wav`: (float32 samples, sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise HygieError(f"{path}: expected 16-bit mono WAV; run the extract_audio stage to make one.")
        y = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return y.astype(np.float32) / 32767.0, w.getframerate()


def log_mel(
    y: np.ndarray, sr: int, *, fps: float, n_mels: int, per_frame: int, n_fft: int, n_frames: int | None = None
) -> np.ndarray:
    """Log-mel spectrogram [n_mels, n_frames * per_frame], column c centred on time c / (fps * per_frame).

    Column `t * per_frame` is centred exactly on video frame t (time t / fps), for any fps: window centres are
    rounded to the nearest sample rather than stepping by a rounded hop, so the alignment never drifts.
    `n_frames` defaults to the video frames the audio covers (ceil(duration * fps)).
    """
    if y.size < n_fft:
        raise HygieError(
            f"audio of {y.size / sr * 1000:.0f} ms is shorter than one analysis window ({n_fft / sr * 1000:.0f} ms)."
        )
    if n_frames is None:
        n_frames = int(np.ceil(len(y) / sr * fps - 1e-6))
    n_cols = n_frames * per_frame
    centres = np.round(np.arange(n_cols) * sr / (fps * per_frame)).astype(np.int64)
    padded = np.pad(y.astype(np.float32), (n_fft // 2, n_fft // 2 + max(0, centres[-1] + 1 - len(y))))
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    fbank = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)  # [n_mels, n_fft//2+1]
    out = np.empty((n_mels, n_cols), np.float32)
    offsets = np.arange(n_fft)
    for c0 in range(0, n_cols, 4096):  # chunks keep memory flat for long recordings
        frames = padded[centres[c0 : c0 + 4096, None] + offsets] * window  # [chunk, n_fft]
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        out[:, c0 : c0 + len(frames)] = np.log(np.maximum(fbank @ power.T, LOG_FLOOR))
    return out


def mel_windows(mel: np.ndarray, frames: np.ndarray, *, per_frame: int, win: int) -> np.ndarray:
    """The `win` mel columns centred on each video frame, [*frames.shape, n_mels, win] (edges repeated)."""
    start = np.asarray(frames) * per_frame - win // 2
    idx = np.clip(start[..., None] + np.arange(win), 0, mel.shape[1] - 1)  # [..., win]
    return np.moveaxis(mel[:, idx], 0, -2)


def frame_energy(mel: np.ndarray, per_frame: int) -> np.ndarray:
    """Log power of each video frame [n_frames]: the mel power summed over bands, averaged over the frame's columns."""
    n = mel.shape[1] // per_frame
    power = np.exp(mel[:, : n * per_frame].astype(np.float64)).sum(0)  # [n * per_frame]
    return np.log(power.reshape(n, per_frame).mean(1))


@dataclass(frozen=True)
class Mel:
    """A clip's log-mel [n_mels, n_frames * per_frame] and the settings it was made with (the compute_mel output)."""

    mel: np.ndarray
    sr: int
    n_fft: int
    fps: float
    per_frame: int

    @property
    def n_mels(self) -> int:
        """Mel bands."""
        return self.mel.shape[0]

    @property
    def n_frames(self) -> int:
        """Video frames the mel covers."""
        return self.mel.shape[1] // self.per_frame

    def save(self, path: str | os.PathLike) -> None:
        """Write a deterministic .npz, atomically."""
        save_npz(
            path,
            mel=self.mel,
            sr=np.int64(self.sr),
            n_fft=np.int64(self.n_fft),
            fps=np.float64(self.fps),
            per_frame=np.int64(self.per_frame),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mel:
        """Read a compute_mel output; a HygieError names a file of another layout."""
        try:
            with np.load(path) as z:
                return cls(z["mel"], int(z["sr"]), int(z["n_fft"]), float(z["fps"]), int(z["per_frame"]))
        except (OSError, KeyError, ValueError) as e:
            raise HygieError(f"{path}: not a mel file made by compute_mel ({e}). Rerun `dvc repro compute_mel`.") from e

    @classmethod
    def of(cls, y: np.ndarray, sr: int, *, fps: float, n_mels: int, per_frame: int, n_fft: int) -> Mel:
        """The log-mel of mono audio `y` at `sr` (see `log_mel`), with its settings."""
        return cls(
            log_mel(y, sr, fps=fps, n_mels=n_mels, per_frame=per_frame, n_fft=n_fft), sr, n_fft, float(fps), per_frame
        )
