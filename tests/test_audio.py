import numpy as np
import pytest
from conftest import write_audio, write_video

from hygie_lib.audio import (
    LEVEL_MAX_DB,
    LOG_FLOOR,
    Mel,
    load_audio,
    log_mel,
    mel_windows,
    read_wav,
    write_wav,
)
from hygie_lib.io import HygieError

SR = 16000


def tone(seconds: float, sr: int, hz: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def peak_hz(y: np.ndarray, sr: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(y))) * sr / len(y))


@pytest.mark.parametrize(
    "name,codec,channels",
    [
        ("a.wav", "pcm_s16le", 2),
        ("a.mp3", "libmp3lame", 1),
        ("a.m4a", "aac", 2),
        ("a.flac", "flac", 1),
        ("a.webm", "libopus", 2),
        ("a.mkv", "flac", 1),
        ("a.mov", "aac", 1),
    ],
)
def test_load_audio_any_container_to_16k_mono(tmp_path, name, codec, channels):
    src_sr = 48000
    path = write_audio(tmp_path / name, tone(1.0, src_sr), src_sr, codec, channels)
    y = load_audio(path, SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) / SR - 1.0) < 0.1
    assert abs(peak_hz(y, SR) - 440) < 3


def test_load_audio_from_a_video_file(tmp_path):
    from hygie_lib.video import VideoWriter

    with VideoWriter(tmp_path / "v.mp4", 25, 32, 32, audio=tone(1.0, SR, 300), sr=SR) as w:
        for _ in range(25):
            w.write(np.zeros((32, 32, 3), np.uint8))
    y = load_audio(tmp_path / "v.mp4", SR)
    assert abs(peak_hz(y, SR) - 300) < 3
    assert len(y) == SR  # exactly the stream's duration: AAC's padded last frame is dropped


def test_no_audio_stream_is_a_clear_error(tmp_path):
    path = write_video(tmp_path / "silent.mp4", [np.zeros((32, 32, 3), np.uint8)] * 3, 25)
    with pytest.raises(HygieError, match=r"silent\.mp4: has no audio stream"):
        load_audio(path, SR)


def test_wav_round_trip(tmp_path):
    y = tone(0.5, SR)
    write_wav(tmp_path / "x.wav", y, SR)
    back, sr = read_wav(tmp_path / "x.wav")
    assert sr == SR and np.max(np.abs(back - y)) < 1e-4


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_mel_window_of_frame_t_is_centred_on_time_t(fps):
    """A click at the time of frame t peaks in the middle of frame t's window, even after a minute (no drift)."""
    per_frame, win, seconds = 4, 16, 62.0
    y = np.zeros(int(seconds * SR), np.float32)
    click_frames = [50, 1500]
    for t in click_frames:
        s = round(t / fps * SR)
        y[s - 8 : s + 8] = np.hanning(16)
    mel = log_mel(y, SR, fps=fps, n_mels=40, per_frame=per_frame, n_fft=512)
    assert mel.shape == (40, int(np.ceil(seconds * fps - 1e-6)) * per_frame)
    for t in click_frames:
        energy = mel_windows(mel, t, per_frame=per_frame, win=win).max(0)
        assert int(np.argmax(energy)) == win // 2
        later = mel_windows(mel, t - 1, per_frame=per_frame, win=win).max(0)  # frame t-1 hears it 1 frame later
        assert int(np.argmax(later)) == win // 2 + per_frame


def test_mel_windows_pad_edges_with_edge_columns():
    mel = np.arange(3 * 20, dtype=np.float32).reshape(3, 20)
    w0 = mel_windows(mel, 0, per_frame=4, win=8)
    assert w0.shape == (3, 8)
    np.testing.assert_array_equal(w0[:, :4], np.repeat(mel[:, :1], 4, 1))
    np.testing.assert_array_equal(w0[:, 4:], mel[:, :4])
    w_end = mel_windows(mel, 5, per_frame=4, win=8)
    np.testing.assert_array_equal(w_end[:, 4:], np.repeat(mel[:, -1:], 4, 1))


