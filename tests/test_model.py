"""HygieUNetLite: shapes, errors, identity at init, audio conditioning, checkpoints, parameter and FLOP counts."""
from __future__ import annotations

import pytest
import torch

from hygie_lib.model import HygieUNetLite, build_model, config_dict, count_params, flops_per_frame


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread costs more in synchronisation than it saves (and is noisy on small VMs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(widths=(8, 16, 32), emb=32, n_mels=16, mel_win=8)  # small enough to train in a test


def inputs(S: int, B: int = 2, n_mels: int = 80, mel_win: int = 16, seed: int = 0):
    """A masked crop (a centred box zeroed), a log-mel window in the natural range, a reference crop."""
    g = torch.Generator().manual_seed(seed)
    masked = torch.rand(B, 3, S, S, generator=g)
    masked[:, :, S // 2 :, S // 4 : 3 * S // 4] = 0.0
    mel = torch.rand(B, 1, n_mels, mel_win, generator=g) * 16.5 - 11.5
    ref = torch.rand(B, 3, S, S, generator=g)
    return masked, mel, ref


@pytest.mark.parametrize("S", [64, 96])
@pytest.mark.parametrize("reference", [True, False])
def test_output_shape_and_range(S, reference):
    torch.manual_seed(0)
    m = HygieUNetLite(img_size=S, widths=(8, 16, 24, 32), reference=reference)
    for p in m.parameters():  # large random weights: the output must still be a valid image
        p.data.normal_(0, 0.5)
    masked, mel, ref = inputs(S, B=3)
    out = m(masked, mel, ref if reference else None)
    assert out.shape == (3, 3, S, S) and out.dtype == torch.float32 and out.is_contiguous()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out - masked).abs().max() > 0.1  # the random weights did change it


def test_clear_errors():
    m = HygieUNetLite(img_size=64, widths=(8, 16, 24, 32))
    masked, mel, ref = inputs(64)
    with pytest.raises(ValueError, match="reference=True"):
        m(masked, mel)
    with pytest.raises(ValueError, match="mel must be"):
        m(masked, mel[:, :, :40], ref)
    with pytest.raises(ValueError, match="mel must be"):
        m(masked, mel[:1], ref)
    with pytest.raises(ValueError, match="masked must be"):
        m(masked[:, :, :32, :32], mel, ref[:, :, :32, :32])
    with pytest.raises(ValueError, match="ref must"):
        m(masked, mel, ref[:, :, :32])
    with pytest.raises(ValueError, match="reference=False"):
        HygieUNetLite(img_size=64, widths=(8, 16), reference=False)(masked, mel, ref)
    with pytest.raises(ValueError, match="multiple of"):
        HygieUNetLite(img_size=100, widths=(8, 16, 24, 32))
    with pytest.raises(ValueError, match="unknown keys"):
        build_model({"img_size": 64, "depth": 3})


def test_identity_at_init_and_same_in_train_and_eval():
    torch.manual_seed(0)
    m = HygieUNetLite(img_size=64)
    masked, mel, ref = inputs(64)
    out_train = m.train()(masked, mel, ref)
    assert (out_train - masked.clamp(0, 1)).abs().max() < 0.02  # delta ~ 0 at init
    out_eval = m.eval()(masked, mel, ref)
    torch.testing.assert_close(out_train, out_eval)  # no BatchNorm: train and eval behave the same


def test_gradient_passes_the_clamp_at_masked_pixels():
    """A masked pixel (0) with a negative delta is clipped; it must still learn to brighten."""
    torch.manual_seed(0)
    m = HygieUNetLite(img_size=32, reference=False, **TINY)
    m.head.bias.data.fill_(-0.5)  # every delta negative: all masked pixels clip at 0
    masked, mel, _ = inputs(32, n_mels=16, mel_win=8)
    masked.zero_()
    out = m(masked, mel)
    assert out.abs().max() == 0.0
    (1.0 - out).abs().mean().backward()
    assert m.head.bias.grad is not None and (m.head.bias.grad < 0).all()  # gradient descent raises the bias


def test_audio_conditioning_learns_two_mouths():
    """Same masked image, two mel windows, a dark and a bright mouth: only FiLM can tell them apart."""
    torch.manual_seed(0)
    S = 32
    m = HygieUNetLite(img_size=S, reference=True, **TINY)
    masked, _, ref = inputs(S, B=1, n_mels=16, mel_win=8)
    masked, ref = masked.expand(2, -1, -1, -1).contiguous(), ref.expand(2, -1, -1, -1).contiguous()
    mel = torch.stack([torch.full((1, 16, 8), -10.0), torch.linspace(-6.0, 4.0, 16)[None, :, None].expand(1, 16, 8)])
    mouth = torch.zeros(1, 1, S, S, dtype=torch.bool)
    mouth[..., S // 2 :, S // 4 : 3 * S // 4] = True
    target = torch.where(mouth, torch.tensor([[[[0.1]]], [[[0.9]]]]), masked)  # A dark mouth, B bright mouth

    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = (m(masked, mel, ref) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = m(masked, mel, ref)
    dark, bright = (out[i][mouth[0].expand(3, -1, -1)].mean().item() for i in range(2))
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, mouth A {dark:.2f}, B {bright:.2f}")
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert bright - dark > 0.4, (dark, bright)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = HygieUNetLite(img_size=64, widths=(8, 16, 24, 32), emb=16, n_mels=40, mel_win=12)
    for p in m.parameters():  # non-zero FiLM and head, so the outputs depend on every weight
        p.data.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "model.pt"
    torch.save({"config": config_dict(m), "state_dict": m.state_dict()}, path)
    ck = torch.load(path, weights_only=True)
    assert ck["config"] == {"img_size": 64, "widths": [8, 16, 24, 32], "emb": 16, "n_mels": 40, "mel_win": 12, "reference": True}
    m2 = build_model(ck["config"])
    m2.load_state_dict(ck["state_dict"])
    masked, mel, ref = inputs(64, n_mels=40, mel_win=12)
    with torch.no_grad():
        torch.testing.assert_close(m2(masked, mel, ref), m(masked, mel, ref), rtol=0, atol=0)
    assert config_dict(m2) == ck["config"]


def test_params_and_flops():
    ms = {S: HygieUNetLite(img_size=S) for S in (64, 96, 128)}
    params = {S: count_params(m) for S, m in ms.items()}
    assert len(set(params.values())) == 1 and 0 < params[64] < 5_000_000  # independent of img_size
    flops = {S: flops_per_frame(m, S) for S, m in ms.items()}
    assert all(f > 0 for f in flops.values())
    assert 1.6 < flops[96] / flops[64] < 2.4  # ~(96/64)^2 = 2.25, less the constant audio part
    # the image part scales exactly with S^2 and the audio part is constant: f(S) = a + b S^2
    assert (flops[128] - flops[96]) * (96**2 - 64**2) == (flops[96] - flops[64]) * (128**2 - 96**2)
    assert flops_per_frame(ms[64], 96) == flops[96]  # fully convolutional: the count depends on S only
    # cross-check the hooks against PyTorch's own counter (convolutions and matmuls, 2 x MAC)
    from torch.utils.flop_counter import FlopCounterMode

    masked, mel, ref = inputs(96, B=1)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        ms[96](masked, mel, ref)
    assert fc.get_total_flops() == flops[96]
