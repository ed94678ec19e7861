"""Runs: ``folder`` (a run folder and every file in it) and ``record`` (what a fit writes there
when it ends), both below the training layer that writes them; ``run`` (a run's definition and its
settings' signature) and ``launch`` (what every executor does around a fit), above it. Executors,
studies and the tuner reach a fit only through this package."""
