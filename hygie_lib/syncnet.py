"""The sync expert: a SyncNet-style pair of encoders trained on the user's own recording, no pretrained weights.

A mouth clip (SYNC_FRAMES consecutive mouth crops, grey, SYNC_SIZE px) and the mel around it are embedded so that
in-sync pairs are close and pairs shifted by 2 frames or more, or from other moments, are far (InfoNCE). It then
judges any video and audio of that person: the distance of every clip to the audio at offsets -SCAN..SCAN frames
gives the best offset and a confidence (like LSE-C: the median distance over offsets minus the distance at the
best one). Frozen, it is also a loss for the generator (`sync_loss`), as in Wav2Lip.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from hygie_lib.audio import Mel, mel_windows
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.checkpoint import save_state
from hygie_lib.crops import Crops, crop, mouth_boxes, mouth_mask, smooth_boxes
from hygie_lib.io import HygieError
from hygie_lib.landmarks import detect_video
from hygie_lib.split import time_split
from hygie_lib.video import iter_frames

SYNC_FRAMES = 5  # frames per mouth clip
SYNC_SIZE = 32  # side of the grey mouth crops the expert sees
SCAN = 15  # offsets judged either way, in frames
NEGATIVE_SHIFTS = (2, 4, 8)  # hard negatives: the clip's own audio this many frames early or late
TEMPERATURE = 0.1
JUDGE_SIZE = 96  # crop side when judging a video (the expert sees the mask's box at SYNC_SIZE anyway)
GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma


def _block(cin: int, cout: int) -> nn.Sequential:
    """Stride-2 3x3 conv, GroupNorm, SiLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.GroupNorm(8, cout), nn.SiLU(inplace=True))


def _encoder(cin: int, emb: int) -> nn.Sequential:
    """Four stride-2 conv blocks, a global average pool and a linear map to the embedding."""
    convs = [_block(cin, 32), _block(32, 64), _block(64, 96), _block(96, 128)]
    return nn.Sequential(*convs, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, emb))


class SyncNet(nn.Module):
    """Mouth clips [B, SYNC_FRAMES, S, S] and mel windows [B, n_mels, win] -> unit embeddings [B, emb] each."""

    def __init__(self, *, emb: int = 64):
        super().__init__()
        self.config = {"emb": emb}
        self.video = _encoder(SYNC_FRAMES, emb)
        self.audio = _encoder(1, emb)

    def embed_video(self, clips: Tensor) -> Tensor:
        """[B, SYNC_FRAMES, S, S] grey in [0, 1] -> [B, emb], unit length."""
        x = clips - clips.mean(dim=(1, 2, 3), keepdim=True)  # brightness says nothing about sync
        return F.normalize(self.video(x / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-3)), dim=1)

    def embed_audio(self, mels: Tensor) -> Tensor:
        """[B, n_mels, win] natural-log mel -> [B, emb], unit length."""
        return F.normalize(self.audio(((mels + 4.0) / 4.0)[:, None]), dim=1)


