import json

import numpy as np
import pytest
import torch

from hygie_lib.audio import mel_window
from hygie_lib.dataset import CLIP, MouthBatches, mel_windows, pick_references, time_split
from hygie_lib.io import HygieError
from hygie_lib.train import DataInfo, TrainConfig, fit, load_checkpoint, psnr, ssim, temporal_l1, weighted_l1


def test_time_split_blocks_gap_and_missing_faces():
    face = np.ones(200, bool)
    face[[10, 150]] = False
    train, val = time_split(face, train_split=0.8, gap=16)
    assert train.max() + CLIP - 1 < 160 and val.min() >= 176  # contiguous blocks, gap of 16 frames
    assert np.abs(val[:, None] - (train[:, None] + np.arange(CLIP)).ravel()[None]).min() >= 16
    for starts in (train, val):  # no clip touches a frame without a face
        assert face[starts[:, None] + np.arange(CLIP)].all()
    assert 9 not in train and 10 not in train and 11 in train
    assert len(train) == (160 - CLIP + 1) - 2 * CLIP and len(val) == 200 - 176 - CLIP + 1  # frames 10, 150 drop 2 clips each


def test_mel_windows_match_the_single_frame_helper():
    mel = np.random.default_rng(0).normal(size=(8, 100)).astype(np.float32)
    frames = np.array([[0, 1], [12, 13], [24, 25]])
    w = mel_windows(mel, frames, per_frame=4, win=16)
    assert w.shape == (3, 2, 8, 16)
    for i, j in np.ndindex(3, 2):
        np.testing.assert_array_equal(w[i, j], mel_window(mel, frames[i, j], per_frame=4, win=16))


def test_references_are_never_the_target_or_its_neighbours():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 500, 1000)
    refs = pick_references(targets, np.arange(500), 5, rng)
    assert np.abs(refs - targets).min() >= 5
    with pytest.raises(ValueError):
        pick_references(targets, np.arange(6), 5, rng)


def test_batch_holds_consecutive_frames_masked_and_the_right_audio():
    n, s = 60, 16
    crops = np.random.default_rng(1).integers(0, 255, (n, s, s, 3), dtype=np.uint8)
    mel = np.random.default_rng(2).normal(size=(8, n * 4)).astype(np.float32)
    mask = np.zeros((s, s), np.uint8)
    mask[8:, 4:12] = 1
    data = MouthBatches(crops, mel, mask, per_frame=4, mel_win=8, ref_pool=np.arange(n))
    b = data.batch(np.array([5, 30]), np.random.default_rng(3), augment=False)
    assert b["target"].shape == (2, CLIP, 3, s, s) and b["mel"].shape == (2, CLIP, 1, 8, 8)
    np.testing.assert_allclose(b["target"][0, 1].permute(1, 2, 0).numpy() * 255, crops[6], atol=1e-3)
    assert b["masked"][:, :, :, 8:, 4:12].abs().max() == 0 and b["masked"][:, :, :, :8].abs().max() > 0
    np.testing.assert_array_equal(b["mel"][1, 1, 0].numpy(), mel_window(mel, 31, per_frame=4, win=8))
    aug = data.batch(np.array([5, 30]), np.random.default_rng(3), augment=True)
    np.testing.assert_array_equal(aug["mel"], b["mel"])  # augmentation never touches the audio


