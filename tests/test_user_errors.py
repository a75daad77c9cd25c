"""A demanding user's mistakes: outputs that are inputs, stale prepared files, bad paths and options.

Each is refused with one `error:` line before any work is done, and nothing the user had is lost.
"""

from __future__ import annotations

import os
import subprocess
import sys

import av
import pytest
from conftest import DATA, ROOT, write_video

from hygie_lib.audio import Mel, load_audio
from hygie_lib.cli import main as hygie
from hygie_lib.io import atomic_path, check_output
from hygie_lib.video import iter_frames

ROOT_CAN_WRITE_ANYWHERE = os.geteuid() == 0


def render_args(demo, out, **override) -> list[str]:
    args = {"model": demo["model"], "template": demo["template_video"], "audio": demo["audio"], "out": out, **override}
    return ["render", *[x for k, v in args.items() for x in (f"--{k}", str(v))]]


def refused(capsys, argv: list[str], message: str) -> None:
    """The command exits 2 with one `error:` line holding `message`."""
    assert hygie(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err


@pytest.fixture
def inputs(demo, tmp_path):
    """Copies of the demo's template, audio and model, so a test that failed to protect them breaks nothing else."""
    copies = {}
    for name in ("template_video", "audio", "model"):
        copies[name] = tmp_path / demo[name].name
        copies[name].write_bytes(demo[name].read_bytes())
    return {**demo, **copies}


@pytest.mark.parametrize("victim", ["template", "audio", "model"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(inputs, tmp_path, capsys, victim):
    key = {"template": "template_video", "audio": "audio", "model": "model"}[victim]
    before = inputs[key].read_bytes()
    spelled_otherwise = tmp_path / "." / ".." / tmp_path.name / inputs[key].name
    target = spelled_otherwise.with_suffix(".mp4") if victim != "template" else spelled_otherwise
    if target != spelled_otherwise:  # not an .mp4: link it under an .mp4 name, so only samefile can tell
        os.link(inputs[key], target)
    refused(capsys, render_args(inputs, target), "is also an input")
    assert inputs[key].read_bytes() == before


def test_export_onnx_never_overwrites_its_checkpoint(inputs, tmp_path, capsys):
    before = inputs["model"].read_bytes()
    refused(capsys, ["export-onnx", "--model", str(inputs["model"]), "--out", str(inputs["model"])], "written as .onnx")
    os.link(inputs["model"], tmp_path / "same.onnx")
    refused(capsys, ["export-onnx", "--model", str(inputs["model"]), "--out", str(tmp_path / "same.onnx")], "is also")
    assert inputs["model"].read_bytes() == before


def test_output_container_follows_the_name(demo, tmp_path, capsys):
    refused(capsys, render_args(demo, tmp_path / "x.webm"), "x.webm: this output is written as .mp4 or .mov or .mkv")
    for name, container in [("x.mov", "mov"), ("x.mkv", "matroska")]:
        assert hygie(render_args(demo, tmp_path / name, blend="feather")) == 0
        with av.open(str(tmp_path / name)) as c:
            assert container in c.format.name and c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in iter_frames(tmp_path / name, 25)) == 75


@pytest.mark.parametrize(
    "where, message",
    [("dir", "is a directory"), ("under_file", "is a file, not a folder"), ("proc", "cannot write in /proc")],
)
def test_unwritable_outputs_are_refused_before_any_work(demo, tmp_path, capsys, where, message):
    (tmp_path / "dir.mp4").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    out = {"dir": tmp_path / "dir.mp4", "under_file": tmp_path / "notes.txt" / "o.mp4", "proc": "/proc/o.mp4"}[where]
    refused(capsys, render_args(demo, out), message)
    assert "preparing the template" not in capsys.readouterr().out  # refused before any work
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(ROOT_CAN_WRITE_ANYWHERE, reason="root writes in read-only folders: /proc covers it")
def test_read_only_folder_is_refused(demo, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    refused(capsys, render_args(demo, ro / "o.mp4"), "cannot write in")
    refused(capsys, ["demo-data", "--out", str(ro / "raw")], "cannot write in")
    refused(capsys, ["export-onnx", "--model", str(demo["model"]), "--out", str(ro / "m.onnx")], "cannot write in")


def test_bad_options_and_other_commands(demo, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        hygie(render_args(demo, tmp_path / "o.mp4", batch=0))
    assert e.value.code == 2 and "--batch: must be above 0, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        hygie(["demo-data", "--seconds", "0", "--out", str(tmp_path / "raw")])
    assert "--seconds: must be above 0" in capsys.readouterr().err and not (tmp_path / "raw").exists()
    refused(capsys, ["probe", str(demo["template_video"]), "--out", str(tmp_path / "p.jpgx")], "written as .png")
    (tmp_path / "file").write_text("x")
    refused(capsys, ["demo-data", "--out", str(tmp_path / "file" / "raw")], "is a file, not a folder")
    refused(capsys, ["export-onnx", "--model", str(demo["model"]), "--out", "/proc/m.onnx"], "cannot write in /proc")


def test_stale_prepared_crops_are_refused(demo, tmp_path, capsys, face_image):
    crops = tmp_path / "crops.npz"
    demo["template"].save(crops)
    assert hygie(render_args(demo, tmp_path / "ok.mp4", crops=crops, blend="feather")) == 0
    n = sum(1 for _ in iter_frames(demo["template_video"], 25))
    other = write_video(tmp_path / "other.mp4", [face_image] * n, 25)  # another video, the same frame count
    refused(capsys, render_args(demo, tmp_path / "o.mp4", template=other, crops=crops), "was not made from")


def test_odd_sized_template_is_refused_before_landmarks(demo, tmp_path, capsys, face_image):
    import cv2

    odd = write_video(tmp_path / "odd.mkv", [cv2.resize(face_image, (321, 317))] * 3, 25, "ffv1", "yuv444p")
    refused(capsys, render_args(demo, tmp_path / "o.mp4", template=odd), "H.264 needs an even frame size")
    assert "preparing" not in capsys.readouterr().out


def test_truncated_template_warns_with_the_counts(demo, tmp_path):
    full = tmp_path / "full.mp4"  # "faststart": the index comes first, so a cut file still opens
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 512, 512, "yuv420p"
        for i, frame in enumerate(iter_frames(demo["template_video"], 25)):
            f = av.VideoFrame.from_ndarray(frame, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    decodable = 0  # counted by PyAV alone, not by the code under test
    with av.open(str(cut)) as c:
        try:
            for _ in c.decode(video=0):
                decodable += 1
        except av.error.FFmpegError:
            pass
    assert 0 < decodable < 50
    argv = render_args(demo, tmp_path / "o.mp4", template=cut, blend="feather")
    r = subprocess.run([sys.executable, "-m", "hygie_lib.cli", *argv], capture_output=True, text=True, timeout=300)
    warning = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert r.returncode == 0 and len(warning) == 1, r.stderr
    assert f"only {decodable} of the 50 frames its header declares could be decoded" in warning[0]


def test_a_killed_writer_leaves_nothing_behind_after_the_next_run(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{dead.stdout.strip()}.abc123.tmp.mp4"  # what kill -9 during a render leaves
    stale.write_bytes(b"half a video")
    mine = tmp_path / f".out.{os.getpid()}.def456.tmp.mp4"  # a live writer's temp file is left alone
    mine.write_bytes(b"in progress")
    with atomic_path(tmp_path / "out.mp4") as tmp:
        tmp.write_bytes(b"done")
    assert not stale.exists() and mine.exists() and (tmp_path / "out.mp4").read_bytes() == b"done"


def test_check_output_accepts_a_new_file_in_a_new_folder(tmp_path):
    assert check_output(tmp_path / "a" / "b" / "o.MP4", suffixes=[".mp4"]) == tmp_path / "a" / "b" / "o.MP4"
    assert not (tmp_path / "a").exists()  # checking writes nothing


def test_render_stage_names_the_mel_file_made_otherwise(demo, tmp_path):
    mel = tmp_path / "mel.npz"
    y = load_audio(demo["audio"], 16000)
    Mel.of(y, 16000, fps=25.0, n_mels=40, per_frame=4, n_fft=512).save(mel)  # 40 bands; the model hears 80
    crops = tmp_path / "crops.npz"
    demo["template"].save(crops)
    cmd = [
        sys.executable,
        str(ROOT / "stages" / "render.py"),
        str(demo["model"]),
        str(tmp_path / "library.npz"),  # read only by render.mouth retrieve and blend
        str(demo["template_video"]),
        str(crops),
        str(demo["audio"]),
        str(mel),
        str(tmp_path / "o.mp4"),
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and f"{mel}: made at 16000 Hz, n_fft 512, 40 mels" in r.stderr, r.stderr
    assert f"the model hears 16000 Hz, n_fft 512, {DATA.n_mels} mels" in r.stderr and "Traceback" not in r.stderr
