"""The sync expert: a SyncNet-style pair of encoders trained on the user's own recording, no pretrained weights.

A mouth clip (SYNC_FRAMES consecutive mouth crops, grey, SYNC_SIZE px) and the mel around it are embedded so that
in-sync pairs are close and pairs shifted by 2 frames or more, or from other moments, are far (InfoNCE). It then
judges any video and audio of that person: the distance of every clip to the audio at offsets -SCAN..SCAN frames
gives the best offset and a confidence (LSE-C: the median distance over offsets minus the distance at the best).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from hygie_lib.audio import mel_windows

SYNC_FRAMES = 5  # frames per mouth clip
SYNC_SIZE = 48  # side of the grey mouth crops the expert sees
SCAN = 15  # offsets judged either way, in frames
NEGATIVE_SHIFTS = (2, 3, 4, 6, 8, 12)  # hard negatives: the clip's own audio this many frames early or late
TEMPERATURE = 0.1


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(8, cout), nn.SiLU(inplace=True))


class SyncNet(nn.Module):
    """Mouth clips [B, SYNC_FRAMES, S, S] and mel windows [B, n_mels, win] -> unit embeddings [B, emb] each."""

    def __init__(self, *, n_mels: int, win: int, emb: int = 64):
        super().__init__()
        self.config = {"n_mels": n_mels, "win": win, "emb": emb}
        self.video = nn.Sequential(
            _block(SYNC_FRAMES, 32, 1),
            _block(32, 64, 2),
            _block(64, 96, 2),
            _block(96, 128, 2),
            _block(128, 128, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, emb),
        )
        self.audio = nn.Sequential(
            _block(1, 32, 1),
            _block(32, 64, 2),
            _block(64, 96, 2),
            _block(96, 128, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, emb),
        )

    def embed_video(self, clips: Tensor) -> Tensor:
        """[B, SYNC_FRAMES, S, S] grey in [0, 1] -> [B, emb], unit length."""
        x = clips - clips.mean(dim=(1, 2, 3), keepdim=True)  # brightness does not say anything about sync
        return F.normalize(self.video(x / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-3)), dim=1)

    def embed_audio(self, mels: Tensor) -> Tensor:
        """[B, n_mels, win] natural-log mel -> [B, emb], unit length."""
        return F.normalize(self.audio(((mels + 4.0) / 4.0)[:, None]), dim=1)


def grey_mouths(crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Crops [N, S, S, 3] uint8 -> the mask's bounding box, grey, SYNC_SIZE x SYNC_SIZE float32 [N, SIZE, SIZE]."""
    ys, xs = np.nonzero(mask)
    box = crops[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    out = np.empty((len(crops), SYNC_SIZE, SYNC_SIZE), np.float32)
    for i, c in enumerate(box):
        out[i] = cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (SYNC_SIZE, SYNC_SIZE), interpolation=cv2.INTER_AREA)
    return out / 255.0


def clip_frames(starts: np.ndarray) -> np.ndarray:
    """Frames [len(starts), SYNC_FRAMES] of the clips starting at `starts`."""
    return np.asarray(starts)[:, None] + np.arange(SYNC_FRAMES)


def audio_windows(mel: np.ndarray, centres: np.ndarray, *, per_frame: int) -> np.ndarray:
    """The mel a clip hears: SYNC_FRAMES frames' worth of columns centred on the clip's middle frame."""
    return mel_windows(mel, centres, per_frame=per_frame, win=SYNC_FRAMES * per_frame)


@dataclass
class SyncExpert:
    """A trained SyncNet with how it reads its inputs; `score` judges a video's mouths against an audio."""

    net: SyncNet
    per_frame: int

    @torch.no_grad()
    def embed(self, mouths: np.ndarray, mel: np.ndarray, starts: np.ndarray, offsets: range) -> tuple[Tensor, Tensor]:
        """Video embeddings [C, emb] of the clips at `starts` and audio embeddings [len(offsets), C, emb] of their
        audio moved by each offset."""
        self.net.eval()
        v = self.net.embed_video(torch.from_numpy(mouths[clip_frames(starts)]))
        mid = starts + SYNC_FRAMES // 2
        a = torch.stack(
            [
                self.net.embed_audio(torch.from_numpy(audio_windows(mel, mid + s, per_frame=self.per_frame)))
                for s in offsets
            ]
        )
        return v, a

    def score(self, mouths: np.ndarray, mel: np.ndarray, starts: np.ndarray) -> dict[str, float]:
        """Sync of mouths [N, SIZE, SIZE] (grey_mouths) with `mel`, over clips at `starts`: the best offset in frames
        (positive: the audio is late), the confidence (median distance over offsets minus the best one, LSE-C)
        and the distance at the best offset (LSE-D)."""
        offsets = range(-SCAN, SCAN + 1)
        v, a = self.embed(mouths, mel, starts, offsets)
        dist = (v[None] - a).norm(dim=2).mean(1).numpy()  # [offsets]
        best = int(np.argmin(dist))
        return {
            "offset": offsets[best],
            "confidence": float(np.median(dist) - dist[best]),
            "distance": float(dist[best]),
        }


def train_sync(
    mouths: np.ndarray,
    mel: np.ndarray,
    per_frame: int,
    starts: np.ndarray,
    *,
    offset: int,
    epochs: int,
    batch: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[SyncExpert, list[float]]:
    """Train the expert on clips at `starts` of a recording (mouths [N, SIZE, SIZE], its mel read `offset` frames
    late); returns it and the loss per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SyncNet(n_mels=mel.shape[0], win=SYNC_FRAMES * per_frame)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    shifts = np.array([0, *NEGATIVE_SHIFTS, *(-s for s in NEGATIVE_SHIFTS)])
    losses = []
    torch.set_num_threads(os.cpu_count() or 1)
    for _ in tqdm(range(epochs), desc="sync expert", unit="epoch", disable=not progress):
        net.train()
        order, total = rng.permutation(starts), 0.0
        for i in range(0, len(order) - batch + 1, batch):
            s = order[i : i + batch]
            clips = mouths[clip_frames(s)] * rng.uniform(0.8, 1.2, (len(s), 1, 1, 1)).astype(np.float32)
            mid = s + SYNC_FRAMES // 2 + offset
            mels = np.stack([audio_windows(mel, mid + k, per_frame=per_frame) for k in shifts], 1)  # [B, K, M, W]
            v = net.embed_video(torch.from_numpy(clips))  # [B, emb]
            a = net.embed_audio(torch.from_numpy(mels.reshape(-1, *mels.shape[2:]))).view(len(s), len(shifts), -1)
            own = torch.einsum("be,bke->bk", v, a)  # the clip against its own audio, at each shift (0 first)
            others = v @ a[:, 0].T  # the clip against the other clips' in-sync audio
            others = others.masked_fill(torch.eye(len(s), dtype=torch.bool), -1e4)
            logits = torch.cat([own, others], 1) / TEMPERATURE
            loss = F.cross_entropy(logits, torch.zeros(len(s), dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(s)
        losses.append(total / max(1, len(order) // batch * batch))
    return SyncExpert(net.eval(), per_frame), losses
