"""HygieUNetLite: a small conditioned U-Net that paints the masked mouth region of a crop.

Inputs, for a batch of B frames and a crop side S:
    crop   [B, 3, S, S]            RGB in [0, 1]; the model hides its own `mask` region (set to 0) before looking
    cond   what the mouth must be, one of (CONDITIONS):
           "shape": [B, 3, S, S]   the mouth shape drawn in the crop (lips, opening, jaw line; hygie_lib.shape)
           "audio": [B, 1, n_mels, mel_win] natural-log mel power (about -11.5 .. +5), normalised here by (x + 4) / 4
    ref    [B, 3, S, S]            optional unmasked crop of the same person at another moment (Wav2Lip style)
Output:
    [B, 3, S, S] the full crop in [0, 1]: masked + delta, delta = tanh(head(features)) in [-1, 1], clamped.
    With `warp` (needs a reference), inside the mask a per-pixel mix of that and the reference crop warped by a
    predicted flow: alpha * warp(ref, flow) + (1 - alpha) * (masked + delta). Warping moves real pixels (teeth, lip
    edges, skin) instead of drawing them, so what it paints stays as sharp as the reference.

The mask [S, S] (1 = hidden) is a buffer of the model, saved with its weights, so training, evaluation and
rendering can never hide different regions.

Layout (widths w0..w3 = 16, 32, 64, 128 by default, L = len(widths) levels, L - 1 stride-2 downsamplings):
    encoder   level 0: one 3x3 conv at full resolution (few channels where pixels are many), no norm
              level 1: stride-2 3x3 conv
              level i: stride-2 3x3 conv + 3x3 conv (more channels where pixels are few)
    bottleneck one 3x3 conv, FiLM
    decoder   level i: 1x1 conv (at low res) -> nearest upsample x2 -> concat skip -> 3x3 conv, FiLM
              (no norm at full resolution: a GroupNorm pass over the largest tensors costs more than it helps)
    head      3x3 conv -> tanh, added to the masked input (+ warp: an alpha channel, sigmoid, inside the mask)
    flow      (warp) 3x3 conv on the decoder's S/4 level -> tanh x WARP_REACH -> bilinear upsample to S x S: where
              each pixel is taken from in the reference (grid_sample, border padding)
    condition "audio": conv2d stack over the mel window (3 stride-2) -> flatten -> Linear -> embedding [B, emb]
              "shape": the drawing joins the input channels; pooled to 8 x 8 -> Linear -> embedding [B, emb]
FiLM: feat * (1 + gamma) + beta, gamma and beta linear in the embedding, zero-initialised (identity at init).
Norm: GroupNorm (never BatchNorm: small batches, and train/eval must behave alike).
Checkpoints (hygie_lib.checkpoint) store `model.config` and the state dict: plain data, loaded with weights_only=True.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHANNELS_LAST = True  # run the convs in NHWC (measured faster with oneDNN on CPU)
MEL_SHIFT, MEL_SCALE = 4.0, 4.0  # fixed affine on the log-mel: (x + 4) / 4 maps about [-11.5, 5] to [-1.9, 2.3]
WARP_REACH = 0.25  # the farthest a warped pixel comes from, in half crop sides (0.25: 20 px of a 160 px crop)


def _gn(ch: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide `ch`."""
    return nn.GroupNorm(math.gcd(8, ch), ch)


class ConvAct(nn.Sequential):
    """3x3 (or k x k) conv -> optional GroupNorm -> SiLU."""

    def __init__(self, cin: int, cout: int, *, k: int = 3, stride: int = 1, norm: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=not norm)]
        if norm:
            layers.append(_gn(cout))
        layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class FiLM(nn.Module):
    """Per-channel scale and shift from the audio embedding, zero-initialised so it starts as the identity."""

    def __init__(self, emb: int, ch: int):
        super().__init__()
        self.proj = nn.Linear(emb, 2 * ch)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        gamma, beta = self.proj(e)[:, :, None, None].chunk(2, dim=1)  # [B, C, 1, 1] each
        return torch.addcmul(beta, x, 1.0 + gamma)  # x * (1 + gamma) + beta in one pass over x


