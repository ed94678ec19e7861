"""Where a tune's trials live and report: its Optuna journal file, served to fits on other machines
through Optuna's gRPC proxy on a Ray cluster, and the pruner every fit applies to its own trial.
Below the training layer: a fit's ``TrialReport`` callback opens the storage, not the tune's driver."""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Optional

from bmil.errors import BMILError

JOURNAL = "optuna.journal"


def mend_journal(path: Path, repair: bool = True) -> None:
    """A tune's journal made whole before the driver uses it. Optuna appends one JSON line a record;
    a crash mid-write leaves a last line cut short, after which every later record would be appended
    and the journal unreadable for good. That line is cut off (kept beside the journal, in
    ``<journal>.torn``; its record is lost, and the tune redoes what it recorded); a damaged line
    anywhere else is one error naming the file and the line. ``repair`` False (a plan, which writes
    nothing): the damage is found, the torn line left (Optuna's reader passes over it)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if repair and end < len(data):  # the last line has no end: written in part
        with open(path.with_name(path.name + ".torn"), "ab") as kept:
            kept.write(data[end:] + b"\n")
        os.truncate(path, end)
        print(f"{path}: its last line was cut short (a crash mid-write); cut off, kept in {path.name}.torn", flush=True)
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            json.loads(line)
        except ValueError as e:
            raise BMILError(f"{path} is damaged at line {number} ({e}): not a record Optuna wrote. Restore the "
                            "journal from a copy, or delete that line (the trial it recorded is then redone or "
                            "lost), or give another --out.") from None


def open_storage(address):
    """The tune's Optuna storage: its journal file, or ``grpc://HOST:PORT``, the driver's journal served
    to fits on other machines (``serve_storage``)."""
    from optuna.storages import GrpcStorageProxy, JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if str(address).startswith("grpc://"):
        host, port = str(address).removeprefix("grpc://").rsplit(":", 1)
        return GrpcStorageProxy(host=host, port=int(port))
    return JournalStorage(JournalFileBackend(str(address)))


@contextlib.contextmanager
def serve_storage(storage, journal: Path, executor: str):
    """Where a trial's fit reports to (``--trial.storage``): on this machine, the journal file; on a
    Ray cluster, which shares no folder, Optuna's gRPC proxy of the journal, served from here for the
    tune's duration (on a free port; the nodes must reach this machine)."""
    if executor != "ray":
        yield str(journal)
        return
    from ray.util import get_node_ip_address

    with grpc_proxy(storage) as port:
        yield f"grpc://{get_node_ip_address()}:{port}"


@contextlib.contextmanager
def grpc_proxy(storage, host: str = "0.0.0.0") -> Iterator[int]:
    """Optuna's gRPC proxy of ``storage``, served on ``host`` for the block; its port. Every request
    reaches the one ``storage`` object of this process, the driver's: the driver alone creates and
    ends trials (Optuna's journal must see a trial created and told by one process, optuna#6084),
    and a fit's requests only add its checks' values to its own trial and read the study."""
    import grpc
    from optuna.storages._grpc.auto_generated.api_pb2_grpc import add_StorageServiceServicer_to_server
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    # Optuna's proxy service in a server of our own (its public run_grpc_proxy_server never returns),
    # on port 0: the system binds a free port, with no race; SO_REUSEPORT off, so none shares it.
    threads = ThreadPoolExecutor(10)
    server = grpc.server(threads, options=[("grpc.so_reuseport", 0)])
    add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)
        threads.shutdown()


PRUNERS = ("median", "halving")


def make_pruner(max_epochs: Optional[int], kind: str = "median", first_epoch: int = 0):
    """``median``: Optuna's median pruning once 4 trials have finished, never at a check in the first
    quarter of training (Optuna prunes from step ``n_warmup_steps`` on; the steps are epochs).
    ``halving``: successive halving, the multi-fidelity one: at the checks of epochs ``first_epoch``,
    3 x ``first_epoch``, 9 x ... (the same epochs for every trial of a tune), a trial goes on only
    if it is in the best third of the trials that reached that epoch (the best, while fewer than 3
    have)."""
    import optuna

    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, first_epoch), reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=warmup_epochs(max_epochs) + 1)


def warmup_epochs(max_epochs: Optional[int]) -> int:
    """The epochs at whose checks the median pruner prunes no trial: a trial need not validate there."""
    return max(0, (max_epochs or 0) // 4)
