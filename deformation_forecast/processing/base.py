"""What every algorithm of the provider shares: groups, icon, help, error translation."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from .. import jobs
from ..core import budget, outputs, validity
from ..core.dates import check_observed
from ..core.errors import Cancelled, InputError
from ..core.run import Run
from ..core.stack import StackInfo, check_values, read_info
from ..settings_keys import MEMORY_MB as MEMORY_SETTINGS_KEY  # the plugin setting; 0 = not set


def memory_setting_mb() -> float:
    """The "Memory budget (MB)" plugin setting, 0 when not set (or not a positive number)."""
    from qgis.core import QgsSettings

    try:
        value = float(QgsSettings().value(MEMORY_SETTINGS_KEY, 0) or 0)
    except (TypeError, ValueError):
        return 0.0
    return value if value > 0 else 0.0


class _FeedbackHandler(logging.Handler):
    """Forwards the core's warnings (logger ``deformation_forecast``) to the run's feedback."""

    def __init__(self, feedback: QgsProcessingFeedback):
        super().__init__(logging.WARNING)
        self.feedback = feedback

    def emit(self, record: logging.LogRecord) -> None:
        self.feedback.pushWarning(record.getMessage())


@contextlib.contextmanager
def core_warnings_to(feedback: QgsProcessingFeedback) -> Iterator[None]:
    """While the block runs, warnings the core logs (a slow file layout...) reach `feedback`."""
    logger = logging.getLogger("deformation_forecast")
    handler = _FeedbackHandler(feedback)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def configured_budget_mb() -> tuple[float, str]:
    """The memory budget of a Processing run in MB and where it comes from: the plugin setting
    when set, else $DEFORMATION_FORECAST_MEMORY_MB, else the default (core.budget)."""
    setting = memory_setting_mb()
    if setting:
        return budget.budget_mb(setting), "plugin setting"
    import os

    value = budget.budget_mb(None)  # raises InputError on a malformed variable
    if os.environ.get(budget.ENV, "").strip() not in ("", "0"):
        return value, budget.ENV
    return value, "default"


# the Toolbox sorts groups by name: the numbers keep them in the order of the work
GROUPS = {
    "stack": "1. Stack preparation",
    "analysis": "2. Analysis",
    "validation": "3. Validation",
    "forecasting": "4. Forecasting",
}
ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons", "icon.svg")


# the same setting, the same label and placement in every algorithm: name -> (label, advanced)
SHARED_PARAMETERS = {
    "TIME_STEP": ("Input length (dates per window)", False),
    "TEST_COUNT": ("Test dates (the last ones)", False),
    "EPOCHS": ("Epochs (at most)", False),
    "VALIDATION_FRACTION": ("Validation fraction (of the dates before the test dates)", True),
    "SEED": ("Random seed (CPU runs are reproducible)", True),
    "MAX_SECONDS": ("Training time budget per network (seconds, 0 = none)", True),
    "DEVICE": ("Device", False),
}


def first_sentence(html_text: str, limit: int = 200) -> str:
    """The first sentence of `html_text` as plain text, without asides in parentheses, at most
    `limit` characters: the Toolbox tooltip."""
    import html
    import re

    text = re.split(r"<(?:br|p|/p|li|ul|ol|h\d)\b[^>]*>", html_text, maxsplit=1, flags=re.I)[0] or html_text
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    text = re.sub(r"\s+", " ", re.sub(r"\s\([^()]*\)", "", text)).strip()
    m = re.search(r"(?<!Fig\.)(?<!al\.)(?<!e\.g\.)(?<!i\.e\.)(?<=[.!?:])\s+(?=[A-Z])", text)
    text = text[: m.start()] if m else text
    text = text.rstrip(":") + ("" if text.endswith((".", "!", "?")) else ".")
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def plugin_homepage() -> str:
    """The homepage in metadata.txt (the README)."""
    import configparser

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "metadata.txt"), encoding="utf-8")
    return meta.get("general", "homepage", fallback="").rstrip("/")


class DeformationAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set NAME, DISPLAY, GROUP, HELP and implement ``compute``.

    ``processAlgorithm`` turns the core's InputError into a QgsProcessingException with the same
    message, so a bad input never surfaces as a Python traceback.
    """

    NAME = ""
    DISPLAY = ""
    GROUP = "analysis"
    HELP = ""
    SHORT = ""  # one line for the Toolbox tooltip (default: the first sentence of HELP)
    HELP_ANCHOR = "algorithms"  # README section of the dialog's Help button
    TAGS = ""
    # output: values read as nodata (core.validity.masked_count); an algorithm that declares it
    # gets it filled by processAlgorithm
    MASKED_VALUES = "MASKED_VALUES"
    NULL_GEOMETRY_COUNT = "NULL_GEOMETRY_COUNT"  # output: features without geometry, dropped
    # units of raster outputs, for the style applied when the Toolbox loads them (default mm)
    RASTER_UNITS: dict[str, str] = {}
    # raster outputs that also go into the Temporal Controller (one layer per date) when the
    # boolean parameter ANIMATE is true
    ANIMATED_OUTPUTS: tuple[str, ...] = ()
    ANIMATE = "ANIMATE"  # the name of that boolean parameter, where an algorithm declares it
    # the memory budget of the current run in MB (core.budget), set by processAlgorithm; core calls
    # get it inside the Run of `self.run_context(feedback)`
    memory_mb: float | None = None

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.DISPLAY

    def group(self) -> str:
        return GROUPS[self.GROUP]

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP

    def tags(self) -> list[str]:
        return [t.strip() for t in ("insar,deformation," + self.TAGS).split(",") if t.strip()]

    def shortHelpString(self) -> str:  # noqa: N802
        return self.HELP

    def addParameter(self, definition, createOutput=True) -> bool:  # noqa: N802, N803 - QGIS's names
        """Settings several algorithms share get the same label and the same place (basic or
        advanced) in every dialog (SHARED_PARAMETERS)."""
        shared = SHARED_PARAMETERS.get(definition.name())
        if shared is not None:
            label, advanced = shared
            definition.setDescription(label)
            flags = definition.flags() & ~QgsProcessingParameterDefinition.FlagAdvanced
            if advanced:
                flags |= QgsProcessingParameterDefinition.FlagAdvanced
            definition.setFlags(flags)
        return super().addParameter(definition, createOutput)

    def shortDescription(self) -> str:  # noqa: N802
        """The Toolbox tooltip: SHORT, else the first sentence of the help without markup."""
        return self.SHORT or first_sentence(self.HELP)

    def helpUrl(self) -> str:  # noqa: N802
        """The README's section on the algorithms (the dialog's Help button)."""
        return f"{plugin_homepage()}#{self.HELP_ANCHOR}"

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def processAlgorithm(  # noqa: N802
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        self._refuse_overwriting_inputs(parameters, context)
        validity.take_warnings()  # forget what an earlier run found
        before = self._output_files(parameters)
        try:
            self.memory_mb, origin = configured_budget_mb()
            feedback.pushInfo(f"Memory budget: {self.memory_mb:g} MB ({origin}).")
            # GDAL's block cache sized from the budget for every read and write of this run
            with budget.gdal_env(self.memory_mb), core_warnings_to(feedback):
                results = self.compute(parameters, context, feedback)
                if self.outputDefinition(self.MASKED_VALUES) is not None:  # declared: always given
                    results.setdefault(self.MASKED_VALUES, validity.masked_count())
        except BaseException as e:
            # a later output failing (or cancel) leaves no earlier output of the run behind
            self._remove_new_outputs(before)
            if isinstance(e, Cancelled):
                raise QgsProcessingException("Cancelled; nothing was written.") from e
            if isinstance(e, InputError):
                raise QgsProcessingException(str(e)) from e
            if isinstance(e, OSError) and e.errno in outputs.DISK_ERRNOS:
                raise QgsProcessingException(str(outputs.write_error(e.filename or "", e))) from e
            if isinstance(e, QgsProcessingException):
                disk = outputs.disk_problem(list(before))  # QGIS's "Could not create layer ..."
                if disk and disk not in str(e):
                    raise QgsProcessingException(f"{disk} ({str(e)[:200]})") from e
            unreadable = outputs.unreadable_raster(e)
            if unreadable:
                raise QgsProcessingException(unreadable) from e
            raise
        finally:
            for w in validity.take_warnings():
                feedback.pushWarning(w)
        self._style_outputs(parameters, context, results)
        return results

    def _output_files(self, parameters) -> dict[str, tuple | None]:
        """The files named by the destination parameters (not temporary outputs) and their state
        (size, mtime, inode; None when absent) before the run."""
        from qgis.core import QgsProcessingDestinationParameter

        files: dict[str, tuple | None] = {}
        for p in self.destinationParameterDefinitions():
            if not isinstance(p, QgsProcessingDestinationParameter):
                continue
            value = parameters.get(p.name())
            sink = getattr(value, "sink", None)
            path = str(sink.staticValue() if sink is not None else (value or ""))
            path = path.split("|")[0]
            if path.startswith("ogr:"):
                path = path.split("dbname=")[-1].split(" ")[0].strip("'\"")
            if not path or "TEMPORARY_OUTPUT" in path or path.startswith("memory:"):
                continue
            path = os.path.abspath(path)
            files[path] = _stat(path)
        return files

    @staticmethod
    def _remove_new_outputs(before: dict[str, tuple | None]) -> None:
        """Remove the output files this run created or replaced (their state changed)."""
        import contextlib

        for path, state in before.items():
            if os.path.isfile(path) and _stat(path) != state:
                for p in (path, path + ".aux.xml"):
                    with contextlib.suppress(OSError):
                        os.unlink(p)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Refuse a folder given where a file is expected, naming the parameter."""
        from qgis.core import QgsProcessingParameterFile

        for p in self.parameterDefinitions():
            value = parameters.get(p.name())
            if not isinstance(value, str) or not value or not os.path.isdir(value.split("|")[0]):
                continue
            if (
                isinstance(p, QgsProcessingParameterFile)
                and p.behavior() == QgsProcessingParameterFile.Folder
            ):
                continue
            if p.isDestination():
                continue
            return False, (
                f"{p.name()}: {value} is a folder; give a file ({p.description()}), "
                "not the folder that holds it."
            )
        broken = _unreadable_raster_parameter(self.parameterDefinitions(), parameters)
        if broken:
            return False, broken
        return super().checkParameterValues(parameters, context)

    def _refuse_overwriting_inputs(self, parameters, context) -> None:
        """No file output may be the file of an input layer or file (it would be destroyed)."""
        from qgis.core import (
            QgsProcessingDestinationParameter,
            QgsProcessingParameterFeatureSource,
            QgsProcessingParameterFile,
            QgsProcessingParameterMapLayer,
            QgsProcessingParameterMultipleLayers,
            QgsProcessingParameterRasterLayer,
            QgsProcessingParameterVectorLayer,
        )

        inputs: dict[str, str] = {}
        for p in self.parameterDefinitions():
            name = p.name()
            if parameters.get(name) in (None, ""):
                continue
            layers = []
            if isinstance(p, QgsProcessingParameterRasterLayer | QgsProcessingParameterMapLayer):
                layers = [self.parameterAsLayer(parameters, name, context)]
            elif isinstance(p, QgsProcessingParameterVectorLayer):
                layers = [self.parameterAsVectorLayer(parameters, name, context)]
            elif isinstance(p, QgsProcessingParameterMultipleLayers):
                layers = self.parameterAsLayerList(parameters, name, context)
            elif isinstance(p, QgsProcessingParameterFeatureSource):
                layers = [self.parameterAsVectorLayer(parameters, name, context)]
            elif isinstance(p, QgsProcessingParameterFile):
                inputs[os.path.abspath(self.parameterAsFile(parameters, name, context))] = name
            for lyr in layers:
                if lyr is not None:
                    inputs[os.path.abspath(lyr.source().split("|")[0])] = name
        for p in self.destinationParameterDefinitions():
            if not isinstance(p, QgsProcessingDestinationParameter):
                continue
            value = parameters.get(p.name())
            if value in (None, "") or "TEMPORARY_OUTPUT" in str(value):
                continue
            sink = getattr(value, "sink", None)
            path = sink.staticValue() if sink is not None else str(value)
            path = os.path.abspath(str(path).split("|")[0])
            if path in inputs:
                raise QgsProcessingException(
                    f"{p.name()}: {path} is the file of input {inputs[path]}; writing it would destroy "
                    "the input. Choose another output file."
                )

    def _style_outputs(self, parameters, context, results: dict[str, Any]) -> None:
        from qgis.core import QgsProcessingParameterRasterDestination

        from .postprocess import style_on_load

        animate = self.parameterDefinition(self.ANIMATE) is not None and self.parameterAsBoolean(
            parameters, self.ANIMATE, context
        )
        for p in self.parameterDefinitions():
            if isinstance(p, QgsProcessingParameterRasterDestination) and results.get(p.name()):
                style_on_load(
                    context,
                    str(results[p.name()]),
                    self.RASTER_UNITS.get(p.name(), "mm"),
                    temporal=animate and p.name() in self.ANIMATED_OUTPUTS,
                )

    def compute(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        raise NotImplementedError

    # -- helpers shared by the adapters ---------------------------------------------------
    def run_context(self, feedback: QgsProcessingFeedback | None) -> Run:
        """The core's Run for this run: the memory budget, progress to `feedback` (0..1 shown as
        0..100 %; pass a QgsProcessingMultiStepFeedback, or use ``Run.stage``, for several stages),
        messages to its log, and its cancel button (core.errors.Cancelled, reported as
        "Cancelled; nothing was written.")."""
        if feedback is None:
            return Run(budget_mb=self.memory_mb)

        def report(fraction: float | None, message: str | None) -> None:
            if message:
                feedback.pushInfo(message)
            if fraction is not None:
                feedback.setProgress(100.0 * fraction)

        return Run(budget_mb=self.memory_mb, report=report, cancelled=feedback.isCanceled)

    def raster_path(self, parameters, name: str, context) -> str:
        """File path of a raster layer parameter; it must be a GDAL file."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: no raster layer given.")
        if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{name}: layer {layer.name()!r} is not a GDAL raster file; save it as GeoTIFF first."
            )
        path = layer.source().split("|")[0]
        if not os.path.exists(path):
            raise QgsProcessingException(
                f"{name}: the file of layer {layer.name()!r} ({path}) is not on disk."
            )
        return path

    def stack_info(
        self,
        parameters,
        name: str,
        context,
        require_dates: bool = True,
        check_data: bool = True,
        observed: bool = False,
    ) -> StackInfo:
        """Describe the stack given in parameter `name`; names the parameter in any error. With
        `check_data`, refuse an all-NaN stack, infinities and implausible magnitudes; with
        `observed` (inputs that must be observations: training, validation), dates after today."""
        path = self.raster_path(parameters, name, context)
        try:
            info = read_info(path, require_dates=require_dates)
            if observed:
                check_observed(info.dates, f"{name} ({os.path.basename(path)})")
        except InputError as e:
            raise QgsProcessingException(f"{name}: {e}") from e
        if check_data:
            try:
                check_values(info, name)  # also refuses undeclared fill values (core.validity)
            except InputError as e:
                raise QgsProcessingException(str(e)) from e
        return info

    @staticmethod
    def check_output_not_input(out_path: str, *inputs: str) -> None:
        for p in inputs:
            if p and out_path and os.path.abspath(out_path) == os.path.abspath(p):
                raise QgsProcessingException(
                    f"The output {out_path} would overwrite an input; choose another file name."
                )

    @staticmethod
    def check_canceled(feedback: QgsProcessingFeedback | None) -> None:
        if feedback is not None and feedback.isCanceled():
            raise QgsProcessingException("Cancelled; nothing was written.")


