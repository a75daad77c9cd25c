"""Stage extract_audio: any audio or video file -> 16-bit mono WAV at extract_audio.SR."""

import argparse

from common import load_params, run

from hygie_lib.audio import load_audio, write_wav


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", help="input media file (mp4, mov, mkv, webm, wav, mp3, m4a, flac...)")
    ap.add_argument("out", help="output .wav")
    args = ap.parse_args()
    p = load_params("extract_audio.SR")
    y = load_audio(args.src, p.SR)
    write_wav(args.out, y, p.SR)
    print(f"{args.out}: {len(y) / p.SR:.2f} s of mono audio at {p.SR} Hz")


if __name__ == "__main__":
    run(main)
