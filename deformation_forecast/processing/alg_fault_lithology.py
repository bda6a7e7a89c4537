"""Fault and lithology control (paper §V-B, Fig. 16): deformation across faults and per unit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core import faults as cf
from ..core import validity
from ..core.controls import ControlOptions, analyse_controls
from ..core.errors import InputError
from ..core.metric import ground_scale
from ..core.stack import require_crs
from .base import DeformationAlgorithm
from .distance import metres_parameter
from .tables import plot_destination, read_lines, read_polygons, save_plot, table_sink, write_table

LITHOLOGY_COLUMNS = [
    ("unit", "str"),
    ("date", "date"),
    ("pixels", "int"),
    ("valid", "int"),
    ("area", "float"),
    ("mean", "float"),
    ("median", "float"),
    ("min", "float"),
    ("p5", "float"),
    ("p95", "float"),
    ("std", "float"),
    ("share_subsiding", "float"),
]
HISTORY_COLUMNS = [("unit", "str"), ("date", "date"), ("mean", "float"), ("valid", "int")]
FAULT_COLUMNS = [
    ("fault", "str"),
    ("side", "str"),
    ("bin", "int"),
    ("dist_from", "float"),
    ("dist_to", "float"),
    ("n", "int"),
    ("mean", "float"),
    ("median", "float"),
    ("std", "float"),
    ("min", "float"),
    ("max", "float"),
    ("step", "float"),
    ("step_se", "float"),
]
PLOT_SAMPLES = 5000


class FaultLithology(DeformationAlgorithm):
    NAME = "faultlithology"
    DISPLAY = "Fault and lithology control"
    GROUP = "analysis"
    TAGS = "fault,lithology,geology,zonal,step,distance"
    HELP = (
        "How faults and lithology shape the deformation: the step of the deformation across each fault "
        "and the deformation per rock unit, as the paper shows for Jinchuan (He et al. 2022, section "
        "V-B, Fig. 16).<br><b>Deformation raster</b>: a deformation stack (one band = one date; "
        "<b>Band (date) to analyse</b> picks the date, the last by default) or a single-band rate "
        "raster.<br><b>Faults</b> (lines, optional): every pixel gets the signed distance to its "
        "nearest fault (negative on the left of the line's drawing direction). Per fault and side, "
        "deformation is binned by distance (<b>Distance bin width</b>, up to <b>Maximum distance to a "
        "fault</b>, metres on the ground whatever the CRS: converted with the local scale on a "
        "geographic stack); choose a bin of two or three pixels. Pixels beyond a fault's tips are left "
        "out. The <b>step</b> is mean(right) - mean(left) in the nearest bin, with its standard error. "
        "Features sharing a name (<b>Fault name field</b>) form one fault.<br><b>Lithology</b> "
        "(polygons, optional) with its <b>Lithology unit field</b>: per unit, pixel count, area, mean, "
        "median, min, 5th and 95th percentiles, std, and the share of the unit's coherent area "
        "subsiding more than the <b>Subsidence threshold for the unit share</b> (mm: value below minus "
        "the threshold). For a stack, the mean per unit and date goes to the unit history "
        "table.<br>All layers are reprojected to the raster's CRS. Optional plot: deformation vs "
        "signed distance per fault and a box plot per unit (PNG, SVG or PDF)."
    )
    HELP_ANCHOR = "fault-and-lithology-control-faultlithology"

    INPUT = "INPUT"
    BAND = "BAND"
    FAULTS = "FAULTS"
    FAULT_FIELD = "FAULT_FIELD"
    LITHOLOGY = "LITHOLOGY"
    LITHOLOGY_FIELD = "LITHOLOGY_FIELD"
    BIN_WIDTH = "BIN_WIDTH"
    MAX_DISTANCE = "MAX_DISTANCE"
    THRESHOLD = "THRESHOLD"
    OUTPUT_LITHOLOGY = "OUTPUT_LITHOLOGY"
    OUTPUT_HISTORY = "OUTPUT_HISTORY"
    OUTPUT_FAULTS = "OUTPUT_FAULTS"
    OUTPUT_DISTANCE = "OUTPUT_DISTANCE"
    OUTPUT_PLOT = "OUTPUT_PLOT"
    FAULT_COUNT = "FAULT_COUNT"
    UNIT_COUNT = "UNIT_COUNT"
    MAX_STEP = "MAX_STEP"
    RASTER_UNITS = {OUTPUT_DISTANCE: "m"}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Deformation raster (stack or rate)"))
        self.addParameter(
            QgsProcessingParameterBand(
                self.BAND, "Band (date) to analyse; last if not set", None, self.INPUT, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.FAULTS, "Faults", [QgsProcessing.TypeVectorLine], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.FAULT_FIELD, "Fault name field", None, self.FAULTS, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.LITHOLOGY, "Lithology", [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.LITHOLOGY_FIELD, "Lithology unit field", None, self.LITHOLOGY, optional=True
            )
        )
        self.addParameter(
            metres_parameter(
                self.BIN_WIDTH,
                "Distance bin width (metres on the ground)",
                100.0,
                "Width of the distance bins on each side of a fault, in metres (converted with the "
                "local scale on a geographic stack).",
            )
        )
        self.addParameter(
            metres_parameter(
                self.MAX_DISTANCE,
                "Maximum distance to a fault (metres on the ground)",
                1000.0,
                "Pixels farther from every fault are not binned; metres, whatever the stack's CRS.",
            )
        )
        p = QgsProcessingParameterNumber(
            self.THRESHOLD,
            "Subsidence threshold for the unit share (mm)",
            QgsProcessingParameterNumber.Double,
            10.0,
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(table_sink(self.OUTPUT_LITHOLOGY, "Lithology statistics"))
        self.addParameter(table_sink(self.OUTPUT_HISTORY, "Lithology unit history (mean per date)"))
        self.addParameter(table_sink(self.OUTPUT_FAULTS, "Fault statistics by distance"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_DISTANCE,
                "Signed distance to the nearest fault",
                optional=True,
                createByDefault=True,
            )
        )
        self.addParameter(
            plot_destination(self.OUTPUT_PLOT, "Plot (deformation vs distance, box plot per unit)")
        )
        self.addOutput(QgsProcessingOutputNumber(self.FAULT_COUNT, "Faults analysed"))
        self.addOutput(QgsProcessingOutputNumber(self.UNIT_COUNT, "Lithological units analysed"))
        self.addOutput(QgsProcessingOutputNumber(self.MAX_STEP, "Largest |step| across a fault"))
        self.addOutput(
            QgsProcessingOutputNumber(self.NULL_GEOMETRY_COUNT, "Features without geometry (skipped)")
        )
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )

    def _band(self, parameters, context, info) -> int:
        """The 0-based band to analyse: BAND (1-based), the last when not set (or 0)."""
        given = parameters.get(self.BAND) not in (None, "")
        band = self.parameterAsInt(parameters, self.BAND, context) if given else 0
        if band < 0 or band > info.count:
            raise QgsProcessingException(f"{self.BAND}: the raster has {info.count} band(s), not {band}.")
        return band - 1 if band > 0 else info.count - 1

    def _layers(self, parameters, context, raster_crs, feedback) -> _Layers:
        """Read and check the fault and lithology layers before anything is written."""
        faults_src = self.parameterAsSource(parameters, self.FAULTS, context)
        litho_src = self.parameterAsSource(parameters, self.LITHOLOGY, context)
        if faults_src is None and litho_src is None:
            raise QgsProcessingException(
                f"Give a {self.FAULTS} line layer, a {self.LITHOLOGY} polygon layer, or both."
            )
        layers = _Layers(faults_given=faults_src is not None)
        if faults_src is not None:
            fault_field = self.parameterAsString(parameters, self.FAULT_FIELD, context)
            layers.fault_names, layers.fault_geoms = read_lines(
                faults_src, self.FAULTS, raster_crs, context, fault_field, feedback
            )
        if litho_src is not None:
            field = self.parameterAsString(parameters, self.LITHOLOGY_FIELD, context)
            if not field:
                raise QgsProcessingException(
                    f"{self.LITHOLOGY_FIELD}: name the field of {self.LITHOLOGY} that holds the unit."
                )
            layers.geoms, layers.units = read_polygons(
                litho_src, self.LITHOLOGY, raster_crs, context, field, feedback
            )
        return layers

    def _options(
        self, parameters, context, info, layers: _Layers, outputs: tuple[str, str]
    ) -> tuple[ControlOptions, str]:
        """The analysis options from the dialog (distances in metres on any CRS) and the note on
        the scale to log ('' when none)."""
        bin_width = self.parameterAsDouble(parameters, self.BIN_WIDTH, context)
        max_dist = self.parameterAsDouble(parameters, self.MAX_DISTANCE, context)
        if layers.faults_given and not (bin_width > 0 and max_dist >= bin_width):
            raise InputError(
                f"{self.BIN_WIDTH} must be positive and {self.MAX_DISTANCE} at least one bin "
                f"({bin_width:g}, {max_dist:g})."
            )
        want_history = bool(layers.geoms) and info.count > 1 and all(info.dates)
        want_history = want_history and parameters.get(self.OUTPUT_HISTORY) is not None
        dist_path, plot_path = outputs  # resolved once: a temporary output gets a new name each time
        scale = ground_scale(info.crs, info.bounds)
        note = (
            scale.note + " Distances to the faults are in metres."
            if scale.note and layers.fault_geoms
            else ""
        )
        options = ControlOptions(
            bin_width=bin_width,
            max_distance=max_dist,
            threshold=self.parameterAsDouble(parameters, self.THRESHOLD, context),
            distance_path=dist_path or None,
            distance_units="m",
            history=want_history,
            plot_samples=PLOT_SAMPLES if plot_path else 0,
            unit_values=bool(plot_path),
            scale=(scale.kx, scale.ky),
        )
        return options, note

    def compute(self, parameters, context, feedback):
        run = self.run_context(feedback)
        info = self.stack_info(parameters, self.INPUT, context, require_dates=False)
        require_crs(info)
        raster_crs = self.parameterAsRasterLayer(parameters, self.INPUT, context).crs()
        band = self._band(parameters, context, info)
        date = info.dates[band]
        dist_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_DISTANCE, context)
        plot_path = self.parameterAsFileOutput(parameters, self.OUTPUT_PLOT, context)
        self.check_output_not_input(dist_path, info.path)
        self.check_output_not_input(plot_path, info.path)
        layers = self._layers(parameters, context, raster_crs, feedback)
        options, note = self._options(parameters, context, info, layers, (dist_path, plot_path))
        label = date.isoformat() if date else f"band {band + 1}"
        feedback.pushInfo(f"Analysing band {band + 1} ({label}) of {info.path}.")
        run.check_cancelled()
        feedback.setProgressText(
            "Distances to the faults and statistics per unit"
            if layers.fault_geoms and layers.geoms
            else ("Distances to the faults" if layers.fault_geoms else "Statistics per lithological unit")
        )
        if note:
            feedback.pushInfo(note)
        res, names = analyse_controls(
            info.path,
            info,
            band,
            layers.fault_geoms,
            layers.geoms,
            layers.units,
            options,
            run.stage(0.0, 0.9),
        )
        run.check_cancelled()
        results = self._write(
            parameters, context, _rows(res, names, layers, info, date, options.bin_width), feedback
        )
        results[self.FAULT_COUNT] = len(res.profiles)
        results[self.UNIT_COUNT] = len(names)
        results[self.NULL_GEOMETRY_COUNT] = validity.dropped_count()
        results[self.MAX_STEP] = max((abs(p.step) for p in res.profiles if np.isfinite(p.step)), default=None)
        results[self.OUTPUT_DISTANCE] = dist_path if layers.fault_geoms and dist_path else None
        results[self.OUTPUT_PLOT] = None
        if plot_path:
            save_plot(cf.plot_controls, plot_path, *_plot_args(res, layers), info.units)
            results[self.OUTPUT_PLOT] = plot_path
        run.progress(1.0)
        return results

    def _write(self, parameters, context, rows: _Rows, feedback) -> dict:
        """The three tables (None where not made); logs each fault's step."""
        for line in rows.log:
            feedback.pushInfo(line)
        return {
            self.OUTPUT_FAULTS: (
                write_table(self, parameters, self.OUTPUT_FAULTS, context, FAULT_COLUMNS, rows.faults)
                if rows.fault_table
                else None
            ),
            self.OUTPUT_LITHOLOGY: (
                write_table(self, parameters, self.OUTPUT_LITHOLOGY, context, LITHOLOGY_COLUMNS, rows.units)
                if rows.unit_table
                else None
            ),
            self.OUTPUT_HISTORY: (
                write_table(self, parameters, self.OUTPUT_HISTORY, context, HISTORY_COLUMNS, rows.history)
                if rows.history
                else None
            ),
        }