def test_losses():
    target = torch.rand(2, CLIP, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    off = target.clone()
    off[..., 4:, :] += 0.1  # wrong inside the mask only
    assert float(weighted_l1(off, target, mask, 8.0)) == pytest.approx(8 * float(weighted_l1(off, target, mask, 1.0)), rel=1e-5)
    assert float(temporal_l1(target + 0.2, target, mask)) == pytest.approx(0.0, abs=1e-6)  # same changes: no penalty
    assert float(temporal_l1(target.flip(1), target, mask)) > 0.05


def test_ssim_and_psnr_inside_the_mask():
    torch.manual_seed(0)
    img = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 36, 36), 5, 1)  # [2, 3, 32, 32], some structure
    mask = torch.zeros(32, 32)
    mask[16:] = 1
    assert float(ssim(img, img, mask)) == pytest.approx(1.0, abs=1e-6)
    noisy = img.clone()
    noisy[..., 16:, :] += 0.1 * torch.randn_like(noisy[..., 16:, :])
    assert float(ssim(noisy, img, mask)) < 0.8
    noisy_outside = img.clone()
    noisy_outside[..., :8, :] += 0.1 * torch.randn_like(noisy_outside[..., :8, :])  # beyond the 5-px window reach
    assert float(ssim(noisy_outside, img, mask)) == pytest.approx(1.0, abs=1e-6)
    off = img.clone()
    off[..., 16:, :] += 0.1  # an error of 0.1 inside the mask only: PSNR 20 dB
    assert psnr(off, img, mask) == pytest.approx(20.0, abs=1e-3) and psnr(noisy_outside, img, mask) > 90


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A prepared clip whose mouth brightness follows the audio loudness (so a model can learn it)."""
    d = tmp_path_factory.mktemp("clip")
    n, s = 240, 32
    rng = np.random.default_rng(0)
    loud = (np.sin(np.arange(n) / 3.0) > 0).astype(np.float32)
    crops = np.full((n, s, s, 3), 150, np.uint8)
    crops[:, 18:26, 8:24] = (40 + 180 * loud[:, None, None, None]).astype(np.uint8)
    crops = np.clip(crops + rng.integers(-5, 6, crops.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((s, s), np.uint8)
    mask[14:30, 4:28] = 1
    mel = np.repeat(np.where(loud > 0, 0.0, -8.0)[None].repeat(4, axis=1), 16, axis=0).astype(np.float32)
    np.savez(d / "crops.npz", crops=crops, mask=mask, face=np.ones(n, bool), boxes=np.zeros((n, 3), np.float32))
    np.save(d / "mel.npy", mel)
    return d


class FakeLive:
    def __init__(self):
        self.metrics, self.images, self.summary, self.steps = [], [], {}, 0

    def log_metric(self, name, value):
        self.metrics.append((self.steps, name, value))

    def log_image(self, name, image):
        self.images.append((name, image.shape))

    def next_step(self):
        self.steps += 1


def run_fit(clip, out, epochs, resume=False, seed=0):
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=3e-3, w_in=8.0, w_temporal=1.0, w_ssim=0.0, augment=True, train_split=0.75, seed=seed)
    info = DataInfo(img_size=32, mouth_pad=0.5, fps=25.0, sr=16000, n_fft=512, n_mels=16, mel_per_frame=4, mel_win=8)
    live = FakeLive()
    summary = fit(clip / "crops.npz", clip / "mel.npy", model_kwargs={"widths": [8, 16, 16], "emb": 16, "reference": True},
                  cfg=cfg, data_info=info, models_dir=out, live=live, resume=resume)
    return summary, live


def test_fit_learns_checkpoints_and_resumes(tiny_clip, tmp_path):
    summary, live = run_fit(tiny_clip, tmp_path, epochs=3)
    losses = [v for _, name, v in live.metrics if name == "val/loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    ssims = [v for _, name, v in live.metrics if name == "val/ssim_mouth"]
    assert len(ssims) == 3 and 0.0 < ssims[0] < 1.0
    assert summary["best_val_loss"] == pytest.approx(min(losses))
    assert len(live.images) == 3 and live.images[0][1][2] == 3
    _, ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["data"]["img_size"] == 32 and ckpt["epoch"] == int(np.argmin(losses)) + 1
    _, last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 3
    summary2, live2 = run_fit(tiny_clip, tmp_path, epochs=5, resume=True)
    assert [s for s, name, _ in live2.metrics if name == "val/loss"] == [0, 1]  # epochs 4 and 5 only
    assert load_checkpoint(tmp_path / "last.pt")[1]["epoch"] == 5
    json.dumps(summary2)  # plain numbers, ready for dvclive's summary


def test_fit_is_deterministic_with_a_seed(tiny_clip, tmp_path):
    a = run_fit(tiny_clip, tmp_path / "a", epochs=1)[1].metrics
    b = run_fit(tiny_clip, tmp_path / "b", epochs=1)[1].metrics
    c = run_fit(tiny_clip, tmp_path / "c", epochs=1, seed=1)[1].metrics
    losses = lambda m: [v for _, name, v in m if name.endswith("loss")]  # noqa: E731
    assert losses(a) == losses(b) and losses(a) != losses(c)


def test_corrupt_or_missing_checkpoint(tmp_path):
    with pytest.raises(HygieError, match="model not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(HygieError, match=r"bad\.pt: not a readable HygieSync model"):
        load_checkpoint(tmp_path / "bad.pt")