def test_mel_windows_of_many_frames_match_one_by_one():
    mel = np.random.default_rng(0).normal(size=(8, 100)).astype(np.float32)
    frames = np.array([[0, 1], [12, 13], [23, 24]])
    w = mel_windows(mel, frames, per_frame=4, win=16)
    assert w.shape == (3, 2, 8, 16)
    for i, j in np.ndindex(3, 2):
        np.testing.assert_array_equal(w[i, j], mel_windows(mel, frames[i, j], per_frame=4, win=16))
        np.testing.assert_array_equal(w[i, j, :, 8], mel[:, frames[i, j] * 4])  # the centre column is the frame's own


def test_mel_file_keeps_its_settings(tmp_path):
    mel = Mel.of(tone(1.0, SR), SR, fps=30.0, n_mels=20, per_frame=2, n_fft=256)
    assert (mel.n_mels, mel.n_frames) == (20, 30)
    mel.save(tmp_path / "mel.npz")
    back = Mel.load(tmp_path / "mel.npz")
    assert (back.sr, back.n_fft, back.fps, back.per_frame) == (SR, 256, 30.0, 2)
    np.testing.assert_array_equal(back.mel, mel.mel)
    (tmp_path / "old.npz").write_bytes(b"junk")
    with pytest.raises(HygieError, match=r"old\.npz: not a mel file made by compute_mel"):
        Mel.load(tmp_path / "old.npz")


def test_log_mel_refuses_audio_shorter_than_one_window():
    with pytest.raises(HygieError, match="shorter than one analysis window"):
        log_mel(np.zeros(100, np.float32), SR, fps=25, n_mels=80, per_frame=4, n_fft=512)


def test_at_level_is_the_same_audio_recorded_louder_or_quieter():
    """Turned down to another recording's level, a mel is that recording's (exactly, floor and all); turned up, it is
    wherever the quieter one kept anything above the floor, and its floor stays; never by more than LEVEL_MAX_DB."""
    rng = np.random.default_rng(0)
    bursts = np.repeat(rng.uniform(0, 1, 30) > 0.4, SR // 10)  # syllables and pauses, 3 s
    y = (0.3 * bursts * rng.normal(0, 1, len(bursts)) + 2e-3 * rng.normal(0, 1, len(bursts))).astype(np.float32)

    def mel(scale: float) -> Mel:
        return Mel.of(y * scale, SR, fps=25.0, n_mels=80, per_frame=4, n_fft=512)

    loud_, quiet = mel(1.0), mel(10 ** (-12 / 20))
    floor = np.log(LOG_FLOOR) + 1e-4
    assert (quiet.mel <= floor).mean() > (loud_.mel <= floor).mean() + 0.05  # the quieter one lost bins to the floor
    np.testing.assert_allclose(loud_.at_level(quiet.loud).mel, quiet.mel, atol=1e-3)
    up = quiet.at_level(loud_.loud).mel
    kept = quiet.mel > floor
    np.testing.assert_allclose(up[kept], loud_.mel[kept], atol=1e-3)
    assert (up[~kept] <= floor).all()
    assert quiet.gain_to(loud_.loud) == pytest.approx(12, abs=0.1)
    far = quiet.at_level(loud_.loud + 10.0)  # 43 dB louder asked: moved by LEVEL_MAX_DB
    moved = (far.mel - quiet.mel)[kept].mean() * 10 / np.log(10)
    assert moved == pytest.approx(LEVEL_MAX_DB, abs=0.01)
    assert quiet.at_level(-np.inf) is quiet and quiet.gain_to(-np.inf) == 0  # a model made before the level was kept
    # a long silence before or after does not lower the loud level, so the audio is not turned up for it
    padded = np.concatenate([np.zeros(5 * SR, np.float32), y, np.zeros(20 * SR, np.float32)])
    long = Mel.of(padded, SR, fps=25.0, n_mels=80, per_frame=4, n_fft=512)
    assert long.loud == pytest.approx(loud_.loud, abs=0.01)  # measured 0.003 dB off (0.64 dB counting the silence)
