"""SVD++ (Koren, KDD 2008) from Surprise 1.1.5 on a recdistill run's saved rating split: test MAE
and RMSE when trained on the training split, and when refitted on train + valid.

The classic baseline of the main job (`recdistill train +experiment=movielens_kd`). Both systems
see the same inputs: the split recdistill saved (its run folder's `split.json` says where), the
same users, items and ratings; SVD++ reads no text. Surprise predicts test ratings from what it
was fitted on (its implicit feedback is the fitted users' rated items), so the refit reads train +
valid, as recdistill's test targets do. Predictions are clipped to the rating scale (Surprise's
default).

Surprise builds from source against its own numpy, so keep it in its own environment:

    python -m venv /tmp/surprise-venv
    /tmp/surprise-venv/bin/pip install scikit-surprise==1.1.5 pandas pyarrow
    /tmp/surprise-venv/bin/python scripts/surprise_baseline.py outputs/movielens_kd/<run> --seeds 0 1 2

Prints one JSON object: per seed and mean, for `train` and `train+valid` fits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def load_split(run_dir: Path) -> dict:
    """{train, valid, test} DataFrames of the split saved with the run (split.json -> parquet)."""
    import pandas as pd

    saved = json.loads((run_dir / "split.json").read_text())
    folder = Path(saved["path"])
    missing = [name for name in ("train", "valid", "test") if not (folder / f"{name}.parquet").exists()]
    if missing:
        raise SystemExit(f"{run_dir / 'split.json'} points to {folder}, which lacks {missing}: run the job "
                         "again to rebuild its split cache")
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in ("train", "valid", "test")}


def fit_and_test(fit_frame, test_frame, seed: int, scale: tuple[float, float]) -> dict:
    """SVD++ with Surprise's default hyperparameters fitted on `fit_frame`; test MAE, RMSE, seconds."""
    from surprise import Dataset, Reader, SVDpp, accuracy

    reader = Reader(rating_scale=scale)
    trainset = Dataset.load_from_df(fit_frame[["user", "item", "rating"]], reader).build_full_trainset()
    started = time.perf_counter()
    model = SVDpp(random_state=seed)
    model.fit(trainset)
    testset = list(test_frame[["user", "item", "rating"]].itertuples(index=False, name=None))
    predictions = model.test(testset)
    return {"mae": accuracy.mae(predictions, verbose=False), "rmse": accuracy.rmse(predictions, verbose=False),
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a rating run folder (holds split.json)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="SVD++ random states")
    args = parser.parse_args()

    import pandas as pd
    import surprise

    split = load_split(args.run_dir)
    ratings = pd.concat(split.values())["rating"]
    scale = (float(ratings.min()), float(ratings.max()))
    fits = {"train": split["train"], "train+valid": pd.concat([split["train"], split["valid"]], ignore_index=True)}
    report: dict = {"surprise": surprise.__version__, "model": "SVDpp (defaults)", "run_dir": str(args.run_dir),
                    "sizes": {name: len(frame) for name, frame in split.items()}, "rating_scale": scale}
    for name, frame in fits.items():
        runs = {seed: fit_and_test(frame, split["test"], seed, scale) for seed in args.seeds}
        report[name] = {"per_seed": runs, **{metric: statistics.fmean(r[metric] for r in runs.values())
                                             for metric in ("mae", "rmse", "seconds")}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