class AudioEncoder(nn.Module):
    """Conv2d stack over a normalised mel window [B, 1, n_mels, mel_win] -> embedding [B, emb]."""

    def __init__(self, *, emb: int, n_mels: int, mel_win: int):
        super().__init__()
        self.convs = nn.Sequential(
            ConvAct(1, 32),  # [B, 32, M, T]
            ConvAct(32, 64, stride=2),  # [B, 64, M/2, T/2]
            ConvAct(64, 128, stride=2),  # [B, 128, M/4, T/4]
            ConvAct(128, 128, stride=2),  # [B, 128, M/8, T/8]
        )
        # flatten the small [128, M/8, T/8] map (10 x 2 by default) rather than pool it: keeps where in
        # frequency and time the energy is, and exports to ONNX for any window size
        self.fc = nn.Sequential(nn.Linear(128 * _halved(n_mels, 3) * _halved(mel_win, 3), emb), nn.SiLU())

    def forward(self, mel: Tensor) -> Tensor:
        x = self.convs((mel + MEL_SHIFT) / MEL_SCALE)  # [B, 128, M/8, T/8]
        return self.fc(x.flatten(1))  # [B, emb]


def _halved(n: int, times: int) -> int:
    """Size after `times` stride-2 3x3 convs with padding 1 (each halves, rounding up)."""
    for _ in range(times):
        n = (n + 1) // 2
    return n


class UpBlock(nn.Module):
    """Decoder level: 1x1 conv at low res, nearest upsample x2, concat the skip, 3x3 conv, FiLM."""

    def __init__(self, cin: int, cskip: int, *, emb: int, norm: bool = True):
        super().__init__()
        self.reduce = nn.Conv2d(cin, cskip, 1)  # cheap: runs before the upsampling
        self.conv = ConvAct(2 * cskip, cskip, norm=norm)
        self.film = FiLM(emb, cskip)

    def forward(self, x: Tensor, skip: Tensor, e: Tensor) -> Tensor:
        x = F.interpolate(self.reduce(x), scale_factor=2.0, mode="nearest")  # [B, cskip, 2h, 2w]
        return self.film(self.conv(torch.cat([x, skip], dim=1)), e)  # [B, cskip, 2h, 2w]


