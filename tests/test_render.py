"""Render: ping-pong looping, untouched pixels, muxed audio, ONNX = torch, and every bad input."""

from __future__ import annotations

from dataclasses import replace

import av
import cv2
import numpy as np
import pytest
from conftest import DATA, save_model, write_audio, write_video
from threadpoolctl import threadpool_info

from hygie_lib.audio import load_audio
from hygie_lib.cli import main as hygie
from hygie_lib.crops import Crops, box_roi, mouth_mask
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError
from hygie_lib.render import (
    AUDIO_SR,
    METADATA,
    audio_features,
    pingpong_frames,
    pingpong_index,
    reference_indices,
    render,
    render_frames,
)
from hygie_lib.video import iter_frames, probe_video


def test_pingpong_order():
    assert [pingpong_index(k, 4) for k in range(11)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert [pingpong_index(k, 1) for k in range(3)] == [0, 0, 0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(np.mean((a.astype(float) - b) ** 2), 1e-9)))


def assert_same(a: np.ndarray, b: np.ndarray, *, exact: bool) -> None:
    """Equal pixels (first pass, straight from the decoder), or the same picture within JPEG error (replays)."""
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        assert psnr(a, b) > 40


def test_pingpong_frames_replay_the_decoded_frames(tmp_path, face_image):
    frames = [np.roll(face_image[:96, :128], 7 * i, axis=1) for i in range(5)]
    video = write_video(tmp_path / "t.mkv", frames, 25, codec="ffv1", pix_fmt="bgr0")  # lossless
    out = list(pingpong_frames(video, 25, 5, 30))  # more replayed frames than are read ahead
    assert [i for i, _ in out][:12] == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert [i for i, _ in out] == [pingpong_index(k, 5) for k in range(30)]
    for k, (i, frame) in enumerate(out):
        assert frame.shape == frames[i].shape
        assert_same(frame, frames[i], exact=k < 5)
    assert [i for i, _ in pingpong_frames(video, 25, 5, 3)] == [0, 1, 2]  # shorter audio: stop at its end


