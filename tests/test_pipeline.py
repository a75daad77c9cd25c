"""The DVC pipeline: declarations match the code, `dvc repro` runs end to end, and reruns are minimal."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from hygie_lib.video import probe_video

STAGE_SCRIPT = re.compile(r"^stages/(?!common)\w+\.py$")


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages (foreach bodies unexpanded) keyed by name."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: body.get("do", body) for name, body in stages.items()}


def script_of(body: dict) -> Path:
    scripts = [d for d in body["deps"] if STAGE_SCRIPT.match(d)]
    assert len(scripts) == 1, body["deps"]
    return ROOT / scripts[0]


def params_read(script: Path) -> set[str]:
    """The dotted names a stage script passes to load_params(...), a bare section name standing for all its keys."""
    calls = [n for n in ast.walk(ast.parse(script.read_text())) if isinstance(n, ast.Call)]
    names = {a.value for c in calls if getattr(c.func, "id", "") == "load_params" for a in c.args}
    return {n for name in names for n in ([name] if "." in name else [f"{name}.{k}" for k in params_yaml()[name]])}


def local_imports(path: Path, seen: set[Path] | None = None) -> set[Path]:
    """Files of hygie_lib (and stages/common.py) that `path` imports, transitively."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            if name.startswith("hygie_lib."):
                target = ROOT / (name.replace(".", "/") + ".py")
            elif name == "common":
                target = ROOT / "stages" / "common.py"
            else:
                continue
            if target.is_file() and target not in seen:
                seen.add(target)
                local_imports(target, seen)
    return seen


def params_yaml() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def declared_params(body: dict) -> set[str]:
    """A stage's params as dotted names, a bare section name standing for all its keys."""
    names = set()
    for entry in body.get("params", []):
        names |= {entry} if "." in entry else {f"{entry}.{key}" for key in params_yaml()[entry]}
    return names


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_stage_declares_exactly_the_params_it_reads(name):
    body = dvc_stages()[name]
    assert declared_params(body) == params_read(script_of(body))


def test_every_param_is_read_by_some_stage():
    used = set().union(*(declared_params(body) for body in dvc_stages().values()))
    every = {f"{section}.{key}" for section, keys in params_yaml().items() for key in keys}
    assert every == used


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_stage_deps_list_every_library_module_it_imports(name):
    body = dvc_stages()[name]
    declared = {d for d in body["deps"] if d.startswith(("hygie_lib/", "stages/common"))}
    imported = {str(p.relative_to(ROOT)) for p in local_imports(script_of(body))}
    assert declared == imported


def test_declared_params_exist_in_params_yaml():
    params = params_yaml()
    for body in dvc_stages().values():
        for name in declared_params(body):
            section, key = name.split(".")
            assert key in params[section], name


# ---------------------------------------------------------------- end to end, on a short synthetic speaker


