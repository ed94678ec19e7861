"""A progress bar over outer epochs (each BMIL epoch is many short steps; per-step bars flicker)."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ProgressBar
from tqdm import tqdm


class EpochProgressBar(ProgressBar):
    """One line: epochs done of max_epochs, policy loss and the latest evaluation results."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._bar: tqdm | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        if self._enabled and trainer.is_global_zero:
            self._bar = tqdm(total=trainer.max_epochs, initial=trainer.current_epoch,
                             desc=f"fit {pl_module.domain.name}", unit="epoch",
                             file=sys.stdout, dynamic_ncols=True, mininterval=0)  # epochs are slow enough to draw each

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Metrics are read here, after *all* epoch-end hooks (evaluation callbacks may run after
        # this bar's own epoch-end hook) have logged.
        if self._bar is not None:
            metrics = self.get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            self._bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in metrics.items()})

    def on_train_end(self, trainer, pl_module) -> None:
        if self._bar is not None:
            self.on_train_epoch_start(trainer, pl_module)
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.on_train_end(trainer, pl_module)  # close now, not at interpreter exit
