"""Files recdistill reads back (checkpoints, training state, knowledge, embedding caches) are
loaded without unpickling code: a crafted file that would run code is refused, naming the file."""

import os

import pytest
import torch

from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.errors import DataError
from recdistill.models.checkpoint import load_model
from recdistill.utils.safe_load import load_plain


class MakesMarker:
    """Unpickling this object creates the folder `marker`: proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def crafted(path, marker):
    torch.save({"config": {"name": "bpr_mf"}, "state_dict": {}, "extra": {"payload": MakesMarker(marker)},
                "teacher_key": "k", "tensors": {}, "meta": {}}, path)
    return path


LOADERS = {
    "load_plain": lambda path: load_plain(path, "test file"),
    "model checkpoint": load_model,
    "teacher knowledge": TeacherKnowledge.load,
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_file_carrying_a_pickled_object_is_refused_and_never_run(tmp_path, loader):
    marker = tmp_path / "code_ran"
    path = crafted(tmp_path / "evil.pt", marker)
    with pytest.raises(DataError, match=r"evil\.pt .*refuses to load it"):
        LOADERS[loader](path)
    assert not marker.exists(), "unpickling ran code"


def test_the_training_loop_refuses_a_crafted_resume_state(tmp_path):
    from omegaconf import OmegaConf

    from recdistill.distill.objective import build_objective
    from recdistill.models.rating_transformer import RatingTransformer, RatingTransformerConfig
    from recdistill.training import loop
    from recdistill.training.config import LoopConfig
    from tests.helpers import small_data

    train, windows, shape = small_data()
    marker = tmp_path / "code_ran"
    (tmp_path / "state").mkdir()
    crafted(tmp_path / "state" / "last.pt", marker)
    model = RatingTransformer(RatingTransformerConfig(dim=8), shape)
    objective = build_objective(OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}}))
    with pytest.raises(DataError, match=r"last\.pt \(training state\)"):
        loop.train(model, objective, train, lambda m: {"mae": 1.0}, LoopConfig(epochs=1), torch.device("cpu"),
                   seed=0, checkpoint_dir=tmp_path / "state", label="test")
    assert not marker.exists()


def test_plain_contents_still_load(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.arange(3), "history": [{"epoch": 1, "loss": 0.5}], "name": "x", "pair": (1, 2.0)},
               path)
    loaded = load_plain(path, "test file")
    assert torch.equal(loaded["weights"], torch.arange(3)) and loaded["history"][0]["loss"] == 0.5
