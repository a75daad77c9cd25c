"""Stage train: learn the person's mouth from the prepared training clip -> models/best.pt.

On several GPUs (or CPU processes): `torchrun --nproc_per_node N stages/train.py ...` (the stage's cmd, python
replaced), each process training on its share of every batch."""

import argparse
import os
from contextlib import nullcontext

from common import load_params, run

from hygie_lib.device import PRECISIONS
from hygie_lib.io import check_choice
from hygie_lib.model import model_config
from hygie_lib.train import NoLive, TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("crops", help="crops.npz of the training clip")
    ap.add_argument("mel", help="mel.npz of the training clip")
    ap.add_argument("shapes", help="shape.npz from train_shape: mouth shapes, audio -> shape, A/V offset")
    ap.add_argument("sync", help="sync.pt from train_sync: the sync expert, a loss when train.w_sync is on")
    ap.add_argument("models_dir", help="gets best.pt (lowest validation loss); resume/ holds an unfinished run")
    ap.add_argument("live_dir", help="dvclive folder: metrics, plots and preview images of each validation")
    args = ap.parse_args()
    p = load_params("train")
    check_choice("params.yaml train.precision", p.precision, PRECISIONS)
    from dvclive import Live

    cfg = TrainConfig.of(vars(p))
    model = model_config(vars(p))
    first = os.environ.get("RANK", "0") == "0"  # under torchrun, the first process alone logs
    logger = Live(args.live_dir, dvcyaml=None, save_dvc_exp=False) if first else nullcontext(NoLive())
    with logger as live:  # a resume re-logs its earlier validations
        summary = fit(
            args.crops,
            args.mel,
            args.shapes,
            args.sync,
            model_kwargs=model,
            cfg=cfg,
            models_dir=args.models_dir,
            live=live,
            resume=p.resume,
        )
    print(f"best validation loss {summary['best_val_loss']:.4f}")


if __name__ == "__main__":
    run(main)
