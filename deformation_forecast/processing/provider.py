"""The Processing provider ``deformation_forecast``: finds every ``alg_*`` module's algorithms."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .base import ICON_PATH, DeformationAlgorithm


def algorithm_classes() -> list[type[DeformationAlgorithm]]:
    """All concrete algorithm classes of the ``alg_*`` modules, sorted by id."""
    from .. import processing as pkg

    found: dict[str, type[DeformationAlgorithm]] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("alg_"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, DeformationAlgorithm) and cls.NAME and cls.__module__ == mod.__name__:
                found[cls.NAME] = cls
    return [found[k] for k in sorted(found)]


class DeformationForecastProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "deformation_forecast"

    def name(self) -> str:
        return "Deformation forecast"

    def longName(self) -> str:  # noqa: N802
        return "Deformation forecast (InSAR time series, CNN-PhLSTM)"

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def versionInfo(self) -> str:  # noqa: N802
        """The plugin's version and the TensorFlow worker's Python and TensorFlow versions (as
        qgis-processing-r gives R's): shown in the algorithm dialog's log of every run."""
        from ..worker import worker_versions

        return f"{plugin_version()}; worker: {worker_versions()}"

    def loadAlgorithms(self) -> None:  # noqa: N802
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
        for model in shipped_models():
            self.addAlgorithm(model)


def plugin_version() -> str:
    """The version in metadata.txt."""
    import configparser

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "metadata.txt"), encoding="utf-8")
    return meta.get("general", "version", fallback="?")


MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models")


def shipped_models() -> list:
    """The graphical models shipped in ``models/`` (stack -> train -> forecast), as algorithms of
    this provider: they show in the Toolbox next to the algorithms they chain."""
    from qgis.core import QgsProcessingModelAlgorithm

    out = []
    for name in sorted(os.listdir(MODELS_DIR)) if os.path.isdir(MODELS_DIR) else []:
        if not name.endswith(".model3"):
            continue
        model = QgsProcessingModelAlgorithm()
        path = os.path.join(MODELS_DIR, name)
        if model.fromFile(path) and model.name():
            model.setSourceFilePath(path)
            out.append(model)
    return out
