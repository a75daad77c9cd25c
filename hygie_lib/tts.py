"""Text to speech, offline: `speak(text)` -> mono float32 audio. Engines are pluggable (ENGINES); the default,
eSpeak NG, ships inside the `espeakng-loader` wheel with its voices, so it needs no download.

(Checked for a more natural default: the piper-tts, piper-plus, kokoro and kokoro-onnx wheels carry no English
voice; each downloads its model at first use, which this project must not do.)
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from functools import cache

import numpy as np

from hygie_lib.io import HygieError

_SYNCHRONOUS, _UTF8, _POS_CHARACTER, _RATE = 2, 1, 1, 1  # espeak_AUDIO_OUTPUT, espeakCHARS_UTF8, position, espeakRATE
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LOCK = threading.Lock()  # eSpeak NG holds one global synthesizer
MAX_CHARS = 5000  # longest text spoken at once (about 5 minutes of speech)


@cache
def _espeak() -> tuple[ctypes.CDLL, int]:
    """The eSpeak NG library, initialised once (synchronous synthesis into a callback), and its sample rate."""
    try:
        import espeakng_loader
    except ImportError as e:
        raise HygieError("text to speech needs espeakng-loader: `pip install espeakng-loader`.") from e
    lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint]
    lib.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    data = espeakng_loader.get_data_path()
    sr = lib.espeak_Initialize(_SYNCHRONOUS, 0, str(data).rsplit("/", 1)[0].encode(), 0)
    if sr <= 0:
        raise HygieError(f"eSpeak NG did not start (data in {data}); reinstall espeakng-loader.")
    return lib, sr


def espeak(text: str, voice: str = "en-us", rate: int = 165) -> tuple[np.ndarray, int]:
    """eSpeak NG: (mono float32 audio, its sample rate) of `text` in `voice` at `rate` words per minute."""
    lib, sr = _espeak()
    chunks: list[np.ndarray] = []

    def collect(wav, n, events) -> int:
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, (n,)).astype(np.float32) / 32768.0)
        return 0  # go on

    callback = _CALLBACK(collect)  # kept alive until synthesis returns
    raw = text.encode()
    with _LOCK:
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise HygieError(
                f"eSpeak NG has no voice {voice!r}: try en-us, en-gb, fr, de, es, zh (`espeak-ng --voices`)."
            )
        lib.espeak_SetParameter(_RATE, int(rate), 0)
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _UTF8, None, None) != 0:
            raise HygieError("eSpeak NG failed to speak the text.")
        lib.espeak_Synchronize()
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), sr


ENGINES: dict[str, Callable[..., tuple[np.ndarray, int]]] = {"espeak": espeak}  # name -> (text, voice) -> (audio, sr)


def speak(text: str, *, engine: str = "espeak", voice: str = "en-us") -> tuple[np.ndarray, int]:
    """(Mono float32 audio, sample rate) of `text`; a HygieError for empty or overlong text or an unknown engine."""
    text = " ".join(text.split())
    if not text:
        raise HygieError("the text to speak is empty.")
    if len(text) > MAX_CHARS:
        raise HygieError(f"the text is {len(text)} characters long; at most {MAX_CHARS} are spoken at once. Split it.")
    if engine not in ENGINES:
        raise HygieError(f"text to speech: no engine {engine!r}; one of {', '.join(ENGINES)}.")
    y, sr = ENGINES[engine](text, voice)
    if not len(y):
        raise HygieError(f"{engine} made no sound for {text[:40]!r}.")
    return y, sr