def test_output_frames_change_only_the_mouth_and_skip_faceless_frames(demo):
    tpl: Crops = demo["template"]
    face = tpl.face.copy()
    face[10:14] = False  # as if no face had been found there
    tpl = replace(tpl, face=face)
    model = MouthModel(demo["model"], "torch")
    mel = audio_features(demo["audio"], model.data)
    n_template = len(tpl.crops)
    out = list(render_frames(model, tpl, demo["template_video"], mel, blend="poisson", batch=16))
    assert len(out) == mel.n_frames == 75 > n_template  # the audio's length, template looped
    source = list(iter_frames(demo["template_video"], 25))
    changed = 0
    for k, frame in enumerate(out):
        i = pingpong_index(k, n_template)
        if not tpl.face[i]:
            assert_same(frame, source[i], exact=k < n_template)
            continue
        x0, y0, x1, y1 = box_roi(tpl.boxes[i], *frame.shape[:2])
        outside = np.ones(frame.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert_same(frame[outside], source[i][outside], exact=k < n_template)
        changed += psnr(frame[y0:y1, x0:x1], source[i][y0:y1, x0:x1]) < 40
    assert changed > 60


def test_frames_are_painted_with_one_blas_and_one_opencv_thread(demo, monkeypatch):
    """Idle BLAS threads spin, and OpenCV splits small images between cores, taking the CPU the encoder and the model
    need (README, "Figures"): one thread each while painting, then as before."""
    model = MouthModel(demo["model"], "torch")
    seen = []
    generate = model.generate
    monkeypatch.setattr(
        model, "generate", lambda *a: seen.append((blas_threads(), cv2.getNumThreads())) or generate(*a)
    )
    opencv = cv2.getNumThreads()
    cv2.setNumThreads(2)  # on any machine, so that one, and back, can be seen
    try:
        before = blas_threads(), 2
        mel = audio_features(demo["audio"], model.data)
        assert len(list(render_frames(model, demo["template"], demo["template_video"], mel, batch=32))) == mel.n_frames
        assert seen == [({1}, 1)] * 3  # 75 frames: three batches
        assert (blas_threads(), cv2.getNumThreads()) == before
    finally:
        cv2.setNumThreads(opencv)


def test_an_error_in_a_batch_started_in_its_thread_stops_the_render(demo):
    """Batches are started in a worker thread: what fails there (a template shorter than its prepared crops) is
    raised by render_frames itself, naming the file."""
    tpl = demo["template"]
    longer = replace(tpl, **{k: np.concatenate([getattr(tpl, k)] * 2) for k in ("crops", "boxes", "face", "landmarks")})
    model = MouthModel(demo["model"], "torch")
    mel = audio_features(demo["audio"], model.data)
    with pytest.raises(HygieError, match=f"decoded {len(tpl.crops)} frames but its prepared crops have"):
        list(render_frames(model, longer, demo["template_video"], mel, batch=16))


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_render_command_writes_a_tagged_mp4_with_the_new_audio(demo, tmp_path):
    out = tmp_path / "out.mp4"
    assert (
        hygie(
            [
                "render",
                "--model",
                str(demo["model"]),
                "--template",
                str(demo["template_video"]),
                "--audio",
                str(demo["audio"]),
                "--out",
                str(out),
                "--backend",
                "onnx",
                "--blend",
                "feather",
            ]
        )
        == 0
    )
    info, src = probe_video(out), probe_video(demo["template_video"])
    assert (info.width, info.height, info.fps) == (src.width, src.height, 25)
    assert sum(1 for _ in iter_frames(out, 25)) == 75
    with av.open(str(out)) as c:
        assert c.metadata.get("comment") == METADATA["comment"]
        assert c.streams.audio[0].codec_context.name == "aac"
    y, ref = load_audio(out, AUDIO_SR), load_audio(demo["audio"], AUDIO_SR)
    assert abs(len(y) - len(ref)) < 0.03 * AUDIO_SR  # AAC priming aside, the audio's duration
    n = min(len(y), len(ref))
    assert np.corrcoef(y[:n], ref[:n])[0, 1] > 0.9  # the new audio, in sync


def generate_inputs(model: MouthModel, seed: int = 0):
    """Random crops and references, and the conditions of 3 frames of the demo audio as this model hears them."""
    rng = np.random.default_rng(seed)
    crops, refs = rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    return crops, refs, rng.random((3, *model_cond_shape(model)[1:]), dtype=np.float32)


def model_cond_shape(model: MouthModel) -> tuple[int, ...]:
    return (1, 3, 32, 32) if model.cond == "shape" else (1, 1, 80, 16)


@pytest.mark.parametrize("kind", ["model", "audio_model"])
def test_onnx_matches_torch(demo, kind):
    torch_model, onnx_model = MouthModel(demo[kind], "torch"), MouthModel(demo[kind], "onnx")
    a, b = torch_model.generate(*generate_inputs(torch_model)), onnx_model.generate(*generate_inputs(onnx_model))
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8 and np.abs(a.astype(int) - b).max() <= 1
    np.testing.assert_array_equal(onnx_model.mask, torch_model.mask)


def test_exported_onnx_file_renders_like_the_checkpoint(demo, tmp_path):
    onnx = tmp_path / "m.onnx"
    assert hygie(["export-onnx", "--model", str(demo["model"]), "--out", str(onnx)]) == 0
    exported, checkpoint = MouthModel(onnx), MouthModel(demo["model"], "torch")
    assert exported.data == DATA and exported.reference and exported.cond == "shape"
    np.testing.assert_array_equal(exported.mask, mouth_mask(32, 1.3))
    inputs = generate_inputs(exported, 1)
    a, b = exported.generate(*inputs), checkpoint.generate(*inputs)
    assert np.abs(a.astype(int) - b).max() <= 1 and np.abs(a.astype(int) - inputs[0]).mean() > 1
    mel = audio_features(demo["audio"], exported.data)  # the shape model travels in the ONNX file too
    np.testing.assert_allclose(exported.hear(mel), checkpoint.hear(mel), rtol=1e-6)


def test_a_shape_model_draws_the_shape_the_audio_asks_for(demo):
    """The condition of an output frame is the shape predicted from the audio, drawn at the template frame's pose."""
    model, tpl = MouthModel(demo["model"], "torch"), demo["template"]
    mel = audio_features(demo["audio"], model.data)
    heard = model.hear(mel)
    assert heard.shape == (mel.n_frames, 4) and heard.std(0).min() > 0  # it follows the audio
    ks, i = np.array([10, 40]), np.array([5, 5])  # two moments of the audio, drawn into the same template frame
    cond = model.conditions(heard[ks], tpl.landmarks[i], tpl.boxes[i])
    assert cond.shape == (2, 3, 32, 32) and 0 <= cond.min() and cond.max() <= 1
    assert cond[:, 0].sum() > 5 and not np.allclose(cond[0], cond[1])  # lips drawn, and they differ
    mask = model.mask.astype(bool)
    assert cond[:, 0][:, mask].sum() > 0.95 * cond[:, 0].sum()  # inside the region the model regenerates


def bad_render(demo, tmp_path, capsys, **override):
    out = tmp_path / "out.mp4"
    args = {"model": demo["model"], "template": demo["template_video"], "audio": demo["audio"], **override}
    code = hygie(["render", *[x for k, v in args.items() for x in (f"--{k}", str(v))], "--out", str(out)])
    assert code == 2 and not out.exists() and not list(tmp_path.glob(".out*"))  # no partial output
    return capsys.readouterr().err


def test_missing_and_corrupt_models(demo, tmp_path, capsys):
    assert "model not found" in bad_render(demo, tmp_path, capsys, model=tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    err = bad_render(demo, tmp_path, capsys, model=tmp_path / "bad.pt")
    assert "bad.pt: not a HygieSync model (not a PyTorch checkpoint at all)" in err and "weights_only" not in err
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    assert "bad.onnx: not a HygieSync ONNX model" in bad_render(demo, tmp_path, capsys, model=tmp_path / "bad.onnx")
    assert hygie(["export-onnx", "--model", str(demo["model"]), "--out", str(tmp_path / "m.onnx")]) == 0
    (tmp_path / "m.onnx").rename(tmp_path / "exported.pt")  # an ONNX file under a checkpoint's name
    assert "exported.pt: is an ONNX model, not a checkpoint. Name it exported.onnx" in bad_render(
        demo, tmp_path, capsys, model=tmp_path / "exported.pt"
    )
    (tmp_path / "ckpt.onnx").write_bytes(demo["model"].read_bytes())  # and the other way round
    assert "ckpt.onnx: is a PyTorch checkpoint, not ONNX" in bad_render(
        demo, tmp_path, capsys, model=tmp_path / "ckpt.onnx"
    )


def test_model_trained_on_other_crops_than_the_templates(demo, tmp_path):
    model = MouthModel(save_model(tmp_path / "m48.pt", demo["shapes"], img_size=48), "torch")
    mel = audio_features(demo["audio"], model.data)
    with pytest.raises(
        HygieError, match="its crops are 32px with MOUTH_PAD 1.3 at 25.0 fps but the model was trained on 48px"
    ):
        render(model, demo["template"], demo["template_video"], mel, demo["audio"], tmp_path / "o.mp4", progress=False)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".o*"))


