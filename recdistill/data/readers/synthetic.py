"""Seeded synthetic ratings with real structure (latent tastes, popularity skew, time order):
the generator lives in `recdistill.data.synthetic`; this reader hands it the `dataset.synthetic` block."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recdistill.data.config import DatasetConfig
from recdistill.data.readers.base import DatasetReader
from recdistill.data.synthetic import SyntheticConfig, generate_synthetic
from recdistill.data.tables import RecData

log = logging.getLogger(__name__)


class Synthetic(DatasetReader):
    """Generated data: the same config and seed give identical tables; nothing to download."""

    @dataclass
    class Config(DatasetConfig):
        """Size and shape of the generated data."""

        name: str = "synthetic"
        synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # the generator's knobs

    def data_key(self, options: dict[str, Any], seed: int) -> dict[str, Any]:
        """Generated data: its options and the seed."""
        return {**super().data_key(options, seed), "seed": int(seed)}

    def read(self, cfg: Config, seed: int) -> RecData:
        """Generate the dataset for this seed."""
        log.info("Generating synthetic data (seed %d)", seed)
        return generate_synthetic(cfg.synthetic, seed)

    def fixtures(self, directory: Path) -> dict[str, Config]:
        """A few users and items (nothing is written)."""
        small = SyntheticConfig(n_users=12, n_items=9, interactions_per_user=5, n_factors=2)
        return {"small": self.Config(cache_dir=str(directory), synthetic=small)}
