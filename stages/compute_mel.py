"""Stage compute_mel: log-mel spectrogram of a WAV, MEL_PER_FRAME columns per video frame, with its settings."""

import argparse

from common import load_params, run

from hygie_lib.audio import Mel, read_wav
from hygie_lib.io import HygieError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("wav", help="mono WAV from extract_audio")
    ap.add_argument("out", help="output mel.npz: mel [N_MELS, frames * MEL_PER_FRAME] and the settings")
    args = ap.parse_args()
    p = load_params("video.fps", "compute_mel.N_MELS", "compute_mel.MEL_PER_FRAME", "compute_mel.N_FFT")
    y, sr = read_wav(args.wav)
    try:
        mel = Mel.of(y, sr, fps=p.fps, n_mels=p.N_MELS, per_frame=p.MEL_PER_FRAME, n_fft=p.N_FFT)
    except HygieError as e:
        raise HygieError(f"{args.wav}: {e} Use a longer recording.") from e
    mel.save(args.out)
    print(f"{args.out}: {mel.n_frames} frames x {p.MEL_PER_FRAME} columns of {p.N_MELS} mels")


if __name__ == "__main__":
    run(main)
