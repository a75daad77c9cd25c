"""Text to speech: eSpeak NG speaks offline from its wheel, `hygie say` renders the spoken text, bad text is refused."""

from __future__ import annotations

import numpy as np
import pytest

from hygie_lib.audio import frame_energy, log_mel
from hygie_lib.cli import main as hygie
from hygie_lib.io import HygieError
from hygie_lib.tts import speak
from hygie_lib.video import iter_frames


def test_espeak_speaks_words_with_pauses_between_sentences():
    y, sr = speak("Hello there. How are you today?")
    assert sr == 22050 and 1.0 < len(y) / sr < 5.0 and 0.1 < np.abs(y).max() <= 1.0
    energy = frame_energy(log_mel(y, sr, fps=25, n_mels=40, per_frame=4, n_fft=1024), 4)
    loud = energy > energy.max() - 30 * np.log(10) / 10
    assert 0.5 < loud.mean() < 0.98  # speech, with quieter gaps (between words, at the full stop)
    longer, _ = speak("Hello there. How are you today? I am fine, thank you, and I hope you are too.")
    assert len(longer) > 1.8 * len(y)  # the length follows the text
    french, _ = speak("Bonjour tout le monde.", voice="fr")
    assert len(french) > 0.3 * sr


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("   ", {}, "empty"),
        ("a" * 6000, {}, "at most 5000"),
        ("hello", {"voice": "xx-nothing"}, "no voice 'xx-nothing'"),
        ("hello", {"engine": "nope"}, "no engine 'nope'"),
    ],
)
def test_bad_text_voice_or_engine_is_refused(text, kwargs, message):
    with pytest.raises(HygieError, match=message):
        speak(text, **kwargs)


def test_say_renders_the_spoken_text_with_its_sound(demo, tmp_path, capsys):
    out = tmp_path / "said.mp4"
    args = ["say", "Hello, I am the demo speaker.", "--model", str(demo["model"]), "--backend", "torch"]
    assert hygie([*args, "--template", str(demo["template_video"]), "--out", str(out), "--blend", "feather"]) == 0
    spoken = float(capsys.readouterr().out.split("): ")[1].split(" s of speech")[0])
    n = sum(1 for _ in iter_frames(out, 25))
    assert 1.0 < spoken and abs(n - spoken * 25) <= 2  # one frame per 40 ms of speech
    assert hygie([*args, "--voice", "xx", "--template", str(demo["template_video"]), "--out", str(tmp_path / "x.mp4")])
    assert "no voice" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
