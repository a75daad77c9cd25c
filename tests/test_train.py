import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_shapes

from hygie_lib.audio import Mel, mel_windows
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.checkpoint import load_checkpoint
from hygie_lib.crops import Crops, mouth_boxes
from hygie_lib.dataset import MouthBatches
from hygie_lib.io import HygieError
from hygie_lib.landmarks import INNER_LIPS
from hygie_lib.metrics import psnr, ssim
from hygie_lib.shape import MOUTH, ShapeSpace
from hygie_lib.split import CLIP, audio_span, near_references, pick_references, reference_gap, time_split
from hygie_lib.syncnet import SyncExpert, SyncNet
from hygie_lib.train import (
    VAL_FRAMES,
    TrainConfig,
    _batches,
    _patience_spent,
    fit,
    temporal_l1,
    validation_starts,
    weighted_l1,
)

ROOT = Path(__file__).resolve().parents[1]


def test_time_split_blocks_gap_and_missing_faces():
    face = np.ones(200, bool)
    face[[10, 150, 190]] = False
    split = time_split(face, train_split=0.8, gap=16)
    train, val = split.train, split.val
    assert train.max() + CLIP - 1 < 160 and val.min() >= 176  # contiguous blocks, gap of 16 frames
    assert np.abs(val[:, None] - (train[:, None] + np.arange(CLIP)).ravel()[None]).min() >= 16
    for starts in (train, val):  # no clip touches a frame without a face
        assert face[starts[:, None] + np.arange(CLIP)].all()
    assert 9 not in train and 10 not in train and 11 in train
    assert len(train) == (160 - CLIP + 1) - 2 * CLIP and len(val) == 200 - 176 - CLIP + 1 - CLIP
    assert list(split.val_frames) == [f for f in range(176, 200) if f != 190]  # every face frame of the block
    assert list(split.train_frames) == [f for f in range(160) if f not in (10, 150)]