class SketchEncoder(nn.Module):
    """The drawn mouth shape [B, 3, S, S] pooled to 8 x 8 -> Linear -> embedding [B, emb]: how open, how wide, where."""

    def __init__(self, *, emb: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.fc = nn.Sequential(nn.Linear(3 * 64, emb), nn.SiLU())

    def forward(self, sketch: Tensor) -> Tensor:
        return self.fc(self.pool(sketch).flatten(1))  # [B, emb]


CONDITIONS = ("shape", "audio")  # train.cond: what the generator is given to draw the mouth from
MODEL_PARAMS = ("widths", "emb", "reference", "cond", "warp")  # the train.* params that make the network


def model_config(train: dict) -> dict:
    """The network's config (HygieUNetLite's keyword arguments, as checkpoints store them) from params' `train`."""
    return {k: list(train[k]) if k == "widths" else train[k] for k in MODEL_PARAMS}


class HygieUNetLite(nn.Module):
    """Conditioned U-Net: masked crop (+ reference crop) + condition -> full crop in [0, 1].

    cond "audio": the condition is a mel window [B, 1, n_mels, mel_win], embedded by AudioEncoder (one stage).
    cond "shape": the condition is the mouth shape drawn in the crop [B, 3, S, S] (shape.draw_shape), added to the
    input channels and embedded by SketchEncoder; the audio was turned into that shape beforehand (two stages).
    """

    def __init__(
        self,
        *,
        mask: Tensor,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        emb: int = 128,
        n_mels: int = 80,
        mel_win: int = 16,
        reference: bool = True,
        cond: str = "audio",
        warp: bool = False,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must hold at least 2 positive channel counts, got {widths}")
        mask = torch.as_tensor(mask, dtype=torch.float32)
        img_size, n_down = mask.shape[-1], len(widths) - 1
        if mask.ndim != 2 or mask.shape[0] != img_size:
            raise ValueError(f"mask must be a square [S, S] array, got {list(mask.shape)}")
        if img_size < 2**n_down or img_size % 2**n_down:
            raise ValueError(
                f"img_size {img_size} must be a multiple of 2**{n_down} = {2**n_down} (len(widths) - 1 downsamplings)"
            )
        if n_mels < 8 or mel_win < 2:
            raise ValueError(f"the mel window must be at least 8 x 2, got n_mels={n_mels}, mel_win={mel_win}")
        if cond not in CONDITIONS:
            raise ValueError(f"cond must be one of {CONDITIONS}, got {cond!r}")
        if warp and not reference:
            raise ValueError("warp moves the reference crop's pixels: it needs reference=True")
        self.config = {
            "widths": list(widths),
            "emb": int(emb),
            "reference": bool(reference),
            "cond": cond,
            "warp": bool(warp),
        }
        self.img_size, self.widths, self.n_mels, self.mel_win, self.reference = (
            img_size,
            widths,
            n_mels,
            mel_win,
            reference,
        )
        self.register_buffer("mask", mask)  # [S, S], 1 = hidden
        self.cond = cond
        cin = 3 + 3 * reference + 3 * (cond == "shape")

        self.encoder = (
            AudioEncoder(emb=emb, n_mels=n_mels, mel_win=mel_win) if cond == "audio" else SketchEncoder(emb=emb)
        )
        self.stem = ConvAct(cin, widths[0], norm=False)  # [B, w0, S, S]: one conv at full res
        self.downs = nn.ModuleList(  # level 1: stride-2 conv only (it is the costliest level); deeper: + one 3x3 conv
            nn.Sequential(
                ConvAct(widths[i - 1], widths[i], stride=2), *([ConvAct(widths[i], widths[i])] if i > 1 else [])
            )
            for i in range(1, len(widths))  # [B, wi, S/2^i, S/2^i]
        )
        self.mid = ConvAct(widths[-1], widths[-1])  # [B, wL, S/2^n, S/2^n]
        self.mid_film = FiLM(emb, widths[-1])
        self.ups = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], emb=emb, norm=i > 0) for i in reversed(range(n_down))
        )
        self.warp = bool(warp)
        self.head = nn.Conv2d(widths[0], 3 + warp, 3, padding=1)  # [B, 3 (+1 alpha), S, S]
        nn.init.normal_(self.head.weight, std=1e-3)  # start near the identity: out ~ masked input
        nn.init.zeros_(self.head.bias)
        if warp:
            self.flow_level = min(2, n_down - 1)  # the decoder level at S/4 (or the coarsest after an upsampling)
            self.flow = nn.Conv2d(widths[self.flow_level], 2, 3, padding=1)  # [B, 2, S/4, S/4] -> tanh -> flow
            nn.init.zeros_(self.flow.weight)  # start with the identity warp
            nn.init.zeros_(self.flow.bias)
            ramp = (torch.arange(img_size, dtype=torch.float32) + 0.5) / img_size * 2.0 - 1.0  # pixel centres
            grid = torch.stack(torch.meshgrid(ramp, ramp, indexing="xy"), dim=-1)  # [S, S, 2] as (x, y)
            self.register_buffer("grid", grid[None], persistent=False)  # [1, S, S, 2], not saved: rebuilt

    def cond_shape(self, batch: int) -> tuple[int, ...]:
        """The condition's shape for a batch: [B, 1, n_mels, mel_win] (audio) or [B, 3, S, S] (shape)."""
        if self.cond == "audio":
            return (batch, 1, self.n_mels, self.mel_win)
        return (batch, 3, self.img_size, self.img_size)

    def _check(self, crop: Tensor, cond: Tensor, ref: Tensor | None) -> None:
        """Raise a ValueError naming the first input whose shape does not match the config."""
        S = self.img_size
        if crop.ndim != 4 or tuple(crop.shape[1:]) != (3, S, S):
            raise ValueError(f"crop must be [B, 3, {S}, {S}] (img_size={S}), got {list(crop.shape)}")
        B = crop.shape[0]
        if tuple(cond.shape) != self.cond_shape(B):
            raise ValueError(f"the {self.cond} condition must be {list(self.cond_shape(B))}, got {list(cond.shape)}")
        if self.reference and ref is None:
            raise ValueError(
                "this model was built with reference=True: pass ref, an unmasked crop [B, 3, S, S] of the same person"
            )
        if ref is not None:
            if not self.reference:
                raise ValueError("this model was built with reference=False: do not pass ref")
            if tuple(ref.shape) != tuple(crop.shape):
                raise ValueError(f"ref must have the shape of crop {list(crop.shape)}, got {list(ref.shape)}")

    def forward(self, crop: Tensor, cond: Tensor, ref: Tensor | None = None) -> Tensor:
        """Crop [B,3,S,S] (mask region hidden here) + condition (`cond_shape`) (+ ref [B,3,S,S]) -> crop in [0, 1]."""
        self._check(crop, cond, ref)
        return self._forward(crop, cond, ref)

    def _forward(self, crop: Tensor, cond: Tensor, ref: Tensor | None) -> Tensor:
        """The forward pass without the shape checks."""
        masked = crop * (1.0 - self.mask)  # [B, 3, S, S], the mouth region hidden
        e = self.encoder(cond)  # [B, emb]
        inputs = [masked] + ([ref] if ref is not None else []) + ([cond] if self.cond == "shape" else [])
        x = torch.cat(inputs, dim=1)  # [B, 3 (+3 ref) (+3 sketch), S, S]
        if CHANNELS_LAST and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)  # NHWC: faster oneDNN convs on CPU
        skips = [self.stem(x)]  # [B, w0, S, S]
        for down in self.downs:
            skips.append(down(skips[-1]))  # [B, wi, S/2^i, S/2^i]
        h = self.mid_film(self.mid(skips.pop()), e)  # [B, wL, S/2^n, S/2^n]
        flow = None
        for up in self.ups:
            h = up(h, skips.pop(), e)  # [B, wi, S/2^i, S/2^i], up to [B, w0, S, S]
            if self.warp and len(skips) == self.flow_level:
                flow = torch.tanh(self.flow(h)) * WARP_REACH  # [B, 2, S/4, S/4]
        head = self.head(h)
        delta = torch.tanh(head[:, :3])  # [B, 3, S, S] in [-1, 1]: masked zeros can become any intensity
        out = masked + delta.contiguous()
        if self.warp:
            flow = F.interpolate(flow, size=out.shape[-2:], mode="bilinear", align_corners=False)
            warped = F.grid_sample(
                ref, self.grid + flow.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=False
            )  # [B, 3, S, S]: the reference's pixels, moved
            alpha = torch.sigmoid(head[:, 3:]) * self.mask  # [B, 1, S, S], 0 outside the mask
            out = out + alpha * (warped - out)
        return _clamp01_straight_through(out)  # [B, 3, S, S]


