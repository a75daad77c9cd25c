"""Is a cross_corr gap between two renders signal or noise? A moving-block bootstrap over the cross check's frames.

Reads cross-check tables (evaluate's metrics/eval/cross.csv, or benchmarks/real_speakers.py's cross_*.csv) of the same
held-out block rendered two or more ways; the first is the reference. Prints each table's cross_corr (generated vs
real aperture, lag 0) and the 95% interval of its gap to the reference's (`evaluate.corr_gap_interval`): an interval
across 0 says the two renders follow the real mouth equally well, as far as these frames can tell.
Usage: python benchmarks/sync_gap.py REFERENCE.csv OTHER.csv [...] [--block 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hygie_lib.evaluate import corr_gap_interval
from hygie_lib.metrics import lag_correlation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", type=Path, help="cross-check CSVs; the first is the reference")
    ap.add_argument("--block", type=int, default=10, help="frames per resampled run (default 10: 0.4 s at 25 fps)")
    args = ap.parse_args()
    if len(args.tables) < 2:
        ap.error("give the reference table and at least one other")
    tables = [pd.read_csv(t) for t in args.tables]
    ref = tables[0]
    real, base = ref.real_aperture.to_numpy(), ref.gen_aperture.to_numpy()
    print(f"{args.tables[0]}: cross_corr {lag_correlation(base, real, 0):.4f} (reference, {len(ref)} frames)")
    for path, t in zip(args.tables[1:], tables[1:]):
        if not np.array_equal(t.frame.to_numpy(), ref.frame.to_numpy()):
            sys.exit(f"{path}: not the same held-out frames as {args.tables[0]}; cross-check both on one recording.")
        gen = t.gen_aperture.to_numpy()
        lo, hi = corr_gap_interval(gen, base, real, block=args.block)
        corr = lag_correlation(gen, real, 0)
        print(f"{path}: cross_corr {corr:.4f}, gap to the reference 95% interval [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
