"""Live: a talking head driven by audio as it arrives, the engine of `hygie serve` and of `render` alike.

A `LiveSession` holds one model and one prepared template. Mono PCM goes in, in chunks of any size; out come video
frames, each with the audio it shows. The log-mel (`MelStream`) and what the model hears (its `condition_stream`)
are computed as the audio arrives, and a frame is drawn once the audio `model.lookahead` seconds past it is in: that
is the least latency. Frames are made by the same `Painter` as `render`'s, from the same numbers whatever the chunk
sizes, so a session fed a file gives the frames `render` writes (a test). With no speech the mouth closes and the
template keeps playing (ping-pong): a server feeds silence when nothing comes.
"""

from __future__ import annotations

import os

import numpy as np

from hygie_lib.crops import Crops
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError
from hygie_lib.render import Painter


class LiveSession:
    """One model and one prepared template, live: `push` audio (mono float32 at `model.data.sr`), get frames."""

    def __init__(
        self,
        model: MouthModel,
        template: Crops,
        template_video: str | os.PathLike,
        *,
        blend: str = "feather",
        batch: int = 8,
    ) -> None:
        self.model, self.batch = model, batch
        self.sr, self.fps = model.data.sr, model.data.fps
        self.painter = Painter(model, template, template_video, blend=blend)
        self.mel, self.cond = model.mel_stream(), model.condition_stream()
        self.audio = np.zeros(0, np.float32)  # samples from `audio_start` on, not yet sent with a frame
        self.audio_start = 0

    @property
    def frames_out(self) -> int:
        """Frames made so far."""
        return self.painter.k

    def push(self, pcm: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(RGB frame, its audio samples) for every frame the audio so far completes."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        if not np.isfinite(pcm).all():
            raise HygieError("live audio: the samples hold NaN or infinity; send PCM in [-1, 1].")
        self.audio = np.concatenate([self.audio, pcm])
        return self._paint(self.cond.push(self.mel.push(pcm)))

    def flush(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The last frames, the audio having ended (the audio's duration decides their number, as in `render`)."""
        rows = self.cond.push(self.mel.flush())
        return self._paint(np.concatenate([rows, self.cond.flush()]))

    def close(self) -> None:
        """Free the template's decoder and frame cache."""
        self.painter.frames.close()

    def _paint(self, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Frames for the next `len(rows)` output frames, in batches, each with its share of the audio."""
        out = []
        for i in range(0, len(rows), self.batch):
            r, k0 = rows[i : i + self.batch], self.painter.k
            frames = self.painter.paint(
                len(r), lambda kf, lm, bx, r=r, k0=k0: self.model.conditions(r[kf - k0], lm, bx)
            )
            out += [(frame, self._audio_of(k0 + j)) for j, frame in enumerate(frames)]
        return out

    def _conditions(self, rows: np.ndarray, k0: int, ks: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray):
        """The model's condition input for output frames `ks`, from the rows of frames k0 on."""
        return self.model.conditions(rows[ks - k0], landmarks, boxes)

    def _audio_of(self, k: int) -> np.ndarray:
        """The samples frame k shows (zeros past the audio's end); forgets those before them."""
        a, b = (round(k * self.sr / self.fps), round((k + 1) * self.sr / self.fps))
        clip = self.audio[a - self.audio_start : b - self.audio_start]
        clip = np.pad(clip, (0, b - a - len(clip)))
        self.audio, self.audio_start = self.audio[b - self.audio_start :], b
        return clip