def _stat(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


DEVICES = list(jobs.DEVICES)  # the DEVICE choices, declared once (jobs.py)


def default_device_index() -> int:
    """The DEVICE default: the plugin setting (settings_keys.PAGE), else auto."""
    from qgis.core import QgsSettings

    from ..settings_keys import DEVICE

    choice = QgsSettings().value(DEVICE, "auto", type=str)
    return DEVICES.index(choice) if choice in DEVICES else 0


class WorkerAlgorithm(DeformationAlgorithm):
    """An algorithm that runs TensorFlow in the worker process: the Toolbox explains a missing
    TensorFlow Python instead of failing (canExecute), and DEVICE uses these choices."""

    DEVICES = DEVICES

    def canExecute(self):  # noqa: N802
        from ..worker import find_python

        python, why = find_python()
        return (python is not None, why)


def _unreadable_raster_parameter(definitions, parameters) -> str:
    """The message for a raster layer parameter given as the path of a file that GDAL cannot open
    (a truncated or corrupt GeoTIFF), '' when there is none. QGIS >= 3.40 refuses such a layer with
    "Could not load source layer ... not found" before the algorithm runs: say what is wrong."""
    import rasterio
    from qgis.core import QgsProcessingParameterRasterLayer

    for p in definitions:
        value = parameters.get(p.name())
        if not isinstance(p, QgsProcessingParameterRasterLayer) or not isinstance(value, str | os.PathLike):
            continue
        path = str(value).split("|")[0]
        if not os.path.isfile(path):
            continue
        try:
            with rasterio.open(path):
                pass
        except rasterio.errors.RasterioIOError as e:
            return (
                f"{p.name()}: the raster {os.path.basename(path)!r} cannot be read ({str(e)[:200]}): the "
                "file is truncated or corrupt. Copy or download it again, or rebuild it; nothing was written."
            )
    return ""
