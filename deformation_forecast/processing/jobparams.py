"""The ``QgsProcessingParameter*`` of an algorithm, built from its job's declarations (jobs.py).

An algorithm whose values travel as a job declares no parameter itself::

    def initAlgorithm(self, config=None):
        add_job_parameters(self, TrainJob)

so the dialog's id, label, kind, default, bounds, help and advanced placement are the job field's,
and :meth:`~deformation_forecast.jobs.Job.from_parameters` reads the values back by the same
declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .. import jobs
from ..jobs import Job, Param


def _device_default() -> int:
    from .base import default_device_index

    return default_device_index()


# defaults a person sets in the plugin's settings rather than in the job (the job's default is the
# value when that setting is not set)
SETTING_DEFAULTS: dict[str, Callable[[], Any]] = {jobs.DEVICE: _device_default}


def _number(p: Param, default: Any) -> QgsProcessingParameterDefinition:
    kind = QgsProcessingParameterNumber.Integer if p.kind == jobs.INT else QgsProcessingParameterNumber.Double
    bounds = {}
    if p.minimum is not None:
        bounds["minValue"] = p.minimum
    if p.maximum is not None:
        bounds["maxValue"] = p.maximum
    return QgsProcessingParameterNumber(
        p.name, p.label, kind, defaultValue=default, optional=p.optional, **bounds
    )


def _enum(p: Param, default: Any) -> QgsProcessingParameterDefinition:
    return QgsProcessingParameterEnum(
        p.name,
        p.label,
        list(p.labels),
        allowMultiple=p.multiple,
        defaultValue=default,
        optional=p.optional,
    )


def _table(p: Param, default: Any) -> QgsProcessingParameterDefinition:
    from .tables import table_sink

    return table_sink(str(p.name), p.label, optional=p.optional)


BUILDERS: dict[str, Callable[[Param, Any], QgsProcessingParameterDefinition]] = {
    jobs.INT: _number,
    jobs.DOUBLE: _number,
    jobs.ENUM: _enum,
    jobs.BOOL: lambda p, d: QgsProcessingParameterBoolean(
        p.name, p.label, defaultValue=d, optional=p.optional
    ),
    jobs.RASTER: lambda p, d: QgsProcessingParameterRasterLayer(p.name, p.label, optional=p.optional),
    jobs.FILE: lambda p, d: QgsProcessingParameterFile(
        p.name, p.label, QgsProcessingParameterFile.File, fileFilter=p.file_filter, optional=p.optional
    ),
    jobs.FILE_OUT: lambda p, d: QgsProcessingParameterFileDestination(
        p.name, p.label, p.file_filter, optional=p.optional, createByDefault=p.create_by_default
    ),
    jobs.RASTER_OUT: lambda p, d: QgsProcessingParameterRasterDestination(
        p.name, p.label, optional=p.optional, createByDefault=p.create_by_default
    ),
    jobs.FOLDER_OUT: lambda p, d: QgsProcessingParameterFolderDestination(
        p.name, p.label, optional=p.optional, createByDefault=p.create_by_default
    ),
    jobs.EXTENT_KIND: lambda p, d: QgsProcessingParameterExtent(p.name, p.label, optional=p.optional),
    jobs.TABLE_OUT: _table,
}


def definition(p: Param, default: Any) -> QgsProcessingParameterDefinition:
    """The Processing parameter of declaration `p` with the dialog default `default`."""
    d = BUILDERS[p.kind](p, default)
    if p.advanced:
        d.setFlags(d.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    if p.help and hasattr(d, "setHelp"):
        d.setHelp(p.help)
    return d


def job_definitions(
    job: type[Job], only: Iterable[str] | None = None
) -> list[QgsProcessingParameterDefinition]:
    """The parameters of `job`'s dialog fields in declaration order (`only`: these names)."""
    keep = set(only) if only is not None else None
    out = []
    for _, p, default in job.parameters():
        if keep is not None and p.name not in keep:
            continue
        if p.name in SETTING_DEFAULTS:
            default = SETTING_DEFAULTS[p.name]()
        out.append(definition(p, default))
    return out


def add_job_parameters(
    alg: QgsProcessingAlgorithm, job: type[Job], only: Iterable[str] | None = None
) -> None:
    """Add the parameters of `job` (see :func:`job_definitions`) to `alg`."""
    for d in job_definitions(job, only):
        alg.addParameter(d)
