"""Fault and lithology control (paper §V-B, Fig. 16): deformation across faults and per unit."""

from __future__ import annotations

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
from ..core.controls import analyse_controls
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
    RASTER_UNITS = {"OUTPUT_DISTANCE": "m"}
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

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Deformation raster (stack or rate)"))
        self.addParameter(
            QgsProcessingParameterBand(
                "BAND", "Band (date) to analyse; last if not set", None, "INPUT", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "FAULTS", "Faults", [QgsProcessing.TypeVectorLine], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField("FAULT_FIELD", "Fault name field", None, "FAULTS", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "LITHOLOGY", "Lithology", [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "LITHOLOGY_FIELD", "Lithology unit field", None, "LITHOLOGY", optional=True
            )
        )
        self.addParameter(
            metres_parameter(
                "BIN_WIDTH",
                "Distance bin width (metres on the ground)",
                100.0,
                "Width of the distance bins on each side of a fault, in metres (converted with the "
                "local scale on a geographic stack).",
            )
        )
        self.addParameter(
            metres_parameter(
                "MAX_DISTANCE",
                "Maximum distance to a fault (metres on the ground)",
                1000.0,
                "Pixels farther from every fault are not binned; metres, whatever the stack's CRS.",
            )
        )
        p = QgsProcessingParameterNumber(
            "THRESHOLD",
            "Subsidence threshold for the unit share (mm)",
            QgsProcessingParameterNumber.Double,
            10.0,
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(table_sink("OUTPUT_LITHOLOGY", "Lithology statistics"))
        self.addParameter(table_sink("OUTPUT_HISTORY", "Lithology unit history (mean per date)"))
        self.addParameter(table_sink("OUTPUT_FAULTS", "Fault statistics by distance"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_DISTANCE", "Signed distance to the nearest fault", optional=True, createByDefault=True
            )
        )
        self.addParameter(
            plot_destination("OUTPUT_PLOT", "Plot (deformation vs distance, box plot per unit)")
        )
        self.addOutput(QgsProcessingOutputNumber("FAULT_COUNT", "Faults analysed"))
        self.addOutput(QgsProcessingOutputNumber("UNIT_COUNT", "Lithological units analysed"))
        self.addOutput(QgsProcessingOutputNumber("MAX_STEP", "Largest |step| across a fault"))

    def compute(self, parameters, context, feedback):
        info = self.stack_info(parameters, "INPUT", context, require_dates=False)
        require_crs(info)
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        raster_crs = layer.crs()
        band = (
            self.parameterAsInt(parameters, "BAND", context)
            if parameters.get("BAND") not in (None, "")
            else 0
        )
        if band < 0 or band > info.count:
            raise QgsProcessingException(f"BAND: the raster has {info.count} band(s), not {band}.")
        band = band - 1 if band > 0 else info.count - 1
        date = info.dates[band]
        faults_src = self.parameterAsSource(parameters, "FAULTS", context)
        litho_src = self.parameterAsSource(parameters, "LITHOLOGY", context)
        if faults_src is None and litho_src is None:
            raise QgsProcessingException("Give a FAULTS line layer, a LITHOLOGY polygon layer, or both.")
        bin_width = self.parameterAsDouble(parameters, "BIN_WIDTH", context)
        max_dist = self.parameterAsDouble(parameters, "MAX_DISTANCE", context)
        threshold = self.parameterAsDouble(parameters, "THRESHOLD", context)
        dist_path = self.parameterAsOutputLayer(parameters, "OUTPUT_DISTANCE", context)
        plot_path = self.parameterAsFileOutput(parameters, "OUTPUT_PLOT", context)
        self.check_output_not_input(dist_path, info.path)
        self.check_output_not_input(plot_path, info.path)

        # -- read and check every input before anything is written
        fault_names, fault_geoms = [], []
        if faults_src is not None:
            fault_field = self.parameterAsString(parameters, "FAULT_FIELD", context)
            fault_names, fault_geoms = read_lines(
                faults_src, "FAULTS", raster_crs, context, fault_field, feedback
            )
        geoms, units = [], []
        if litho_src is not None:
            field = self.parameterAsString(parameters, "LITHOLOGY_FIELD", context)
            if not field:
                raise QgsProcessingException(
                    "LITHOLOGY_FIELD: name the field of LITHOLOGY that holds the unit."
                )
            geoms, units = read_polygons(litho_src, "LITHOLOGY", raster_crs, context, field, feedback)
        if faults_src is not None and not (bin_width > 0 and max_dist >= bin_width):
            raise InputError(
                f"BIN_WIDTH must be positive and MAX_DISTANCE at least one bin ({bin_width:g}, {max_dist:g})."
            )
        label = date.isoformat() if date else f"band {band + 1}"
        feedback.pushInfo(f"Analysing band {band + 1} ({label}) of {info.path}.")
        self.check_canceled(feedback)
        want_history = bool(geoms) and info.count > 1 and all(info.dates)
        want_history = want_history and parameters.get("OUTPUT_HISTORY") is not None
        feedback.setProgressText(
            "Distances to the faults and statistics per unit"
            if fault_geoms and geoms
            else ("Distances to the faults" if fault_geoms else "Statistics per lithological unit")
        )

        def progress(f):
            self.check_canceled(feedback)
            feedback.setProgress(90 * f)

        scale = ground_scale(info.crs, info.bounds)
        if scale.note and fault_geoms:
            feedback.pushInfo(scale.note + " Distances to the faults are in metres.")
        res, names = analyse_controls(
            info.path,
            info,
            band,
            faults=fault_geoms,
            unit_geometries=geoms,
            units=units,
            bin_width=bin_width,
            max_distance=max_dist,
            threshold=threshold,
            distance_path=dist_path or None,
            distance_units="m",
            history=want_history,
            plot_samples=PLOT_SAMPLES if plot_path else 0,
            unit_values=bool(plot_path),
            progress=progress,
            mb=self.memory_mb,
            scale=(scale.kx, scale.ky),
        )
        profiles = res.profiles
        fault_rows: list[dict] = []
        fault_samples = []
        for name, prof in zip(fault_names, profiles, strict=True):
            for r in prof.rows:
                fault_rows.append(dict(fault=name, step=prof.step, step_se=prof.step_se, **r))
            feedback.pushInfo(
                f"Fault {name}: step {prof.step:.2f} ± {prof.step_se:.2f} {info.units} "
                f"(right - left, nearest {bin_width:g} on each side; n = {prof.n_left}/{prof.n_right})"
            )
        for f, dist, vals in res.fault_samples:
            fault_samples.append((fault_names[f], dist, vals))
        litho_rows = [dict(date=date, **r) for r in res.unit_rows]
        history_rows: list[dict] = []
        if res.history_means is not None:
            means, valid = res.history_means, res.history_valid
            for u, n in enumerate(names):
                for t, d in enumerate(info.dates):
                    history_rows.append(dict(unit=n, date=d, mean=means[t, u], valid=valid[t, u]))
        self.check_canceled(feedback)

        # -- outputs
        results = {
            "FAULT_COUNT": len(profiles),
            "UNIT_COUNT": len(names),
            "MAX_STEP": max((abs(p.step) for p in profiles if np.isfinite(p.step)), default=None),
            "OUTPUT_DISTANCE": None,
            "OUTPUT_PLOT": None,
        }
        if fault_geoms and dist_path:
            results["OUTPUT_DISTANCE"] = dist_path
        results["OUTPUT_FAULTS"] = (
            write_table(self, parameters, "OUTPUT_FAULTS", context, FAULT_COLUMNS, fault_rows)
            if fault_geoms
            else None
        )
        results["OUTPUT_LITHOLOGY"] = (
            write_table(self, parameters, "OUTPUT_LITHOLOGY", context, LITHOLOGY_COLUMNS, litho_rows)
            if geoms
            else None
        )
        results["OUTPUT_HISTORY"] = (
            write_table(self, parameters, "OUTPUT_HISTORY", context, HISTORY_COLUMNS, history_rows)
            if history_rows
            else None
        )
        if plot_path:
            save_plot(cf.plot_controls, plot_path, fault_samples, profiles, res.unit_boxes, info.units)
            results["OUTPUT_PLOT"] = plot_path
        feedback.setProgress(100)
        return results
