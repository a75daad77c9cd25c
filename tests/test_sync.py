"""The sync expert: it learns which audio goes with which mouth, finds an offset, judges videos, and is a loss."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from hygie_lib.audio import Mel
from hygie_lib.cli import main as hygie
from hygie_lib.syncnet import SYNC_SIZE, SyncExpert, SyncNet, clip_starts, sync_loss, train_sync


def talking(n: int = 600, seed: int = 0) -> tuple[np.ndarray, Mel]:
    """Grey mouths [n, SIZE, SIZE] whose opening follows a random loudness, and a mel [16, 4 n] of that loudness."""
    rng = np.random.default_rng(seed)
    loud = gaussian_filter1d(rng.normal(size=n), 2.0)
    loud = (loud - loud.min()) / np.ptp(loud)  # [0, 1]
    yy = np.arange(SYNC_SIZE)[:, None] - SYNC_SIZE / 2
    xx = np.arange(SYNC_SIZE)[None, :] - SYNC_SIZE / 2
    mouths = np.stack([((xx / 10) ** 2 + (yy / (1 + 8 * o)) ** 2 > 1).astype(np.float32) for o in loud])
    mouths = np.clip(mouths * 0.8 + rng.normal(0, 0.05, mouths.shape), 0, 1).astype(np.float32)
    bands = np.linspace(0.5, 1.5, 16)[:, None]
    mel = np.repeat(-10 + 10 * loud[None] * bands, 4, axis=1) + rng.normal(0, 0.3, (16, 4 * n))
    return mouths, Mel(mel.astype(np.float32), 16000, 512, 25.0, 4)


def test_the_expert_learns_sync_and_finds_a_known_offset(tmp_path):
    mouths, mel = talking()
    starts = clip_starts(np.ones(len(mouths), bool), np.arange(400))
    expert, losses = train_sync(mouths, mel, starts, offset=0, pad=1.3, steps=150, progress=False)
    assert losses[-1] < 0.5 * losses[0]
    held_out = clip_starts(np.ones(len(mouths), bool), np.arange(420, 595))  # never trained on
    assert expert.score(mouths, mel.mel, held_out)["offset"] == 0
    late = expert.score(mouths, np.roll(mel.mel, 4 * 4, axis=1), held_out)  # the audio 4 frames late
    assert late["offset"] == 4 and late["confidence"] > 0.05
    expert.save(tmp_path / "sync.pt")
    back = SyncExpert.load(tmp_path / "sync.pt")
    assert back.hears == expert.hears
    assert back.score(mouths, mel.mel, held_out) == expert.score(mouths, mel.mel, held_out)
    assert not any(p.requires_grad for p in back.net.parameters())  # loaded frozen: a loss never trains it


def test_the_sync_loss_reaches_the_generated_pixels():
    torch.manual_seed(0)
    expert = SyncExpert(SyncNet(), {"sr": 16000, "n_fft": 512, "n_mels": 16, "per_frame": 4, "fps": 25.0}, 1.3)
    pred = torch.rand(2, 5, 3, 64, 64, requires_grad=True)
    mask = np.zeros((64, 64), np.uint8)
    mask[32:60, 10:54] = 1
    loss = sync_loss(expert, pred, mask, torch.randn(2, 16, 20))
    loss.backward()
    assert 0 < loss.item() < 2 and pred.grad[..., 32:60, 10:54].abs().sum() > 0
    assert pred.grad[..., :30, :].abs().sum() == 0  # only the mouth region is judged
    assert all(p.grad is None for p in expert.net.audio.parameters())  # the audio side is not differentiated


def test_hygie_sync_judges_a_video(demo, tmp_path, capsys):
    expert = SyncExpert(SyncNet(), {"sr": 16000, "n_fft": 512, "n_mels": 80, "per_frame": 4, "fps": 25.0}, 1.3)
    expert.save(tmp_path / "sync.pt")
    video, audio = str(demo["template_video"]), str(demo["audio"])
    assert hygie(["sync", video, "--audio", audio, "--model", str(tmp_path / "sync.pt")]) == 0
    out = capsys.readouterr().out
    assert "template_idle.mp4: the audio comes" in out and "sync confidence" in out
    assert hygie(["sync", str(demo["template_video"]), "--model", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: sync expert not found" in capsys.readouterr().err
