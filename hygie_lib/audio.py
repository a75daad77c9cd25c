"""Audio: decode any container to mono PCM, WAV I/O, frame-aligned log-mel (the `Mel` file), per-frame mel windows."""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

import av
import librosa
import numpy as np

from hygie_lib.io import HygieError, atomic_path, save_npz
from hygie_lib.video import open_media

LOG_FLOOR = 1e-5  # mel power floor before the log (silence reads as log(1e-5) = -11.5)
LEVEL_MAX_DB = 20.0  # Mel.at_level moves an audio by at most this much (mostly silence: its loud level is noise)
SILENCE_DB = 30.0  # a frame more than this below the audio's loud level is silent
LONG_SILENCE = 50  # loud_level leaves out silences longer than this many frames (2 s at 25 fps): a lead-in, a tail


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
    `n_frames` defaults to the video frames the audio covers (ceil(duration * fps)). It is `MelStream` fed the whole
    audio at once, so a stream gives the same columns.
    """
    if y.size < n_fft:
        raise HygieError(
            f"audio of {y.size / sr * 1000:.0f} ms is shorter than one analysis window ({n_fft / sr * 1000:.0f} ms)."
        )
    stream = MelStream(sr, fps=fps, n_mels=n_mels, per_frame=per_frame, n_fft=n_fft)
    return np.hstack([stream.push(y), stream.flush(n_frames)])


class MelStream:
    """`log_mel` for audio arriving in chunks of any size: each column as soon as the samples it hears have arrived
    (half an STFT window after its centre), the same numbers whatever the chunking (every column on its own)."""

    def __init__(self, sr: int, *, fps: float, n_mels: int, per_frame: int, n_fft: int) -> None:
        self.sr, self.rate, self.n_fft = sr, fps * per_frame, n_fft
        self.per_frame, self.fps = per_frame, fps
        self.window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
        self.fbank = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)  # [n_mels, n_fft//2+1]
        self.buf = np.zeros(n_fft // 2, np.float32)  # samples from `first` on; the zeros before the audio's start
        self.first = -(n_fft // 2)
        self.heard = 0  # samples pushed
        self.cols = 0  # columns made

    def centre(self, c: np.ndarray | int) -> np.ndarray:
        """Sample index at the centre of column(s) c."""
        return np.round(np.asarray(c) * self.sr / self.rate).astype(np.int64)

    def push(self, y: np.ndarray) -> np.ndarray:
        """The columns [n_mels, new] that the samples so far complete."""
        self.buf = np.concatenate([self.buf, np.asarray(y, np.float32).reshape(-1)])
        self.heard += len(y)
        # column c is complete once centre(c) + n_fft / 2 samples have arrived
        ready = int(np.ceil((self.heard - self.n_fft // 2 + 0.5) * self.rate / self.sr))
        while self.centre(ready) + self.n_fft // 2 > self.heard:
            ready -= 1
        return self._columns(max(ready + 1, self.cols))

    def flush(self, n_frames: int | None = None) -> np.ndarray:
        """The last columns, up to `n_frames` video frames (default: those the audio covers), zeros after its end."""
        if n_frames is None:
            n_frames = int(np.ceil(self.heard / self.sr * self.fps - 1e-6))
        end = n_frames * self.per_frame
        if end > self.cols:
            pad = max(0, int(self.centre(end - 1)) + self.n_fft // 2 - (self.first + len(self.buf)))
            self.buf = np.concatenate([self.buf, np.zeros(pad, np.float32)])
        return self._columns(end)

    def _columns(self, end: int) -> np.ndarray:
        """Columns self.cols..end-1 from the buffer; drops the samples no later column needs."""
        out = np.empty((self.fbank.shape[0], max(0, end - self.cols)), np.float32)
        offsets = np.arange(self.n_fft) - self.n_fft // 2 - self.first
        for c0 in range(self.cols, end, 1024):  # chunks keep memory flat for long recordings
            frames = self.buf[self.centre(np.arange(c0, min(end, c0 + 1024)))[:, None] + offsets] * self.window
            power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [chunk, n_fft // 2 + 1]
            # einsum, not BLAS: each column summed the same way however many are computed together
            out[:, c0 - self.cols : c0 - self.cols + len(frames)] = np.log(
                np.maximum(np.einsum("mf,cf->mc", self.fbank, power), LOG_FLOOR)
            )
        self.cols = max(self.cols, end)
        keep = int(self.centre(self.cols)) - self.n_fft // 2  # the next column's first sample
        if keep > self.first:
            self.buf, self.first = self.buf[keep - self.first :], keep
        return out


def mel_windows(mel: np.ndarray, frames: np.ndarray, *, per_frame: int, win: int) -> np.ndarray:
    """The `win` mel columns centred on each video frame, [*frames.shape, n_mels, win] (edges repeated)."""
    start = np.asarray(frames) * per_frame - win // 2
    idx = np.clip(start[..., None] + np.arange(win), 0, mel.shape[1] - 1)  # [..., win]
    return np.moveaxis(mel[:, idx], 0, -2)


class MelWindowStream:
    """`mel_windows` for mel columns arriving in chunks: each frame's window once its last column has arrived."""

    def __init__(self, per_frame: int, win: int) -> None:
        self.per_frame, self.win = per_frame, win
        self.cols: np.ndarray | None = None  # the columns kept, from column `base` on
        self.base = self.done = 0  # first column kept; frames whose window is out

    def push(self, mel: np.ndarray) -> np.ndarray:
        """Windows [new, n_mels, win] of the frames these columns complete."""
        self.cols = mel if self.cols is None else np.hstack([self.cols, mel])
        n = self.base + self.cols.shape[1]  # columns heard
        return self._windows((n - (self.win - self.win // 2)) // self.per_frame + 1, n)

    def flush(self) -> np.ndarray:
        """The windows of the last frames, the audio's end now known (its last column repeated, as `mel_windows`)."""
        n = self.base + (0 if self.cols is None else self.cols.shape[1])
        return self._windows(n // self.per_frame, n)

    def _windows(self, end: int, n: int) -> np.ndarray:
        """Windows of frames done..end-1 over the `n` columns heard; drops the columns no later window needs."""
        frames = np.arange(self.done, max(self.done, end))
        if self.cols is None or not len(frames):
            return np.zeros((0, 0 if self.cols is None else self.cols.shape[0], self.win), np.float32)
        start = frames[:, None] * self.per_frame - self.win // 2 + np.arange(self.win)
        out = np.moveaxis(self.cols[:, np.clip(start, 0, n - 1) - self.base], 0, -2)
        self.done = int(frames[-1]) + 1
        keep = max(0, self.done * self.per_frame - self.win // 2) - self.base
        if keep > 0:
            self.cols, self.base = self.cols[:, keep:], self.base + keep
        return out


def frame_energy(mel: np.ndarray, per_frame: int) -> np.ndarray:
    """Log power of each video frame [n_frames]: the mel power summed over bands, averaged over the frame's columns."""
    n = mel.shape[1] // per_frame
    power = np.exp(mel[:, : n * per_frame].astype(np.float64)).sum(0)  # [n * per_frame]
    return np.log(power.reshape(n, per_frame).mean(1))


def loud_level(energy: np.ndarray) -> float:
    """An audio's loud level: the 95th percentile of its frames' log power (`frame_energy`), its silences (SILENCE_DB
    under its loudest frame) longer than LONG_SILENCE left out, so that a lead-in, a tail or a long pause does not
    lower it (benchmarks/audio_level.py)."""
    quiet = np.concatenate([[0], energy < energy.max() - SILENCE_DB * np.log(10) / 10, [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(quiet)).reshape(-1, 2)  # [start, end) of each silence
    keep = np.ones(len(energy), bool)
    for start, end in edges[edges[:, 1] - edges[:, 0] > LONG_SILENCE]:
        keep[start:end] = False
    return float(np.percentile(energy[keep], 95))


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

    @property
    def loud(self) -> float:
        """Its loud level (`loud_level`), log power."""
        return loud_level(frame_energy(self.mel, self.per_frame))

    def at_level(self, loud: float) -> Mel:
        """The same audio as if recorded louder or quieter: its loud level (`loud_level`) brought to `loud` (log
        power; the training recording's, `AudioToShape.loud`), by at most LEVEL_MAX_DB (`gain_to`, `gained`)."""
        return self.gained(self.gain_to(loud))

    def gain_to(self, loud: float) -> float:
        """The gain in dB that brings its loud level to `loud`, within LEVEL_MAX_DB; 0 for a `loud` of -inf (a model
        made before it kept its recording's level)."""
        if not np.isfinite(loud) or self.n_frames == 0:
            return 0.0
        gain = (loud - self.loud) * 10 / np.log(10)
        return float(np.clip(gain, -LEVEL_MAX_DB, LEVEL_MAX_DB))

    def gained(self, db: float) -> Mel:
        """The same audio `db` louder, every band: exact when it turns the audio down; turned up, what lay at
        LOG_FLOOR stays there (nothing below it was kept)."""
        if db == 0:
            return self
        floor = np.float32(np.log(LOG_FLOOR))
        mel = np.where(self.mel <= floor + 1e-4, self.mel, np.maximum(self.mel + db * np.log(10) / 10, floor))
        return replace(self, mel=mel.astype(self.mel.dtype))

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