def test_silent_empty_and_missing_audio(demo, tmp_path, capsys):
    silent = write_audio(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000, "pcm_s16le")
    assert "silent.wav: the audio is silent" in bad_render(demo, tmp_path, capsys, audio=silent)
    empty = write_audio(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000, "pcm_s16le")
    assert "empty.wav" in bad_render(demo, tmp_path, capsys, audio=empty)
    assert "audio file not found" in bad_render(demo, tmp_path, capsys, audio=tmp_path / "none.wav")


def test_template_without_a_face(demo, tmp_path, capsys):
    blank = write_video(tmp_path / "blank.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 10, 25)
    assert "no face" in bad_render(demo, tmp_path, capsys, template=blank)


def test_references_are_face_frames_half_the_template_away():
    face = np.ones(20, bool)
    face[[5, 6, 7]] = False
    refs = reference_indices(face)
    assert face[refs].all() and refs[0] == 10 and refs[15] in (4, 8)  # frame 5 has no face: the nearest one
    assert (np.minimum(np.abs(refs - np.arange(20)), 20 - np.abs(refs - np.arange(20))) >= 7).all()
    assert (reference_indices(np.eye(1, 9, 4, dtype=bool)[0]) == 4).all()  # a single face frame serves all


def test_probe_writes_the_annotated_frames_and_prints_the_mouth_box_side(demo, tmp_path, capsys):
    assert hygie(["probe", str(demo["template_video"]), "--out", str(tmp_path / "probe.png"), "--frames", "2"]) == 0
    side = float(capsys.readouterr().out.split("mouth box: ")[1].split(" px")[0])
    assert side == pytest.approx(np.median(demo["template"].boxes[:2, 2]), abs=1.0)
    assert (tmp_path / "probe.png").stat().st_size > 1000


def test_new_audio_is_heard_at_the_training_recordings_level(demo, tmp_path):
    """A model trained on a recording 12 dB quieter than the new audio hears it turned down to that level: it renders
    the frames of that quieter audio; with --keep-level, not."""
    loud = audio_features(demo["audio"], DATA).loud - 12 * np.log(10) / 10
    shapes = demo["shapes"]
    model = save_model(tmp_path / "quiet.pt", replace(shapes, predictor=replace(shapes.predictor, loud=loud)))
    quieter = write_audio(
        tmp_path / "quieter.wav", load_audio(demo["audio"], 16000) * 10 ** (-12 / 20), 16000, "pcm_f32le"
    )

    def frames(audio, *options: str) -> np.ndarray:
        out = tmp_path / f"{len(list(tmp_path.glob('*.mp4')))}.mp4"
        args = ["--model", str(model), "--template", str(demo["template_video"]), "--audio", str(audio)]
        assert hygie(["render", *args, "--out", str(out), *options]) == 0
        return np.stack(list(iter_frames(out, 25))).astype(float)

    heard_quieter = frames(quieter, "--keep-level")
    assert np.abs(frames(demo["audio"]) - heard_quieter).mean() < 0.1  # measured 0: turned down, the mel is exact
    assert np.abs(frames(demo["audio"], "--keep-level") - heard_quieter).mean() > 0.5  # measured 1.35 (the mouth)
