"""One contact sheet from several cross checks of the same clip: the real row once, then each run's generated row.

Each input is a cross check sheet written by benchmarks/real_speakers.py (rows: real | generated | template).
Usage: python benchmarks/contact_sheet.py OUT.png "label=path/cross_check_generate.png" "label=..." ...
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np


def labelled(row: np.ndarray, label: str, width: int = 150) -> np.ndarray:
    """The row with its label written in a white margin on the left."""
    margin = np.full((row.shape[0], width, 3), 255, np.uint8)
    cv2.putText(margin, label, (6, row.shape[0] // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.hstack([margin, row])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", help="label=sheet.png")
    args = ap.parse_args()
    rows = []
    for i, run in enumerate(args.runs):
        label, path = run.split("=", 1)
        sheet = cv2.imread(path)
        if sheet is None:
            raise SystemExit(f"{path}: not an image")
        h = sheet.shape[0] // 3
        if i == 0:
            rows.append(labelled(sheet[:h], "real"))
        rows.append(labelled(sheet[h : 2 * h], label))
    cv2.imwrite(args.out, np.vstack(rows))
    print(f"{args.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