def sh(*cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return r


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", "dvc", *args, cwd=cwd)


# every value the assertions below rely on is set here, so the suite does not depend on params.yaml's current values
TINY = {
    "video": {"fps": 25},
    "build_crops": {"IMG_SIZE": 32, "MOUTH_PAD": 1.3},
    "compute_mel": {"N_MELS": 80, "MEL_PER_FRAME": 4},
    "train_shape": {"av_offset": "auto", "window": 2},
    "train_sync": {"steps": 20},
    "evaluate": {"shift_seconds": 1.0, "cross_seconds": 20},
    "train": {
        "cond": "shape",
        "MEL_WIN": 16,
        "TRAIN_SPLIT": 0.8,
        "steps": 60,  # 2 validations of 30 steps (a pass over the 120 training frames in batches of 4)
        "eval_every": 30,
        "patience": 0,
        "batch_size": 4,
        "widths": [8, 16],
        "emb": 16,
        "resume": False,
    },
}


def git_commit(repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--allow-empty", "-qm", message, cwd=repo)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh git + DVC repo: this checkout's pipeline, tiny params and a 6 s synthetic speaker, after `dvc repro`."""
    from hygie_lib.synth import make_demo_data

    d = tmp_path_factory.mktemp("pipeline")
    shutil.copy(ROOT / "dvc.yaml", d / "dvc.yaml")
    params = params_yaml()
    for section, values in TINY.items():
        params[section].update(values)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for folder in ["stages", "hygie_lib"]:
        shutil.copytree(ROOT / folder, d / folder, ignore=shutil.ignore_patterns("__pycache__"))
    make_demo_data(d / "data" / "raw", seed=1, train_seconds=6, template_seconds=3, audio_seconds=3, progress=False)
    sh("git", "init", "-q", cwd=d)
    dvc("init", "-q", cwd=d)
    dvc(
        "add", "-q", "data/raw", cwd=d
    )  # versioned inputs: queued experiments run in copies that only see tracked files
    git_commit(d, "pipeline")
    dvc("repro", cwd=d)
    git_commit(d, "first run")
    return d


def test_repro_writes_every_artifact(repo):
    prep = repo / "data" / "prepared"
    crops = np.load(prep / "train" / "crops.npz")
    n = len(crops["crops"])
    assert n == 150 and crops["crops"].shape[1:] == (32, 32, 3) and crops["face"].all()
    assert np.load(prep / "template" / "crops.npz")["crops"].shape[0] == 75
    assert np.load(prep / "train" / "landmarks.npz")["landmarks"].shape == (n, 478, 3)
    table = pd.read_parquet(prep / "train" / "frames.parquet")
    assert list(table.columns) == ["frame", "time", "face", "x0", "y0", "x1", "y1"] and len(table) == n
    assert np.load(prep / "train" / "mel.npz")["mel"].shape == (80, n * 4)
    assert np.load(prep / "new_audio" / "mel.npz")["mel"].shape == (80, 75 * 4)
    assert json.loads((repo / "metrics" / "landmarks" / "train.json").read_text())["face_rate"] == 1.0
    assert not (prep / "template" / "audio.wav").exists(), "the template's sound is never prepared"
    assert (repo / "models" / "best.pt").is_file() and not list(repo.glob("models/resume/*.pt"))  # nothing to resume
    train = json.loads((repo / "metrics" / "train" / "metrics.json").read_text())
    assert train["steps"] == 60 and train["best_val_loss"] <= train["final_val_loss"]
    shape = json.loads((repo / "metrics" / "shape.json").read_text())
    assert abs(shape["av_offset"]) <= 1  # the synthetic speaker's audio is in sync with its video
    evaluation = json.loads((repo / "metrics" / "eval" / "eval.json").read_text())
    gap = 16 // 4 + abs(shape["av_offset"])  # the audio a frame hears, where the offset puts it
    assert evaluation["frames"] == 150 - 120 - gap  # the validation block after the gap
    assert evaluation["face_found"] == 1.0 and isinstance(evaluation["sync_offset"], int)
    wanted = {
        "psnr_mouth",
        "ssim_mouth",
        "lmd",
        "aperture_corr",
        "truth_corr",
        "psnr_mouth_shifted",
        "render_truth_corr",
        "render_sync_offset",
        "cross_corr",
        "cross_lag",
        "leak_corr",
        "cross_corr_shifted",
        "open_in_silence",
        "open_in_silence_real",
        "sync_confidence",
        "sync_lag",
        "sync_confidence_real",
        "render_sync_confidence",
        "render_sync_lag",
        "sharpness_ratio",
        "teeth_ratio",
        "teeth_ceiling",
    }
    assert wanted <= set(evaluation)
    assert len(pd.read_csv(repo / "metrics" / "eval" / "heldout.csv")) == evaluation["frames"]
    cross = pd.read_csv(repo / "metrics" / "eval" / "cross.csv")
    assert len(cross) == evaluation["cross_frames"] == evaluation["frames"]
    np.testing.assert_allclose(cross["template_aperture"], cross["real_aperture"][::-1], rtol=1e-6)  # played backwards
    assert {"real_open", "real_teeth", "gen_teeth", "silent"} <= set(cross.columns)
    sheet = cv2.imread(str(repo / "metrics" / "eval" / "cross_check.png"))
    assert sheet.shape[:2] == (3 * 32, 8 * 32)  # real | generated | template, 8 moments
    side = repo / "data" / "rendered" / "cross_check.mp4"
    assert probe_video(side).width == 3 * probe_video(side).height  # three square views side by side
    rendered = repo / "data" / "rendered" / "new_audio.mp4"
    assert probe_video(rendered).duration == pytest.approx(3.0, abs=0.05)
    assert "up to date" in dvc("status", cwd=repo).stdout


def test_stage_outputs_are_deterministic(repo):
    """Rerunning a stage gives byte-identical outputs, so nothing downstream reruns for nothing."""
    lock = (repo / "dvc.lock").read_text()
    dvc("repro", "-f", "-s", "detect_landmarks@template", "build_crops@template", "compute_mel@new_audio", cwd=repo)
    assert (repo / "dvc.lock").read_text() == lock


def test_changing_mouth_pad_reruns_only_what_depends_on_it(repo):
    params = repo / "params.yaml"
    text, count = re.subn(r"MOUTH_PAD: [\d.]+", "MOUTH_PAD: 1.5", params.read_text())
    assert count == 1
    params.write_text(text)
    changed = set(json.loads(dvc("status", "--json", cwd=repo).stdout))
    assert changed == {"build_crops@train", "build_crops@template"}  # no other stage reads MOUTH_PAD
    out = dvc("repro", cwd=repo).stdout
    order = re.findall(r"Running stage '([^']+)'", out)
    assert order.index("preview") < order.index("train")  # the fast path comes first: render it while training runs
    assert set(order) == {
        "build_crops@train",
        "build_crops@template",
        "train_shape",
        "build_library",
        "preview",
        "train_sync",
        "train",
        "evaluate",
        "render",
    }
    git_commit(repo, "MOUTH_PAD 1.5")


def test_experiment_reruns_training_and_metrics_diff_shows_it(repo):
    out = dvc("exp", "run", "-S", "train.lr=0.02", cwd=repo).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"train", "evaluate", "render"}, out
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=repo).stdout)
    assert diff["metrics/train/metrics.json"]["best_val_loss"]["diff"] != 0
    assert "train.lr" in dvc("params", "diff", cwd=repo).stdout


