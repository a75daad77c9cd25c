import numpy as np
import pytest
from conftest import REAL, set_mp4_rotation, write_video

from hygie_lib.io import HygieError
from hygie_lib.video import VideoWriter, count_frames, iter_frames, open_media, probe_video


def index_frames(n: int, h: int = 32, w: int = 128) -> list[np.ndarray]:
    """Frames whose index i is written as a white 8-px bar at column 8 * (i % 16)."""
    frames = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, 8 * (i % 16) : 8 * (i % 16) + 8] = 255
        frames.append(img)
    return frames


def read_indices(frames) -> list[int]:
    return [int(np.argmax(f[:, :, 0].mean(0).reshape(-1, 8).mean(1))) for f in frames]


@pytest.mark.parametrize("src_fps,dst_fps", [(25, 25), (50, 25), (50, 30), (20, 25), (30000 / 1001, 25)])
def test_constant_rate_resampling_picks_the_frame_on_screen(tmp_path, src_fps, dst_fps):
    n_src = 48
    path = write_video(tmp_path / "idx.mp4", index_frames(n_src), src_fps)
    got = read_indices(iter_frames(path, dst_fps))
    duration = n_src / src_fps
    assert len(got) == count_frames(duration, dst_fps) == round(duration * dst_fps + 0.4999)
    expected = [int(np.floor(n / dst_fps * src_fps + 1e-3)) % 16 for n in range(len(got))]
    assert got == expected


def test_rotation_metadata_is_applied(tmp_path):
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :32] = 255  # left half white
    path = write_video(tmp_path / "rot.mp4", [img] * 3, 25)
    set_mp4_rotation(path, 90)
    info = probe_video(path)
    assert (info.width, info.height) == (32, 64)
    frame = next(iter_frames(path, 25))
    assert frame.shape == (64, 32, 3)
    assert frame[:28].mean() > 200 and frame[36:].mean() < 50  # turned clockwise: left half is now on top


def test_writer_muxes_audio_of_the_right_length(tmp_path):
    sr, fps = 16000, 25
    audio = (0.2 * np.sin(np.arange(sr * 2) * 2 * np.pi * 300 / sr)).astype(np.float32)
    with VideoWriter(tmp_path / "av.mp4", fps, 64, 48, audio=audio, sr=sr, metadata={"comment": "hello"}) as w:
        for img in index_frames(50, 48, 64):
            w.write(img)
    with open_media(tmp_path / "av.mp4") as c:
        a = c.streams.audio[0]
        assert abs(float(a.duration * a.time_base) - 2.0) < 0.1
        assert c.metadata.get("comment") == "hello"
    assert len(list(iter_frames(tmp_path / "av.mp4", fps))) == 50


def test_writer_pulls_streamed_audio_only_as_far_as_the_video(tmp_path):
    """Ten minutes of audio must not sit in memory: chunks are read as the video advances."""
    sr, fps, pulled = 16000, 25, []

    def chunks():
        for i in range(600):  # 60 s in 0.1 s chunks
            pulled.append(i)
            yield np.full(sr // 10, 0.1 * np.sin(i), np.float32)

    with VideoWriter(tmp_path / "av.mp4", fps, 64, 48, audio=chunks(), sr=sr) as w:
        for k, img in enumerate(index_frames(50, 48, 64)):
            w.write(img)
            assert len(pulled) <= (k + 1) / fps * 10 + 2  # at most a chunk (and a frame) ahead of the video
    assert len(pulled) == 600  # closing writes the rest
    with open_media(tmp_path / "av.mp4") as c:
        a = c.streams.audio[0]
        assert abs(float(a.duration * a.time_base) - 60.0) < 0.1


def test_writer_refuses_odd_sizes(tmp_path):
    with pytest.raises(HygieError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", 25, 63, 48)


def test_odd_resolution_input_decodes(tmp_path):
    frames = [np.full((33, 47, 3), 100, np.uint8)] * 4
    path = write_video(tmp_path / "odd.mkv", frames, 25, codec="ffv1", pix_fmt="yuv444p")
    out = list(iter_frames(path, 25))
    assert len(out) == 4 and out[0].shape == (33, 47, 3)


def test_writer_gives_the_same_bytes_every_time(tmp_path):
    """Encoding is reproducible: with x264's macroblock tree on, the bytes varied from one write of the same frames to
    the next when decoding ran in between, as in the cross check (README, "Reproducible renders")."""
    from hygie_lib.render import pingpong_frames

    clip = REAL / "obama_20s.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip}: the real clips are not here")
    frames = [f for _, f in zip(range(115), iter_frames(clip, 25.0))]
    h, w = frames[0].shape[:2]
    written = []
    for k in range(6):
        out = tmp_path / f"{k}.mp4"
        with VideoWriter(out, 25.0, w, h, crf=10) as writer:
            for f in frames[::-1]:
                writer.write(f.copy())
        written.append(out.read_bytes())
        for _ in pingpong_frames(out, 25.0, len(frames), len(frames) + 2):  # decoding, as the cross check does
            pass
    assert all(b == written[0] for b in written)
