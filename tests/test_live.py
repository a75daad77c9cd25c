"""Live: streams give the numbers of the whole-audio computation whatever the chunking, a session gives render's
frames, silence keeps the template alive with flat memory, and bad audio is refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import save_model

from hygie_lib.audio import MelStream, MelWindowStream, frame_energy, load_audio, log_mel, mel_windows
from hygie_lib.audio2shape import BREATH, LIVE_LEAD, SPEECH_HANGOVER, SPEECH_LEAD, AudioToShape, ShapeModel, ShapeStream
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError
from hygie_lib.live import LiveSession, TemplateFrames
from hygie_lib.render import audio_features, pingpong_index, render_frames
from hygie_lib.video import iter_frames

SR = 16000


def chunked(x: np.ndarray, rng: np.random.Generator, most: int, axis: int = -1) -> list[np.ndarray]:
    """x cut along `axis` into pieces of random sizes 1..most."""
    cuts = np.cumsum(rng.integers(1, most + 1, x.shape[axis]))
    return np.split(x, cuts[cuts < x.shape[axis]], axis=axis)


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Noise bursts and silences (0.4 s each), so the silence gate has work to do."""
    y = rng.standard_normal(int(SR * seconds)).astype(np.float32) * 0.1
    return y * np.repeat(rng.random(int(seconds / 0.4) + 1) > 0.4, int(SR * 0.4))[: len(y)]


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_mel_stream_gives_log_mel_for_any_chunking(fps):
    rng = np.random.default_rng(0)
    y = speech_like(2.3, rng)
    whole = log_mel(y, SR, fps=fps, n_mels=40, per_frame=4, n_fft=512)
    stream = MelStream(SR, fps=fps, n_mels=40, per_frame=4, n_fft=512)
    parts = [stream.push(c) for c in chunked(y, rng, 700)]
    assert sum(p.shape[1] for p in parts) < whole.shape[1]  # columns wait for the half-window after their centre
    np.testing.assert_array_equal(np.hstack([*parts, stream.flush()]), whole)


def test_shape_stream_gives_predict_for_any_chunking():
    rng = np.random.default_rng(1)
    mel = log_mel(speech_like(4.0, rng), SR, fps=25, n_mels=80, per_frame=4, n_fft=512)
    k = 6
    loud = float(np.percentile(frame_energy(mel, 4), 95))  # the gate starts at the training audio's loud level
    predictor = AudioToShape(
        rng.normal(-4, 1, 40), rng.uniform(1, 3, 40), rng.normal(0, 0.1, (201, k)), np.ones(k), 2, 1.0, loud
    )
    for lead in (SPEECH_LEAD, LIVE_LEAD):  # a render's, live's
        whole = predictor.predict(mel, 4, lead=lead)
        assert whole.shape == (100, k) and np.isclose(whole, 1.0).all(1).any()  # silences drawn at rest
        for _ in range(3):
            stream = ShapeStream(predictor, 4, lead)
            parts = [stream.push(c) for c in chunked(mel, rng, 30)]
            assert len(stream.feats) <= stream.lookahead + BREATH + 2  # only the frames still needed are kept
            np.testing.assert_array_equal(np.vstack([*parts, stream.flush()]), whole)
        stream = ShapeStream(predictor, 4, lead)
        assert len(stream.push(mel[:, :40])) == 10 - stream.lookahead  # a frame waits for the audio it hears


def test_the_mouth_opens_before_speech_after_a_pause_and_closes_after_it():
    k, h = 3, SPEECH_HANGOVER
    mel = np.full((80, 4 * 100), -20.0)  # silence, 87 dB below the speech
    mel[:, 4 * 40 : 4 * 60] = mel[:, 4 * 66 : 4 * 80] = 0.0  # speech after a pause, then after a gap of 6 frames
    weights = np.zeros((5 * 40 + 1, k))
    weights[-1] = 1.0  # audio -> shape says "open" for any audio; silence rests at 0
    predictor = AudioToShape(np.zeros(40), np.ones(40), weights, np.zeros(k), 2, 0.0, float(np.log(80)))
    assert 2 * h < 6 < BREATH
    for lead in (SPEECH_LEAD, LIVE_LEAD):
        opened = np.flatnonzero(predictor.predict(mel, 4, lead=lead)[:, 0] > 0.5)
        np.testing.assert_array_equal(opened, np.r_[40 - lead : 60 + h, 66 - h : 80 + h])


