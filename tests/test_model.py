"""HygieUNetLite: shapes, errors, identity at init, audio conditioning, checkpoints, parameter and FLOP counts."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import tiny_shapes

from hygie_lib.checkpoint import DataInfo, build_model, load_checkpoint, save_checkpoint
from hygie_lib.inference import MouthModel
from hygie_lib.model import WARP_REACH, HygieUNetLite, count_params, flops_per_frame


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread costs more in synchronisation than it saves (and is noisy on VMs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(widths=(8, 16, 32), emb=32, n_mels=16, mel_win=8)  # small enough to train in a test


def box_mask(S: int) -> torch.Tensor:
    """A mouth mask [S, S]: the lower middle of the crop."""
    mask = torch.zeros(S, S)
    mask[S // 2 :, S // 4 : 3 * S // 4] = 1.0
    return mask


def net(S: int, **kw) -> HygieUNetLite:
    return HygieUNetLite(mask=box_mask(S), **kw)


def inputs(S: int, B: int = 2, n_mels: int = 80, mel_win: int = 16, seed: int = 0):
    """A crop, a log-mel window in the natural range, a reference crop."""
    g = torch.Generator().manual_seed(seed)
    crop = torch.rand(B, 3, S, S, generator=g)
    mel = torch.rand(B, 1, n_mels, mel_win, generator=g) * 16.5 - 11.5
    ref = torch.rand(B, 3, S, S, generator=g)
    return crop, mel, ref


@pytest.mark.parametrize("S", [64, 96])
@pytest.mark.parametrize("reference", [True, False])
def test_output_shape_and_range(S, reference):
    torch.manual_seed(0)
    m = net(S, widths=(8, 16, 24, 32), reference=reference)
    for p in m.parameters():  # large random weights: the output must still be a valid image
        p.data.normal_(0, 0.5)
    crop, mel, ref = inputs(S, B=3)
    out = m(crop, mel, ref if reference else None)
    assert out.shape == (3, 3, S, S) and out.dtype == torch.float32 and out.is_contiguous()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out - crop).abs().max() > 0.1  # the random weights did change it


def test_the_model_never_sees_what_its_mask_hides():
    torch.manual_seed(0)
    m = net(32, widths=(8, 16), emb=16)
    for p in m.parameters():
        p.data.normal_(0, 0.3)
    crop, mel, ref = inputs(32, B=1)
    hidden = box_mask(32).bool()
    other = torch.where(hidden, torch.rand_like(crop), crop)
    with torch.no_grad():
        torch.testing.assert_close(m(crop, mel, ref), m(other, mel, ref))  # only the hidden pixels differ: same output
        assert not torch.allclose(m(crop, mel, ref), m(torch.roll(crop, 4, dims=-1), mel, ref))


def test_clear_errors():
    m = net(64, widths=(8, 16, 24, 32))
    crop, mel, ref = inputs(64)
    with pytest.raises(ValueError, match="reference=True"):
        m(crop, mel)
    with pytest.raises(ValueError, match=r"the audio condition must be \[2, 1, 80, 16\]"):
        m(crop, mel[:, :, :40], ref)
    with pytest.raises(ValueError, match=r"the audio condition must be \[2, 1, 80, 16\]"):
        m(crop, mel[:1], ref)
    with pytest.raises(ValueError, match="crop must be"):
        m(crop[:, :, :32, :32], mel, ref[:, :, :32, :32])
    with pytest.raises(ValueError, match="ref must"):
        m(crop, mel, ref[:, :, :32])
    with pytest.raises(ValueError, match="reference=False"):
        net(64, widths=(8, 16), reference=False)(crop, mel, ref)
    with pytest.raises(ValueError, match="multiple of"):
        net(100, widths=(8, 16, 24, 32))
    with pytest.raises(ValueError, match="square"):
        HygieUNetLite(mask=torch.zeros(64, 32))
    with pytest.raises(TypeError, match="depth"):
        build_model({"widths": [8, 16], "depth": 3}, DATA)


def test_identity_at_init_and_same_in_train_and_eval():
    torch.manual_seed(0)
    m = net(64)
    crop, mel, ref = inputs(64)
    out_train = m.train()(crop, mel, ref)
    assert (out_train - crop * (1 - box_mask(64))).abs().max() < 0.02  # delta ~ 0 at init: the masked input
    out_eval = m.eval()(crop, mel, ref)
    torch.testing.assert_close(out_train, out_eval)  # no BatchNorm: train and eval behave the same


def test_gradient_passes_the_clamp_at_masked_pixels():
    """A masked pixel (0) with a negative delta is clipped; it must still learn to brighten."""
    torch.manual_seed(0)
    m = net(32, reference=False, **TINY)
    m.head.bias.data.fill_(-0.5)  # every delta negative: all masked pixels clip at 0
    crop, mel, _ = inputs(32, n_mels=16, mel_win=8)
    crop.zero_()
    out = m(crop, mel)
    assert out.abs().max() == 0.0
    (1.0 - out).abs().mean().backward()
    assert m.head.bias.grad is not None and (m.head.bias.grad < 0).all()  # gradient descent raises the bias


def test_audio_conditioning_learns_two_mouths():
    """Same masked image, two mel windows, a dark and a bright mouth: only FiLM can tell them apart."""
    torch.manual_seed(0)
    S = 32
    m = net(S, reference=True, **TINY)
    crop, _, ref = inputs(S, B=1, n_mels=16, mel_win=8)
    crop, ref = crop.expand(2, -1, -1, -1).contiguous(), ref.expand(2, -1, -1, -1).contiguous()
    mel = torch.stack([torch.full((1, 16, 8), -10.0), torch.linspace(-6.0, 4.0, 16)[None, :, None].expand(1, 16, 8)])
    mouth = box_mask(S).bool()[None, None]
    target = torch.where(mouth, torch.tensor([[[[0.1]]], [[[0.9]]]]), crop)  # A dark mouth, B bright mouth

    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = (m(crop, mel, ref) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = m(crop, mel, ref)
    dark, bright = (out[i][mouth[0].expand(3, -1, -1)].mean().item() for i in range(2))
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, mouth A {dark:.2f}, B {bright:.2f}")
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert bright - dark > 0.4, (dark, bright)


DATA = DataInfo(
    img_size=64, mouth_pad=1.3, ema_alpha=0.7, fps=25.0, sr=16000, n_fft=512, n_mels=40, mel_per_frame=4, mel_win=12
)


def test_shape_condition_learns_two_mouths():
    """Same masked image, two drawn shapes (a closed and an open mouth): the drawing alone tells them apart."""
    torch.manual_seed(0)
    S = 32
    m = net(S, reference=False, widths=(8, 16, 32), emb=32, cond="shape")
    crop = inputs(S, B=1)[0].expand(2, -1, -1, -1).contiguous()
    sketch = torch.zeros(2, 3, S, S)
    sketch[:, 0, 20:26, 10:22] = 1.0  # lips
    sketch[1, 1, 21:25, 12:20] = 1.0  # the second mouth is open
    mouth = box_mask(S).bool()[None, None]
    target = torch.where(mouth, torch.tensor([[[[0.8]]], [[[0.1]]]]), crop)  # closed: light, open: dark
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(100):
        loss = (m(crop, sketch) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = m(crop, sketch)
    closed, opened = (out[i][mouth[0].expand(3, -1, -1)].mean().item() for i in range(2))
    assert closed - opened > 0.4, (closed, opened)
    with pytest.raises(ValueError, match=r"the shape condition must be \[2, 3, 32, 32\]"):
        m(crop, torch.zeros(2, 1, 80, 16))


def test_warp_moves_the_reference_pixels_into_the_mask_only():
    """A flow of +4 px in x and alpha ~ 1: inside the mask the output is the reference 4 px to the right of each
    pixel (its real pixels, moved); outside the mask the crop is untouched."""
    S, px = 64, 4
    m = net(S, widths=(8, 16, 24), emb=16, warp=True).eval()
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 30.0]))  # delta 0, alpha sigmoid(30) ~ 1
        m.flow.bias.copy_(torch.tensor([math.atanh(2 * px / S / WARP_REACH), 0.0]))  # x by px pixels, y by none
        crop, mel, ref = inputs(S)
        out = m(crop, mel, ref)
    hidden = box_mask(S).bool()
    inner = hidden.clone()
    inner[:, S - px - 1 :] = False  # where x + px is still inside the crop
    torch.testing.assert_close(out[..., inner], torch.roll(ref, -px, dims=-1)[..., inner], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[..., ~hidden], crop[..., ~hidden])
    with pytest.raises(ValueError, match="needs reference=True"):
        net(S, widths=(8, 16), reference=False, warp=True)


def test_warp_model_exports_to_onnx(tmp_path, face_landmarks):
    """The flow and the resampling (grid_sample) run in ONNX Runtime as in PyTorch."""
    torch.manual_seed(0)
    m = HygieUNetLite(mask=box_mask(32), widths=(8, 16, 24), emb=16, cond="shape", warp=True)
    for p in m.parameters():  # a flow and an alpha that vary over the crop
        p.data.add_(torch.randn_like(p) * 0.1)
    save_checkpoint(tmp_path / "m.pt", m, replace(DATA, img_size=32), tiny_shapes(face_landmarks))
    rng = np.random.default_rng(0)
    crops, refs = rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    cond = rng.random((3, 3, 32, 32), dtype=np.float32)
    a = MouthModel(tmp_path / "m.pt", "torch").generate(crops, refs, cond)
    b = MouthModel(tmp_path / "m.pt", "onnx").generate(crops, refs, cond)
    assert np.abs(a.astype(int) - b).max() <= 1 and np.abs(a.astype(int) - crops).max() > 20


def test_checkpoint_round_trip(tmp_path, face_landmarks):
    shapes = tiny_shapes(face_landmarks, offset=2)
    torch.manual_seed(0)
    m = net(64, widths=(8, 16, 24, 32), emb=16, n_mels=40, mel_win=12)
    for p in m.parameters():  # non-zero FiLM and head, so the outputs depend on every weight
        p.data.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(tmp_path / "model.pt", m, DATA, shapes)
    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ck["config"] == {"widths": [8, 16, 24, 32], "emb": 16, "reference": True, "cond": "audio", "warp": False}
    loaded = load_checkpoint(tmp_path / "model.pt")
    m2, data = loaded.model, loaded.data
    assert data == DATA and loaded.shapes.offset == 2
    np.testing.assert_array_equal(loaded.shapes.predictor.weights, shapes.predictor.weights)
    torch.testing.assert_close(m2.mask, box_mask(64))  # the mask travels with the weights
    crop, mel, ref = inputs(64, n_mels=40, mel_win=12)
    with torch.no_grad():
        torch.testing.assert_close(m2(crop, mel, ref), m(crop, mel, ref), rtol=0, atol=0)


def test_params_and_flops():
    ms = {S: net(S) for S in (64, 96, 128)}
    params = {S: count_params(m) for S, m in ms.items()}
    assert len(set(params.values())) == 1 and 0 < params[64] < 5_000_000  # independent of img_size
    flops = {S: flops_per_frame(m) for S, m in ms.items()}
    assert all(f > 0 for f in flops.values())
    assert 1.6 < flops[96] / flops[64] < 2.4  # ~(96/64)^2 = 2.25, less the constant audio part
    # the image part scales exactly with S^2 and the audio part is constant: f(S) = a + b S^2
    assert (flops[128] - flops[96]) * (96**2 - 64**2) == (flops[96] - flops[64]) * (128**2 - 96**2)
    # cross-check the hooks against PyTorch's own counter (convolutions and matmuls, 2 x MAC)
    from torch.utils.flop_counter import FlopCounterMode

    crop, mel, ref = inputs(96, B=1)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        ms[96](crop, mel, ref)
    assert fc.get_total_flops() == flops[96]