def _clamp01_straight_through(y: Tensor) -> Tensor:
    """Clamp to [0, 1] forward, identity gradient backward (a plain clamp would freeze masked pixels with delta < 0)."""
    return y + (y.clamp(0.0, 1.0) - y).detach()


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_frame(model: HygieUNetLite) -> int:
    """FLOPs (2 x multiply-accumulates of the Conv2d and Linear layers) of one frame, counted by forward hooks."""
    S = model.img_size
    p = next(model.parameters())
    total = 0

    def hook(mod: nn.Module, inputs: tuple, out: Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * out.numel() * k
        elif isinstance(mod, nn.Linear):
            total += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        crop = torch.zeros(1, 3, S, S, device=p.device, dtype=p.dtype)
        cond = torch.zeros(model.cond_shape(1), device=p.device, dtype=p.dtype)
        with torch.no_grad():
            model._forward(crop, cond, crop if model.reference else None)
    finally:
        for h in handles:
            h.remove()
    return total


class PatchDiscriminator(nn.Module):
    """PatchGAN critic of mouth crops: (masked crop, crop) [B, 6, S, S] -> a realism score per patch [B, 1, S/8, S/8].

    It sees the masked crop too (what the generator saw), so it judges whether the mouth fits that face. Spectral
    norm on every conv keeps it Lipschitz, so adversarial training stays stable on a few hundred frames.
    """

    def __init__(self, *, width: int = 32):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(6, width, 4, 2, 1)),
            nn.LeakyReLU(0.2, inplace=True),  # S/2
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)),
            nn.LeakyReLU(0.2, inplace=True),  # S/4
            sn(nn.Conv2d(2 * width, 4 * width, 4, 2, 1)),
            nn.LeakyReLU(0.2, inplace=True),  # S/8
            sn(nn.Conv2d(4 * width, 1, 3, 1, 1)),
        )

    def forward(self, masked: Tensor, crop: Tensor) -> Tensor:
        return self.net(torch.cat([masked, crop], dim=1))