def test_mel_window_stream_gives_mel_windows_for_any_chunking():
    rng = np.random.default_rng(2)
    mel = rng.standard_normal((8, 4 * 37)).astype(np.float32)
    for win in (16, 5):
        stream = MelWindowStream(4, win)
        parts = [stream.push(c) for c in chunked(mel, rng, 13)]
        got = np.concatenate([*parts, stream.flush()])
        np.testing.assert_array_equal(got, mel_windows(mel, np.arange(37), per_frame=4, win=win))


@pytest.fixture(scope="module")
def template_frames(demo):
    return TemplateFrames.of(demo["template_video"], demo["template"])


@pytest.mark.parametrize("cond", ["shape", "audio"])
def test_a_live_session_fed_a_file_in_chunks_gives_the_frames_render_writes(demo, template_frames, tmp_path, cond):
    shapes = demo["shapes"]
    smooth = ShapeModel(shapes.space, replace(shapes.predictor, smooth=1.0), 0)  # smoothing looks ahead too
    model = MouthModel(save_model(tmp_path / "m.pt", smooth, cond=cond), backend="torch", lead=LIVE_LEAD)  # as serve's
    tpl, video = demo["template"], demo["template_video"]
    y = load_audio(demo["audio"], SR)
    rendered = list(render_frames(model, tpl, video, audio_features(demo["audio"], model.data), blend="feather"))
    session = LiveSession(model, tpl, template_frames, blend="feather", batch=5)
    out = [f for c in chunked(y, np.random.default_rng(3), 3000) for f in session.push(c)] + session.flush()
    assert len(out) == len(rendered) == session.frames_out == 75
    decoded = list(iter_frames(video, 25))
    for k, (f, want) in enumerate(zip(out, rendered)):
        assert f.index == k and f.template == pingpong_index(k, len(decoded))
        frame = decoded[f.template].copy()
        if f.region is not None:
            (x0, y0), (h, w) = f.origin, f.region.shape[:2]
            frame[y0 : y0 + h, x0 : x0 + w] = f.region
        if k < len(decoded):  # render replays the template from a JPEG cache after its first pass
            # the same conditions; the network, run on other batches, may round a few pixels the other way
            diff = np.abs(frame.astype(int) - want)
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert sum(f.region is None for f in out) == sum(not tpl.face[f.template] for f in out)
    sound = np.concatenate([f.audio for f in out])
    assert all(len(f.audio) == SR // 25 for f in out)  # each frame carries its 40 ms of audio
    np.testing.assert_array_equal(sound[: len(y)], y)
    assert 0.05 < model.lookahead < 0.25


def test_silence_keeps_the_template_playing_with_the_mouth_at_rest_and_memory_flat(demo, template_frames):
    model = MouthModel(demo["model"], backend="torch", lead=LIVE_LEAD)
    session = LiveSession(model, demo["template"], template_frames, blend="feather")
    chunks = [session.push(np.zeros(SR // 5, np.float32)) for _ in range(20)]  # 4 s of silence, 0.2 s at a time
    assert sum(map(len, chunks)) == int((4.0 - model.lookahead) * 25) + 1  # 25 fps, each once its lookahead is in
    assert len(session.audio) < SR // 5 + SR // 25 * 8 and len(session.cond.gated) < 20  # nothing accumulates
    out = [f for chunk in chunks for f in chunk]
    assert [f.template for f in out[48:52]] == [48, 49, 48, 47]  # the template plays on, back and forth
    np.testing.assert_array_equal(out[96].region, out[2].region)  # frame 2 again, the mouth at rest both times


def test_bad_audio_is_refused(demo, template_frames):
    session = LiveSession(MouthModel(demo["model"], backend="torch"), demo["template"], template_frames)
    with pytest.raises(HygieError, match="NaN"):
        session.push(np.array([0.0, np.nan], np.float32))
