"""Stage detect_landmarks: FaceMesh landmarks for every frame at video.fps, plus a per-frame table and face rate."""

import argparse
import json
from pathlib import Path

from common import load_params, run

from hygie_lib.io import atomic_path, save_npz
from hygie_lib.landmarks import check_face_rate, detect_video, frame_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("out_dir", help="gets landmarks.npz and frames.parquet")
    ap.add_argument("metrics", help="json with the face detection rate")
    args = ap.parse_args()
    p = load_params("video.fps", "detect_landmarks.min_face_rate", "detect_landmarks.min_confidence")
    landmarks = detect_video(args.video, p.fps, min_confidence=p.min_confidence)
    rate = check_face_rate(landmarks, args.video, p.min_face_rate)
    out = Path(args.out_dir)
    save_npz(out / "landmarks.npz", landmarks=landmarks, fps=p.fps)
    with atomic_path(out / "frames.parquet") as tmp:
        frame_table(landmarks, p.fps).to_parquet(tmp, index=False)
    with atomic_path(args.metrics) as tmp:
        tmp.write_text(json.dumps({"frames": len(landmarks), "face_rate": round(rate, 4)}, indent=2) + "\n")
    print(f"{args.video}: face found in {rate:.1%} of {len(landmarks)} frames")


if __name__ == "__main__":
    run(main)
