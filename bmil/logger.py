"""The run logger: TensorBoard, with a version folder that is claimed, not guessed."""

from __future__ import annotations

import os

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class TensorBoardRun(TensorBoardLogger):
    """TensorBoardLogger whose next ``version_<k>`` is claimed by creating its folder (an atomic
    mkdir): Lightning's own choice, the highest existing version plus one, lets two runs started at
    the same instant share a folder, one run's checkpoint and config overwriting the other's."""

    claimed = False  # this process made the run folder (a resumed run's folder is not claimed)

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        if rank_zero_only.rank != 0:  # other DDP ranks use rank 0's folder; they claim nothing
            return version
        os.makedirs(self.root_dir, exist_ok=True)
        while True:
            try:
                os.mkdir(os.path.join(self.root_dir, f"version_{version}"))
                self.claimed = True
                return version
            except FileExistsError:
                version += 1

    def next_log_dir(self) -> str:
        """The folder this logger would write to, without claiming it (``bmil check``)."""
        if self._version is not None:
            return self.log_dir
        return os.path.join(self.root_dir, f"version_{TensorBoardLogger._get_next_version(self)}")