def test_queued_experiments_run(repo):
    dvc("exp", "run", "--queue", "-S", "train.lr=0.005", cwd=repo)
    dvc("exp", "run", "--queue", "-S", "train.MEL_WIN=8", cwd=repo)
    dvc("queue", "start", "-j", "1", cwd=repo)
    deadline = time.time() + 400
    while re.search(r"\b(Queued|Running)\b", status := dvc("queue", "status", cwd=repo).stdout):
        assert time.time() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    shown = dvc("exp", "show", "--csv", "--only-changed", cwd=repo).stdout
    assert "0.005" in shown and ",8," in shown, shown


def test_resume_after_a_kill_under_dvc_exp_run(repo):
    """The README's way: `dvc exp run -S train.resume=true` continues the killed run, and only that run."""
    import signal

    import torch

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "dvc", "exp", "run", "-S", "train.steps=1200", "-S", "train.lr=0.003"]
    proc = subprocess.Popen(
        cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline, states = time.time() + 300, []
    try:
        while not (states and torch.load(states[0], weights_only=True)["step"] >= 90):
            assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
            time.sleep(0.2)
            states = list(repo.glob("models/resume/[!.]*.pt"))  # not the temp file a state is written to
    finally:  # also when the wait fails: a run left going would rewrite models/ under the next tests
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # as a power cut would: no cleanup at all
            proc.wait()
    killed = torch.load(states[0], weights_only=True)
    assert killed["step"] < 1200
    dvc("exp", "run", "-S", "train.lr=0.01", "-S", "train.steps=60", cwd=repo)  # another run in between
    with pytest.raises(AssertionError, match=r"the interrupted run had other settings \(lr 0.003 -> 0.01\)"):
        dvc("exp", "run", "-S", "train.lr=0.01", "-S", "train.steps=90", "-S", "train.resume=true", cwd=repo)
    out = dvc("exp", "run", "-S", "train.lr=0.003", "-S", "train.steps=1200", "-S", "train.resume=true", cwd=repo)
    assert f"resuming after step {killed['step']}" in out.stdout + out.stderr
    logged = pd.read_csv(repo / "metrics" / "train" / "plots" / "metrics" / "val" / "loss.tsv", sep="\t")
    assert list(logged["step"]) == list(range(40))  # one run's curve, nothing of the run in between
    np.testing.assert_allclose(logged["loss"][: len(killed["history"])], [row["val/loss"] for row in killed["history"]])
    assert (repo / "models" / "best.pt").is_file() and not list(repo.glob("models/resume/*"))  # temp files too


def test_remote_cache_on_s3_push_then_pull_into_a_fresh_clone(repo, tmp_path, monkeypatch):
    """Another machine gets the same models and renders from an S3-compatible remote (a local moto server)."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="hygie")
        git_commit(repo, "what gets pushed")
        clone = tmp_path / "clone"
        sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
        for where in (repo, clone):
            dvc("remote", "add", "--local", "-f", "s3", "s3://hygie/cache", cwd=where)
            dvc("remote", "modify", "--local", "s3", "endpointurl", endpoint, cwd=where)
        dvc("push", "-r", "s3", cwd=repo)
        assert s3.list_objects_v2(Bucket="hygie", Prefix="cache/")["KeyCount"] > 10
        dvc("pull", "-r", "s3", cwd=clone)
        for path in ("models/best.pt", "models/library.npz", "data/rendered/new_audio.mp4", "data/raw/train_video.mp4"):
            assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
        assert "up to date" in dvc("status", cwd=clone).stdout  # nothing to recompute on the other machine
    finally:
        server.stop()