def test_the_gap_is_counted_in_frames_of_audio():
    """A frame hears MEL_WIN mel columns; frames audio_span apart share none: nothing validated was trained on."""
    per_frame, win = 4, 16
    span = audio_span(win, per_frame)
    assert span == 4 and audio_span(18, 4) == 5 and reference_gap(win, per_frame) == span + CLIP
    cols = lambda t: set(range(t * per_frame - win // 2, t * per_frame + win // 2))  # noqa: E731
    assert not cols(100) & cols(100 + span) and cols(100) & cols(100 + span - 1)
    split = time_split(np.ones(100, bool), train_split=0.5, gap=span)
    assert split.val_frames[0] - (split.train[-1] + CLIP - 1) > span


def test_references_are_never_the_target_or_its_neighbours():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 500, 1000)
    refs = pick_references(targets, np.arange(500), 5, rng)
    assert np.abs(refs - targets).min() >= 5
    with pytest.raises(ValueError):
        pick_references(targets, np.arange(6), 5, rng)


def test_near_references_have_nearly_the_targets_shape():
    rng = np.random.default_rng(0)
    shapes = rng.normal(size=(500, 3))
    targets = rng.integers(0, 500, 200)
    refs = near_references(targets, np.arange(500), shapes, 5, rng, k=4)
    assert np.abs(refs - targets).min() >= 5  # never the target or its neighbours
    dist = ((shapes[targets][:, None] - shapes[None]) ** 2).sum(-1)
    dist[np.abs(np.arange(500)[None] - targets[:, None]) < 5] = np.inf
    rank = (dist < dist[np.arange(200), refs][:, None]).sum(1)  # how many allowed frames are nearer
    assert rank.max() < 4 and len(set(rank)) == 4  # one of the 4 nearest, each of them picked


def test_batches_hold_consecutive_frames_and_their_condition(tiny_clip):
    crops, mel, shapes = (
        Crops.load(tiny_clip / "crops.npz"),
        Mel.load(tiny_clip / "mel.npz"),
        ShapeModel.load(tiny_clip / "shape.npz"),
    )
    late = replace(shapes, offset=3)  # a recording whose audio lags its video by 3 frames
    data = MouthBatches(crops, mel, late, cond="audio", mel_win=8, ref_pool=np.arange(200), ref_gap=5)
    b = data.batch(np.array([5, 30]), np.random.default_rng(3), augment=False)
    assert b["target"].shape == (2, CLIP, 3, 32, 32) and b["cond"].shape == (2, CLIP, 1, 16, 8)
    assert b["ref"].shape == (2, 3, 32, 32)
    np.testing.assert_allclose(b["target"][0, 1].permute(1, 2, 0).numpy() * 255, crops.crops[6], atol=1e-3)
    np.testing.assert_array_equal(b["cond"][1, 1, 0].numpy(), mel_windows(mel.mel, 31 + 3, per_frame=4, win=8))
    aug = data.batch(np.array([5, 30]), np.random.default_rng(3), augment=True)
    np.testing.assert_array_equal(aug["cond"], b["cond"])  # augmentation never touches the audio

    data = MouthBatches(crops, mel, shapes, cond="shape", mel_win=8, ref_pool=np.arange(200), ref_gap=5)
    loud, quiet = 2, 12  # sin(t / 3) > 0 at frame 2, < 0 at frame 12
    b = data.batch(np.array([loud, quiet]), np.random.default_rng(3), augment=False)
    sketch = b["cond"][:, 0]  # [2, 3, 32, 32]: lips, mouth opening, jaw line
    assert sketch.shape == (2, 3, 32, 32) and sketch[:, 0].sum() > 5
    assert sketch[0, 1].sum() > sketch[1, 1].sum() + 3  # the loud frame's jaw dropped: a larger opening drawn
    aug = data.batch(np.array([loud, quiet]), np.random.default_rng(3), augment=True)
    for i in range(2):  # the drawing moved exactly as its frame did
        dy, dx = next(
            (dy, dx)
            for dy in range(-3, 4)
            for dx in range(-3, 4)
            if torch.equal(torch.roll(sketch[i], (dy, dx), dims=(-2, -1)), aug["cond"][i, 0])
        )
        gain = aug["target"][i, 0] - torch.roll(b["target"][i, 0], (dy, dx), dims=(-2, -1))
        assert gain.std() < 0.1  # the frame moved by the same shift (only a colour change is left)


def test_losses():
    target = torch.rand(2, CLIP, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    off = target.clone()
    off[..., 4:, :] += 0.1  # wrong inside the mask only
    assert float(weighted_l1(off, target, mask, 8.0)) == pytest.approx(
        8 * float(weighted_l1(off, target, mask, 1.0)), rel=1e-5
    )
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
def tiny_clip(tmp_path_factory, face_landmarks):
    """A prepared clip whose mouth (its brightness and its jaw drop) follows the audio loudness, and its shape model."""
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
    lm = np.repeat(face_landmarks[None], n, axis=0)
    jaw = MOUTH[face_landmarks[MOUTH, 1] > face_landmarks[INNER_LIPS, 1].mean()]
    lm[:, jaw, 1] += 12.0 * loud[:, None] + rng.normal(0, 0.5, (n, len(jaw)))
    boxes = mouth_boxes(lm, 1.3).astype(np.float32)
    Crops(crops, boxes, np.ones(n, bool), lm, mask, 1.3, 0.7, 25.0, "").save(d / "crops.npz")
    Mel(mel, 16000, 512, 25.0, 4).save(d / "mel.npz")
    ShapeModel(ShapeSpace.fit(lm, 4), tiny_shapes(face_landmarks).predictor, 0).save(d / "shape.npz")
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


ROUND = 20  # steps between validations in these tests (about one pass over the tiny clip)


def run_fit(
    clip, out, rounds, resume=False, seed=0, live=None, cond="audio", w_gan=0.0, patience=0, sync="none.pt", warp=False
):
    cfg = TrainConfig(
        mel_win=8,
        steps=rounds * ROUND,
        eval_every=ROUND,
        patience=patience,
        batch_size=8,
        lr=3e-3,
        w_in=8.0,
        w_temporal=1.0,
        w_ssim=0.0,
        w_sync=0.0,
        w_gan=w_gan,
        gan_warmup=ROUND,
        augment=True,
        ref_near=0.5 if warp else 0.0,
        precision="fp32",
        train_split=0.75,
        seed=seed,
    )
    live = FakeLive() if live is None else live
    summary = fit(
        clip / "crops.npz",
        clip / "mel.npz",
        clip / "shape.npz",
        clip / sync,  # read only with patience (or w_sync)
        model_kwargs={"widths": [8, 16, 16], "emb": 16, "reference": True, "cond": cond, "warp": warp},
        cfg=cfg,
        models_dir=out,
        live=live,
        resume=resume,
    )
    return summary, live


class Killed(Exception):
    """Stands for a kill in the middle of training."""


class FakeLiveKilledAt(FakeLive):
    """A dvclive stand-in that kills the run when it reaches step `at`."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def next_step(self):
        super().next_step()
        if self.steps == self.at:
            raise Killed


@pytest.mark.parametrize("cond, warp", [("audio", False), ("shape", False), ("shape", True)])
def test_fit_learns_and_checkpoints(tiny_clip, tmp_path, cond, warp):
    summary, live = run_fit(tiny_clip, tmp_path, rounds=3, cond=cond, warp=warp)
    losses = [v for _, name, v in live.metrics if name == "val/loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    ssims = [v for _, name, v in live.metrics if name == "val/ssim_mouth"]
    assert len(ssims) == 3 and 0.0 < ssims[0] < 1.0
    assert summary["best_val_loss"] == pytest.approx(min(losses))
    assert len(live.images) == 3 and live.images[0][1][2] == 3
    ckpt = load_checkpoint(tmp_path / "best.pt")
    data = ckpt.data
    assert (data.img_size, data.mel_win, data.n_mels, data.ema_alpha) == (32, 8, 16, 0.7)  # from the prepared files
    assert ckpt.train["step"] == (int(np.argmin(losses)) + 1) * ROUND
    assert ckpt.shapes.space.k == 4  # the shape model travels with the weights
    assert ckpt.model.config["warp"] == warp
    assert not list((tmp_path / "resume").glob("*.pt"))  # a finished run leaves nothing to resume
    json.dumps(summary)  # plain numbers, ready for dvclive's summary


def test_an_adversary_joins_after_its_warm_up(tiny_clip, tmp_path):
    summary, live = run_fit(tiny_clip, tmp_path, rounds=3, cond="shape", w_gan=0.1)
    critic = [(step, v) for step, name, v in live.metrics if name == "train/critic_loss"]
    assert [step for step, _ in critic] == [1, 2]  # not during the warm-up round
    assert all(0.0 < v < 4.0 for _, v in critic)  # a hinge loss, trained: neither 0 nor exploding
    assert (
        load_checkpoint(tmp_path / "best.pt").train["step"] >= 2 * ROUND
    )  # only rounds with the adversary can be best


@pytest.mark.parametrize("w_gan", [0.0, 0.1], ids=["reconstruction", "with an adversary"])
def test_a_killed_run_resumes_as_if_never_stopped(tiny_clip, tmp_path, w_gan):
    _, whole = run_fit(tiny_clip, tmp_path / "whole", rounds=4, w_gan=w_gan)
    with pytest.raises(Killed):
        run_fit(tiny_clip, tmp_path / "cut", rounds=4, live=FakeLiveKilledAt(2), w_gan=w_gan)
    (tmp_path / "cut" / "best.pt").unlink()  # what DVC does to an output before it reruns a stage
    _, resumed = run_fit(tiny_clip, tmp_path / "cut", rounds=4, resume=True, w_gan=w_gan)
    timing = ("train/samples_per_s", "train/minutes")
    quality = lambda m: [(s, name, v) for s, name, v in m if name not in timing]  # noqa: E731
    assert quality(resumed.metrics) == quality(whole.metrics)  # the same curve, its first rounds re-logged
    assert (tmp_path / "cut" / "best.pt").read_bytes() == (tmp_path / "whole" / "best.pt").read_bytes()


def test_resume_keeps_the_best_checkpoint_and_refuses_other_settings(tiny_clip, tmp_path):
    with pytest.raises(HygieError, match=r"resume: there is no interrupted run to resume"):
        run_fit(tiny_clip, tmp_path, rounds=2, resume=True)
    with pytest.raises(Killed):
        run_fit(tiny_clip, tmp_path, rounds=4, live=FakeLiveKilledAt(2))
    best = (tmp_path / "best.pt").read_bytes()
    (tmp_path / "best.pt").unlink()  # what DVC does to an output before it reruns a stage
    (tmp_path / "resume" / ".0123abcd.999999999.x.tmp.pt").write_bytes(b"PK\x03\x04")  # a kill during a write
    with pytest.raises(HygieError, match=r"had other settings \(seed 0 -> 1\).*train.resume=false"):
        run_fit(tiny_clip, tmp_path, rounds=4, resume=True, seed=1)
    small = tmp_path / "small"  # the data changed under the run: crops of another size
    small.mkdir()
    c = Crops.load(tiny_clip / "crops.npz")
    Crops(c.crops[:, ::2, ::2], c.boxes, c.face, c.landmarks, c.mask[::2, ::2], c.pad, c.alpha, c.fps, c.source).save(
        small / "crops.npz"
    )
    for name in ("mel.npz", "shape.npz"):
        (small / name).write_bytes((tiny_clip / name).read_bytes())
    with pytest.raises(HygieError, match=r"img_size 32 -> 16"):
        run_fit(small, tmp_path, rounds=4, resume=True)
    run_fit(tiny_clip, tmp_path, rounds=2, resume=True)  # no step left to train, so none can improve on the best
    assert (tmp_path / "best.pt").read_bytes() == best


def test_fit_is_deterministic_with_a_seed(tiny_clip, tmp_path):
    a = run_fit(tiny_clip, tmp_path / "a", rounds=1)[1].metrics
    b = run_fit(tiny_clip, tmp_path / "b", rounds=1)[1].metrics
    c = run_fit(tiny_clip, tmp_path / "c", rounds=1, seed=1)[1].metrics
    losses = lambda m: [v for _, name, v in m if name.endswith("loss")]  # noqa: E731
    assert losses(a) == losses(b) and losses(a) != losses(c)


def test_corrupt_or_missing_checkpoint(tmp_path):
    with pytest.raises(HygieError, match="model not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(HygieError, match=r"bad\.pt: not a HygieSync model \(not a PyTorch checkpoint at all\)"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")  # a PyTorch file of something else
    with pytest.raises(HygieError, match=r"other\.pt: a PyTorch file, but not a HygieSync model.*Retrain"):
        load_checkpoint(tmp_path / "other.pt")


def _save_untrained_expert(clip) -> None:
    """An untrained sync expert that hears the tiny clip's mel: it scores, so validation can report a sync figure."""
    mel = Mel.load(clip / "mel.npz")
    hears = {"sr": mel.sr, "n_fft": mel.n_fft, "n_mels": mel.n_mels, "per_frame": mel.per_frame, "fps": mel.fps}
    torch.manual_seed(0)
    SyncExpert(SyncNet().requires_grad_(False), hears, 1.3).save(clip / "sync.pt")


def test_validation_reports_sync_and_patience_stops_the_run(tiny_clip, tmp_path):
    _save_untrained_expert(tiny_clip)
    summary, live = run_fit(tiny_clip, tmp_path, rounds=8, patience=1, sync="sync.pt")
    sync = [v for _, name, v in live.metrics if name == "val/sync_confidence"]
    assert sync and all(np.isfinite(sync))
    # it ran until one validation failed to beat the best before it, and not a round longer
    stop = next((i for i in range(1, len(sync)) if sync[i] <= max(sync[:i])), len(sync) - 1)
    assert len(sync) == stop + 1 and summary["steps"] == len(sync) * ROUND
    assert _patience_spent([{"val/sync_confidence": v} for v in (0.1, 0.3, 0.2, 0.25)], 2)
    assert not _patience_spent([{"val/sync_confidence": v} for v in (0.1, 0.3, 0.2, 0.35)], 2)
    assert not _patience_spent([{"val/sync_confidence": v} for v in (0.3, 0.2, 0.1)], 0)  # 0: never stop


def test_validation_judges_a_whole_stretch_of_video():
    val = np.r_[100:140, 150:900]  # a missing face at 140..149
    starts = validation_starts(val)
    assert starts[0] == 100 and np.all(np.diff(starts) >= CLIP) and starts.max() < 100 + VAL_FRAMES
    assert set(range(100, 140)) <= set((starts[:, None] + np.arange(CLIP)).ravel())  # every frame of the stretch


DDP_SCRIPT = """
import json, sys
sys.path[:0] = [{tests!r}, {root!r}]
from pathlib import Path
from test_train import FakeLive, run_fit
summary, live = run_fit(Path({clip!r}), Path(sys.argv[1]), rounds=3)
if live.metrics:
    Path(sys.argv[1], "curve.json").write_text(json.dumps(live.metrics))
"""


def test_two_torchrun_processes_follow_the_curve_of_one(tiny_clip, tmp_path):
    """DistributedDataParallel on CPU (gloo): 2 processes with 4 clips each take the steps of 1 with 8."""
    script = tmp_path / "fit.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), root=str(ROOT), clip=str(tiny_clip)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run([sys.executable, script, tmp_path / "one"], check=True, env=env, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run([*torchrun, script, tmp_path / "two"], check=True, env=env, capture_output=True)
    one, two = (json.loads((tmp_path / run / "curve.json").read_text()) for run in ("one", "two"))
    curve = lambda m: [(s, name, v) for s, name, v in m if name.endswith("loss") or "_mouth" in name]  # noqa: E731
    assert [(s, name) for s, name, _ in curve(one)] == [(s, name) for s, name, _ in curve(two)]
    np.testing.assert_allclose([v for *_, v in curve(two)], [v for *_, v in curve(one)], rtol=2e-3)
    assert not (tmp_path / "two" / "resume").exists() or not list((tmp_path / "two" / "resume").iterdir())
    assert load_checkpoint(tmp_path / "two" / "best.pt").train["step"] > 0


def test_batches_assembled_ahead_are_the_batches_assembled_in_line(tiny_clip):
    """The GPU path's background assembly changes nothing: the same batches, and the same random state after."""
    crops, mel = Crops.load(tiny_clip / "crops.npz"), Mel.load(tiny_clip / "mel.npz")
    data = MouthBatches(
        crops,
        mel,
        ShapeModel.load(tiny_clip / "shape.npz"),
        cond="shape",
        mel_win=8,
        ref_pool=np.arange(200),
        ref_gap=5,
    )
    config = TrainConfig(8, 6, 3, 0, 4, 1e-3, 8.0, 1.0, 0.0, 0.0, 0.0, 0, True, 0.5, "fp32", 0.75, 0)  # half near refs
    runs = []
    for ahead in (0, 2):
        rng = np.random.default_rng(7)
        runs.append((list(_batches(data, np.arange(150), config, rng, 5, ahead=ahead)), rng.random()))
    (inline, after_inline), (early, after_early) = runs
    assert len(inline) == len(early) == 5 and after_inline == after_early
    for a, b in zip(inline, early):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ssim_is_computed_in_fp32_under_bf16_autocast():
    """In bf16 the local variances of SSIM go negative and the loss turned -inf on real faces; it must not."""
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, 64, 64, generator=gen)
    noisy = (img + 0.02 * torch.randn(img.shape, generator=gen)).clamp(0, 1)
    mask = torch.zeros(64, 64)
    mask[16:48, 8:56] = 1
    exact = ssim(noisy, img, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = ssim(noisy, img, mask)
    assert under.dtype == torch.float32 and float(under) == pytest.approx(float(exact), abs=1e-6)