@dataclass
class _Layers:
    """The fault lines and lithology polygons in the raster's CRS."""

    faults_given: bool = False
    fault_names: list = field(default_factory=list)
    fault_geoms: list = field(default_factory=list)
    geoms: list = field(default_factory=list)
    units: list = field(default_factory=list)


@dataclass
class _Rows:
    """The rows of the three tables and the log lines on the faults."""

    faults: list[dict]
    units: list[dict]
    history: list[dict]
    log: list[str]
    fault_table: bool
    unit_table: bool


def _rows(res, names: list[str], layers: _Layers, info, date, bin_width: float) -> _Rows:
    fault_rows: list[dict] = []
    log = []
    for name, prof in zip(layers.fault_names, res.profiles, strict=True):
        for r in prof.rows:
            fault_rows.append(dict(fault=name, step=prof.step, step_se=prof.step_se, **r))
        log.append(
            f"Fault {name}: step {prof.step:.2f} ± {prof.step_se:.2f} {info.units} "
            f"(right - left, nearest {bin_width:g} on each side; n = {prof.n_left}/{prof.n_right})"
        )
    history_rows: list[dict] = []
    if res.history_means is not None:
        means, valid = res.history_means, res.history_valid
        for u, n in enumerate(names):
            for t, d in enumerate(info.dates):
                history_rows.append(dict(unit=n, date=d, mean=means[t, u], valid=valid[t, u]))
    return _Rows(
        faults=fault_rows,
        units=[dict(date=date, **r) for r in res.unit_rows],
        history=history_rows,
        log=log,
        fault_table=bool(layers.fault_geoms),
        unit_table=bool(layers.geoms),
    )


def _plot_args(res, layers: _Layers) -> tuple:
    """(fault samples named, profiles, unit boxes) for core.faults.plot_controls."""
    samples = [(layers.fault_names[f], dist, vals) for f, dist, vals in res.fault_samples]
    return samples, res.profiles, res.unit_boxes
