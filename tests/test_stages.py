"""Each stage on bad input: exit code != 0, one clear `error:` line naming the file, and no output left behind."""

import av
import numpy as np
import pytest
import yaml
from conftest import ROOT, run_stage, write_video

from hygie_lib.audio import write_wav
from hygie_lib.crops import Crops
from hygie_lib.video import VideoWriter


def assert_clean_failure(result, names: str, outdir) -> None:
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and names in last, result.stderr
    assert "Traceback" not in result.stderr
    assert list(outdir.rglob("*")) == [], "no output, not even a temp file"


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_missing_file(tmp_path, out):
    r = run_stage("extract_audio", tmp_path / "nope.mp4", out / "a.wav")
    assert_clean_failure(r, "nope.mp4: file not found", out)


def test_not_a_video(tmp_path, out):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my notes, not a video\n" * 50)
    r = run_stage("detect_landmarks", fake, out, out / "m.json")
    assert_clean_failure(r, "notes.mp4: not a readable media file", out)


def test_truncated_video(tmp_path, out):
    path = tmp_path / "cut.mp4"
    with VideoWriter(path, 25, 64, 64, audio=np.zeros(16000, np.float32)) as w:
        for i in range(25):
            w.write(np.full((64, 64, 3), i * 8, np.uint8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for stage, args in [("extract_audio", [out / "a.wav"]), ("detect_landmarks", [out, out / "m.json"])]:
        assert_clean_failure(run_stage(stage, path, *args), "cut.mp4", out)


def test_zero_frames(tmp_path, out):
    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as c:  # header and trailer, no frame
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    assert path.stat().st_size > 0
    r = run_stage("detect_landmarks", path, out, out / "m.json")
    assert_clean_failure(r, "empty.mp4: has no video frames", out)


def test_no_face_at_all(tmp_path, out):
    path = write_video(tmp_path / "wall.mp4", [np.full((96, 96, 3), 90, np.uint8)] * 5, 25)
    r = run_stage("detect_landmarks", path, out, out / "m.json")
    assert_clean_failure(r, "wall.mp4: no face found in any of 5 frames", out)


def test_no_audio_stream(tmp_path, out):
    path = write_video(tmp_path / "mute.mp4", [np.zeros((32, 32, 3), np.uint8)] * 5, 25)
    r = run_stage("extract_audio", path, out / "a.wav")
    assert_clean_failure(r, "mute.mp4: has no audio stream", out)


def test_audio_shorter_than_one_window(tmp_path, out):
    write_wav(tmp_path / "blip.wav", np.zeros(160, np.float32), 16000)
    r = run_stage("compute_mel", tmp_path / "blip.wav", out / "mel.npz")
    assert_clean_failure(r, "blip.wav: audio of 10 ms is shorter than one analysis window", out)


def test_huge_resolution(tmp_path, out):
    path = write_video(tmp_path / "huge.mp4", [np.zeros((64, 4104, 3), np.uint8)] * 2, 25)
    r = run_stage("detect_landmarks", path, out, out / "m.json")
    assert_clean_failure(r, "huge.mp4: 4104x64 is larger than the 4096px limit", out)


def test_odd_resolution_works(tmp_path, out, face_image):
    import cv2

    odd = cv2.resize(face_image, (321, 317))
    path = write_video(tmp_path / "odd.mkv", [odd] * 3, 25, codec="ffv1", pix_fmt="yuv444p")
    r = run_stage("detect_landmarks", path, out, out / "m.json")
    assert r.returncode == 0, r.stderr
    lm = np.load(out / "landmarks.npz")["landmarks"]
    assert lm.shape == (3, 478, 3) and not np.isnan(lm).any()
    assert '"face_rate": 1.0' in (out / "m.json").read_text()
    r = run_stage("build_crops", path, out / "landmarks.npz", out / "crops.npz")
    assert r.returncode == 0, r.stderr
    size = yaml.safe_load((ROOT / "params.yaml").read_text())["build_crops"]["IMG_SIZE"]  # whatever it is now
    assert Crops.load(out / "crops.npz").crops.shape == (3, size, size, 3)


def test_extract_audio_writes_16k_mono_wav(tmp_path, out):
    from conftest import write_audio

    from hygie_lib.audio import read_wav

    y = (0.3 * np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100)).astype(np.float32)
    src = write_audio(tmp_path / "speech.m4a", y, 44100, "aac", channels=2)
    r = run_stage("extract_audio", src, out / "a.wav")
    assert r.returncode == 0, r.stderr
    back, sr = read_wav(out / "a.wav")
    assert sr == 16000 and abs(len(back) / sr - 1.0) < 0.1
