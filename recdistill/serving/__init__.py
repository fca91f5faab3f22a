"""Serving a trained run: ONNX export and top-K recommendation, for known and for new users.

    from recdistill.serving import Recommender, export_run

    folder = export_run("outputs/movielens_rank_kd/2024-01-01_12-00-00", role="student_kd")
    recommender = Recommender.open(folder)              # onnxruntime; Recommender.open(RUN_DIR) reads the checkpoint
    recommender.recommend(user="42", k=10).to_dict()    # {"user": "42", "k": 10, "recommendations": [...]}
    recommender.recommend(history=["1", "50"], k=10)    # a user the model never saw
    recommender.recommend_users(["42", "7"], k=10)      # a batch: DataFrame user, rank, item, title, score

Modules, one job each:
    run_source    open a run folder: metrics.json, a role's checkpoint (model cache or run folder), its data
    catalog       raw id maps, titles, each known user's history (train + valid + test), the tie rule
    scorers       full-catalogue scores from the PyTorch checkpoint, and the graphs the export writes
    onnx_scorer   the same scores from an export folder with onnxruntime
    fold_in       a new user's vector for ID models: one ridge regression on the history's item vectors
    topk          top-K lists under the tie rule with seen items excluded (shared by every path)
    onnx_check    the check of every export: onnxruntime vs PyTorch, scores and top-10 lists
    manifest      manifest.json of an export folder
    export        `export_run`: write, check and move an export folder into place
    recommend     `Recommender` and `Recommendations`
    present       rich table / JSON / CSV output and batch files of `recdistill recommend`
    http          `recdistill serve`: the HTTP API (FastAPI + uvicorn, the `serve` extra; imported on demand)

Errors: unknown raw ids raise `catalog.UnknownIdError` (a ConfigError; `.kind` and `.ids` name
them), a failed export check `onnx_check.ExportCheckError`, a missing checkpoint a DataError;
an HTTP layer can map them to 4xx answers.
"""

from recdistill.serving.catalog import UnknownIdError
from recdistill.serving.export import export_run
from recdistill.serving.recommend import Recommendations, Recommender

__all__ = ["Recommendations", "Recommender", "UnknownIdError", "export_run"]
