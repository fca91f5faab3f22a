"""Biased matrix factorisation, the classic rating baseline: r = mu + b_u + b_i + p_u . q_i.

It is trained on squared error as in the literature. To serve the rating-class contract it also
exposes class logits: a discretised Gaussian around its prediction, -(k - r)^2 / (2 s^2), whose
scale s is fitted by a cross-entropy term that cannot move the prediction itself (it sees a
detached r). Its argmax is therefore the class nearest to the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recdistill.models.base import DataShape, RatingModel, RatingOutput
from recdistill.utils.config_checks import bounded


@dataclass
class BiasedMFConfig:
    """Size and regularisation of biased MF."""

    name: str = "biased_mf"
    dim: int = bounded(32, ge=1)  # latent factors per user and item
    reg: float = bounded(0.02, ge=0)  # L2 weight on the factors and biases of the batch's users and items


class BiasedMF(RatingModel):
    """Biased matrix factorisation (see module docstring)."""

    Config = BiasedMFConfig

    def __init__(self, config: BiasedMFConfig, shape: DataShape) -> None:
        super().__init__()
        self.config = config
        self.shape = shape
        self.hidden_dim = config.dim
        self.user_factors = nn.Embedding(shape.n_users, config.dim)
        self.item_factors = nn.Embedding(shape.n_items, config.dim)
        self.user_bias = nn.Embedding(shape.n_users, 1)
        self.item_bias = nn.Embedding(shape.n_items, 1)
        self.global_mean = nn.Parameter(torch.tensor(float(shape.rating_mean)))
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.register_buffer("class_values", shape.class_values())
        nn.init.normal_(self.user_factors.weight, std=0.05)
        nn.init.normal_(self.item_factors.weight, std=0.05)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def _class_logits(self, rating: torch.Tensor) -> torch.Tensor:
        distance = self.class_values - rating.unsqueeze(-1)  # (B, C)
        return -(distance**2) / (2 * torch.exp(2 * self.log_scale))

    def forward(self, batch: dict[str, torch.Tensor]) -> RatingOutput:
        user_vectors = self.user_factors(batch["user"])  # (B, D)
        item_vectors = self.item_factors(batch["item"])  # (B, D)
        interaction = user_vectors * item_vectors  # (B, D)
        raw = (
            self.global_mean
            + self.user_bias(batch["user"]).squeeze(-1)
            + self.item_bias(batch["item"]).squeeze(-1)
            + interaction.sum(-1)
        )  # (B,)
        # clamping would stop the squared-error gradient at the scale's ends, so only at inference
        rating = raw if self.training else raw.clamp(float(self.class_values[0]), float(self.class_values[-1]))
        return RatingOutput(logits=self._class_logits(raw), rating=rating, hidden=interaction)

    def loss(self, batch: dict[str, torch.Tensor], output: RatingOutput) -> dict[str, torch.Tensor]:
        user, item = batch["user"], batch["item"]
        mse = F.mse_loss(output.rating, batch["rating"])
        penalty = (
            self.user_factors(user).pow(2).sum(-1)
            + self.item_factors(item).pow(2).sum(-1)
            + self.user_bias(user).squeeze(-1).pow(2)
            + self.item_bias(item).squeeze(-1).pow(2)
        ).mean()
        calibration = F.cross_entropy(self._class_logits(output.rating.detach()), batch["label"])
        return {"mse": mse, "l2": self.config.reg * penalty, "calibration": calibration}
