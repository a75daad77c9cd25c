"""Stage train: learn the person's mouth from the prepared training clip -> models/best.pt (and models/resume.pt)."""

import argparse

from common import load_params, run

from hygie_lib.train import TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("crops", help="crops.npz of the training clip")
    ap.add_argument("mel", help="mel.npz of the training clip")
    ap.add_argument("models_dir", help="gets best.pt (lowest validation loss) and resume.pt (the run, to resume it)")
    ap.add_argument("live_dir", help="dvclive folder: per-epoch metrics, plots and preview images")
    args = ap.parse_args()
    p = load_params(
        "train.MEL_WIN",
        "train.TRAIN_SPLIT",
        "train.epochs",
        "train.batch_size",
        "train.lr",
        "train.widths",
        "train.emb",
        "train.reference",
        "train.w_in",
        "train.w_temporal",
        "train.w_ssim",
        "train.augment",
        "train.seed",
        "train.resume",
    )
    from dvclive import Live

    cfg = TrainConfig(
        mel_win=p.MEL_WIN,
        epochs=p.epochs,
        batch_size=p.batch_size,
        lr=p.lr,
        w_in=p.w_in,
        w_temporal=p.w_temporal,
        w_ssim=p.w_ssim,
        augment=p.augment,
        train_split=p.TRAIN_SPLIT,
        seed=p.seed,
    )
    with Live(args.live_dir, dvcyaml=None, save_dvc_exp=False) as live:  # a resume re-logs its earlier epochs
        summary = fit(
            args.crops,
            args.mel,
            model_kwargs={"widths": p.widths, "emb": p.emb, "reference": p.reference},
            cfg=cfg,
            models_dir=args.models_dir,
            live=live,
            resume=p.resume,
        )
    print(f"best validation loss {summary['best_val_loss']:.4f}")


if __name__ == "__main__":
    run(main)