def grey_mouths(crops: Tensor, mask: np.ndarray) -> Tensor:
    """Crops [..., 3, S, S] in [0, 1] -> the mask's bounding box, grey, [..., SYNC_SIZE, SYNC_SIZE] (differentiable)."""
    ys, xs = np.nonzero(mask)
    box = crops[..., ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    grey = torch.einsum("...chw,c->...hw", box, torch.tensor(GREY, dtype=box.dtype, device=box.device))
    flat = grey.reshape(-1, 1, *grey.shape[-2:])
    return F.interpolate(flat, size=(SYNC_SIZE, SYNC_SIZE), mode="area").view(*grey.shape[:-2], SYNC_SIZE, SYNC_SIZE)


def image_mouths(crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 crops [N, S, S, 3] -> grey mouths [N, SYNC_SIZE, SYNC_SIZE] float32 (see `grey_mouths`)."""
    out = [
        grey_mouths(torch.from_numpy(c).permute(0, 3, 1, 2).float() / 255.0, mask) for c in np.array_split(crops, 64)
    ]
    return torch.cat(out).numpy()


def clip_frames(starts: np.ndarray) -> np.ndarray:
    """Frames [len(starts), SYNC_FRAMES] of the clips starting at `starts`."""
    return np.asarray(starts)[:, None] + np.arange(SYNC_FRAMES)


def clip_starts(face: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The starts among `frames` of the clips whose SYNC_FRAMES frames all have a face."""
    frames = frames[frames + SYNC_FRAMES <= len(face)]
    return frames[face[clip_frames(frames)].all(1)]


def audio_windows(mel: np.ndarray, centres: np.ndarray, *, per_frame: int) -> np.ndarray:
    """The mel a clip hears: SYNC_FRAMES frames' worth of columns centred on the clip's middle frame."""
    return mel_windows(mel, centres, per_frame=per_frame, win=SYNC_FRAMES * per_frame)


@dataclass
class SyncExpert:
    """A trained SyncNet and how it reads its inputs; `score` judges mouths against an audio."""

    net: SyncNet
    hears: dict  # how the mel it hears is made: Mel's sr, n_fft, n_mels, per_frame and fps
    pad: float  # MOUTH_PAD of the crops it was trained on (the mask's box is what it looks at)

    @property
    def per_frame(self) -> int:
        """Mel columns per video frame."""
        return int(self.hears["per_frame"])

    def mel(self, y: np.ndarray) -> Mel:
        """The log-mel of mono audio `y` (at hears["sr"]), made as the expert hears it."""
        h = self.hears
        return Mel.of(y, h["sr"], fps=h["fps"], n_mels=h["n_mels"], per_frame=h["per_frame"], n_fft=h["n_fft"])

    def save(self, path: str | os.PathLike) -> None:
        """Write it atomically; it loads with torch.load(weights_only=True)."""
        state = {"config": self.net.config, "state_dict": self.net.state_dict(), "hears": self.hears, "pad": self.pad}
        save_state(path, state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SyncExpert:
        """Read a train_sync output; a HygieError names a missing or unusable file."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = SyncNet(**state["config"])
            net.load_state_dict(state["state_dict"])
        except Exception as e:  # any failure means the file is not a usable sync expert
            raise HygieError(
                f"{path}: not a sync expert made by train_sync ({type(e).__name__}). Run `dvc repro`."
            ) from e
        return cls(net.eval().requires_grad_(False), dict(state["hears"]), float(state["pad"]))

    @torch.no_grad()
    def score(self, mouths: np.ndarray, mel: np.ndarray, starts: np.ndarray) -> dict[str, float]:
        """Sync of grey mouths [N, SIZE, SIZE] with `mel` [n_mels, N * per_frame] over clips at `starts`: the best
        offset in frames (positive: the audio comes late), the confidence (median distance over offsets minus the
        best one) and the distance at the best offset."""
        if len(starts) == 0:
            return {"offset": 0, "confidence": float("nan"), "distance": float("nan")}
        self.net.eval()
        v = self.net.embed_video(torch.from_numpy(mouths[clip_frames(starts)]))
        mid = starts + SYNC_FRAMES // 2
        dist = []
        for s in range(-SCAN, SCAN + 1):
            a = self.net.embed_audio(torch.from_numpy(audio_windows(mel, mid + s, per_frame=self.per_frame)))
            dist.append(float((v - a).norm(dim=1).mean()))
        best = int(np.argmin(dist))
        return {"offset": best - SCAN, "confidence": float(np.median(dist) - dist[best]), "distance": dist[best]}


def sync_loss(expert: SyncExpert, pred: Tensor, mask: np.ndarray, mels: Tensor) -> Tensor:
    """1 - cosine similarity between generated clips [B, SYNC_FRAMES, 3, S, S] and their audio [B, n_mels, win]:
    the frozen expert's verdict, differentiable in the generated pixels."""
    v = expert.net.embed_video(grey_mouths(pred, mask))
    with torch.no_grad():
        a = expert.net.embed_audio(mels)
    return (1.0 - (v * a).sum(1)).mean()


def train_sync(
    mouths: np.ndarray,
    mel: Mel,
    starts: np.ndarray,
    *,
    offset: int,
    pad: float,
    steps: int,
    batch: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[SyncExpert, list[float]]:
    """Train the expert on clips at `starts` of a recording (grey mouths [N, SIZE, SIZE]; its mel read `offset`
    frames late, so pairs are truly in sync) for `steps` batches; returns it and the mean loss of each 10% of them."""
    per_frame = mel.per_frame
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SyncNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    shifts = np.array([0, *NEGATIVE_SHIFTS, *(-s for s in NEGATIVE_SHIFTS)])
    torch.set_num_threads(os.cpu_count() or 1)
    losses, window = [], []
    net.train()
    for step in tqdm(range(steps), desc="sync expert", unit="step", disable=not progress):
        s = rng.choice(starts, size=min(batch, len(starts)), replace=False)
        clips = mouths[clip_frames(s)] * rng.uniform(0.8, 1.2, (len(s), 1, 1, 1)).astype(np.float32)
        mid = s + SYNC_FRAMES // 2 + offset
        mels = np.stack([audio_windows(mel.mel, mid + k, per_frame=per_frame) for k in shifts], 1)  # [B, K, M, W]
        v = net.embed_video(torch.from_numpy(clips))  # [B, emb]
        a = net.embed_audio(torch.from_numpy(mels.reshape(-1, *mels.shape[2:]))).view(len(s), len(shifts), -1)
        own = torch.einsum("be,bke->bk", v, a)  # the clip against its own audio at each shift (in sync first)
        others = (v @ a[:, 0].T).masked_fill(torch.eye(len(s), dtype=torch.bool), -1e4)  # other clips' audio
        loss = F.cross_entropy(torch.cat([own, others], 1) / TEMPERATURE, torch.zeros(len(s), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        window.append(loss.item())
        if (step + 1) % max(1, steps // 10) == 0:
            losses.append(float(np.mean(window)))
            window = []
    hears = {"sr": mel.sr, "n_fft": mel.n_fft, "n_mels": mel.n_mels, "per_frame": per_frame, "fps": mel.fps}
    return SyncExpert(net.eval(), hears, pad), losses


def learn_sync(
    crops: Crops, mel: Mel, shapes: ShapeModel, *, train_split: float, steps: int, seed: int = 0
) -> tuple[SyncExpert, dict]:
    """Train the expert on the training block of a recording (its audio moved by the recording's A/V offset) and
    judge its held-out block: the raw recording should come out `offset` frames late, and on time once corrected."""
    mouths = image_mouths(crops.crops, crops.mask)
    split = time_split(crops.face, train_split=train_split, gap=SYNC_FRAMES + abs(shapes.offset))
    train = clip_starts(crops.face, split.train_frames[: -SYNC_FRAMES + 1])
    held_out = clip_starts(crops.face, split.val_frames)
    if len(train) < 32 or len(held_out) == 0:
        raise HygieError(f"only {len(train)} training clips for the sync expert; record a longer video (5-15 min).")
    expert, losses = train_sync(mouths, mel, train, offset=shapes.offset, pad=crops.pad, steps=steps, seed=seed)
    raw = expert.score(mouths, mel.mel, held_out)
    on_time = expert.score(mouths, np.roll(mel.mel, -shapes.offset * mel.per_frame, axis=1), held_out)
    metrics = {
        "loss": [round(v, 4) for v in losses],
        "heldout_offset_raw": raw["offset"],
        "heldout_offset_corrected": on_time["offset"],
        "heldout_confidence": round(on_time["confidence"], 4),
    }
    return expert, metrics


def judge_frames(
    expert: SyncExpert, frames: Iterable[np.ndarray], boxes: np.ndarray, face: np.ndarray, mel: np.ndarray
) -> dict[str, float]:
    """Sync of video frames (RGB, the mouth at `boxes` [N, 3] where `face`) with `mel` [n_mels, N * per_frame]."""
    mask = mouth_mask(JUDGE_SIZE, expert.pad)
    crops = np.stack([crop(f, b, JUDGE_SIZE) for f, b in zip(frames, boxes)])
    n = min(len(crops), mel.shape[1] // expert.per_frame)
    return expert.score(image_mouths(crops[:n], mask), mel, clip_starts(face[:n], np.arange(n)))


def judge_video(
    expert: SyncExpert, video: str | os.PathLike, mel: np.ndarray, fps: float, landmarks: np.ndarray | None = None
) -> dict[str, float]:
    """Sync of any video of the speaker with `mel`: its mouths found by FaceMesh (or `landmarks` [N, 478, 3])."""
    landmarks = detect_video(video, fps, progress=False) if landmarks is None else landmarks
    face = ~np.isnan(landmarks[:, 0, 0])
    if not face.any():
        raise HygieError(f"{video}: no face found in any frame, so there is no mouth to judge.")
    boxes = smooth_boxes(mouth_boxes(landmarks, expert.pad), 0.7)
    return judge_frames(expert, iter_frames(video, fps), boxes, face, mel)
