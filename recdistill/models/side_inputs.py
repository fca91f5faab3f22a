"""Side information a model reads besides interactions, declared by the model, wired by the task.

Kinds (the value the task hands over):
    item_text   (n_items, text_dim) float tensor: pretrained text embeddings, row i = internal item i
    user_table  pandas DataFrame, row i = internal user i (age, gender, occupation where present)
    item_table  pandas DataFrame, row i = internal item i (title, year, genres where present)
"""

from __future__ import annotations

from typing import Any

from recdistill.errors import ConfigError

SIDE_INPUT_KINDS = ("item_text", "user_table", "item_table")


class SideInputs:
    """Mixin of every model: `side_inputs()` says which kinds its config makes it read, and whether
    each is required (a required kind the dataset lacks is a ConfigError raised by the task);
    `set_side_input(kind, value)` installs one. A model reading nothing keeps the defaults."""

    def side_inputs(self) -> dict[str, bool]:
        """Kind -> required, for the side information this model (as configured) reads."""
        return {}

    def set_side_input(self, kind: str, value: Any) -> None:
        """Install side information of `kind` (one of `side_inputs()`)."""
        raise ConfigError(f"{type(self).__name__} reads no side information of kind {kind!r}; "
                          f"it reads {sorted(self.side_inputs()) or 'none'}")
