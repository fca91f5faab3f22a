"""Time RecBole 1.2.1's SASRec on ML-100K under recdistill's `movielens_rank_recbole` protocol.

Run it with a separate environment that has RecBole (it pins old libraries, so keep it apart):

    python -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0 recbole==1.2.1 'numpy<2' 'pandas<2'
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /tmp/recbole-venv/bin/python scripts/recbole_sasrec.py --epochs 1

Protocol (the same as `recdistill train +experiment=movielens_rank_recbole`): every ML-100K
interaction, leave-one-out by time (RecBole's `LS` split with time order), full ranking, history
not masked (RecBole's sequential evaluation), SASRec 2 x 64, cross-entropy over all items,
sequences of at most 50 items. Prints seconds per training epoch, training targets per epoch
(RecBole trains on every prefix of each training sequence: one target per sample) and targets/s,
then, with --evaluate, test HR@10 and NDCG@10.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="training epochs to time")
    parser.add_argument("--evaluate", action="store_true", help="also report test HR@10 and NDCG@10")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(args.threads)
    config = Config(model="SASRec", dataset="ml-100k", config_dict={
        "data_path": str(Path(recbole.__file__).parent / "dataset_example"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "train_neg_sample_args": None, "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": 50,
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "device": "cpu", "use_gpu": False,
        "epochs": args.epochs, "train_batch_size": 2048, "eval_batch_size": 4096, "seed": 2020,
        "show_progress": False, "save_dataset": False, "save_dataloaders": False,
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    targets = len(train_data.dataset)  # one augmented prefix sample = one next-item target
    seconds = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        trainer._train_epoch(train_data, epoch, show_progress=False)
        seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch}: {seconds[-1]:.1f} s for {targets} targets ({targets / seconds[-1]:.0f} targets/s)")
    figures = {"seconds_per_epoch": seconds, "targets_per_epoch": targets,
               "targets_per_s": targets * len(seconds) / sum(seconds) if seconds else None, "threads": args.threads}
    if args.evaluate:
        figures["test"] = {k: float(v) for k, v in trainer.evaluate(test_data, load_best_model=False).items()}
    print(json.dumps(figures, indent=2))
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
