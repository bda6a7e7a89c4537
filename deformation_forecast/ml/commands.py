"""Worker commands of the forecasting part: ``train``, ``train-cluster`` (several machines,
ml/cluster.py) and ``forecast`` (see ml/__main__.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def train(params: dict[str, Any]) -> dict[str, Any]:
    from .train import run_train

    return run_train(params)


def train_cluster(params: dict[str, Any]) -> dict[str, Any]:
    from .cluster import run

    return run(params)


def forecast(params: dict[str, Any]) -> dict[str, Any]:
    from .forecast import run_forecast

    return run_forecast(params)


COMMANDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "train": train,
    "train-cluster": train_cluster,
    "forecast": forecast,
}
