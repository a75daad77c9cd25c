"""Stage train: learn the person's mouth from the prepared training clip -> models/best.pt."""

import argparse

from common import load_params, run

from hygie_lib.train import TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("crops", help="crops.npz of the training clip")
    ap.add_argument("mel", help="mel.npz of the training clip")
    ap.add_argument("shapes", help="shape.npz from train_shape: mouth shapes, audio -> shape, A/V offset")
    ap.add_argument("sync", help="sync.pt from train_sync: the sync expert, a loss when train.w_sync is on")
    ap.add_argument("models_dir", help="gets best.pt (lowest validation loss); resume/ holds an unfinished run")
    ap.add_argument("live_dir", help="dvclive folder: per-epoch metrics, plots and preview images")
    args = ap.parse_args()
    p = load_params("train")
    from dvclive import Live

    cfg = TrainConfig(
        mel_win=p.MEL_WIN,
        epochs=p.epochs,
        batch_size=p.batch_size,
        lr=p.lr,
        w_in=p.w_in,
        w_temporal=p.w_temporal,
        w_ssim=p.w_ssim,
        w_sync=p.w_sync,
        w_gan=p.w_gan,
        gan_warmup=p.gan_warmup,
        augment=p.augment,
        train_split=p.TRAIN_SPLIT,
        seed=p.seed,
    )
    model = {"widths": p.widths, "emb": p.emb, "reference": p.reference, "cond": p.cond}
    with Live(args.live_dir, dvcyaml=None, save_dvc_exp=False) as live:  # a resume re-logs its earlier epochs
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
