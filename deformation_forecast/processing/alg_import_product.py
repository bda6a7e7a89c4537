"""Import InSAR time-series product: MintPy timeseries*.h5 / LiCSBAS cum*.h5 -> deformation stack."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.errors import InputError
from ..core.products import h5py_usable, import_stack
from .base import DeformationAlgorithm

H5_FILTER = "HDF5 products (*.h5 *.he5 *.hdf5);;All files (*.*)"


class ImportProduct(DeformationAlgorithm):
    NAME = "importproduct"
    DISPLAY = "Import InSAR time-series product"
    GROUP = "stack"
    TAGS = "mintpy,licsbas,hdf5,h5,timeseries,cum,sbas,import"
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    GEOMETRY = "GEOMETRY"
    OUTPUT_INCIDENCE = "OUTPUT_INCIDENCE"
    ANIMATED_OUTPUTS = (OUTPUT,)
    RASTER_UNITS = {OUTPUT_INCIDENCE: "degrees"}
    REFERENCE_DATE = "REFERENCE_DATE"
    ANIMATE = "ANIMATE"
    PROCESSOR, DATES, FIRST_DATE, LAST_DATE = "PROCESSOR", "DATES", "FIRST_DATE", "LAST_DATE"
    REFERENCE_DATE_USED, DATE_COUNT = "REFERENCE_DATE_USED", "DATE_COUNT"
    HELP = (
        "Turns the gridded time series of an SBAS processor (MintPy or LiCSBAS) into a deformation "
        "stack (GeoTIFF, one band per acquisition with its date, mm, NaN nodata, CRS and transform). "
        "The format is recognised from the file's content, not its name.<br><br><b>InSAR time-series "
        "product</b>: <br><i>MintPy</i> <i>geo_timeseries*.h5</i> (also timeseries_ERA5_ramp_demErr.h5 "
        "etc.): the <i>timeseries</i> dataset in metres, multiplied by 1000; the grid from "
        "X_FIRST/Y_FIRST (upper-left corner) and X_STEP/Y_STEP; the CRS from EPSG or UTM_ZONE, else "
        "WGS 84; the reference date and point from REF_DATE and REF_LAT/REF_LON or REF_Y/REF_X. A file "
        "in radar geometry (no X_FIRST) is refused: geocode it with MintPy's geocode.py "
        "first.<br><i>LiCSBAS</i> <i>cum.h5 / cum_filt.h5</i>: the <i>cum</i> dataset in mm, dates "
        "from <i>imdates</i>, an EPSG:4326 grid from corner_lat/corner_lon (centre of the first pixel) "
        "and post_lat/post_lon, the reference area refarea, the reference date the first "
        "acquisition.<br><b>MintPy geometry file</b> (optional, geometryGeo.h5): its incidence angle "
        "goes to the <b>Incidence angle</b> raster (degrees), ready for 'Deformation rate' and 'LOS to "
        "vertical'.<br><b>Re-reference to this date</b> (YYYYMMDD or YYYY-MM-DD, one of the product's "
        "dates): every pixel's series is set to zero at that acquisition; empty keeps the product's "
        "reference.<br><br>Signs are kept: MintPy, LiCSBAS and EGMS already use the stack's "
        "convention, positive = toward the satellite (LOS). The log and the output's metadata say what "
        "was recognised (processor, unit, reference date and point, CRS). The file is read in row "
        "strips within the memory budget. Single-date grids (GMTSAR, GeoTIFF) go through 'Build "
        "deformation stack'; point tables (EGMS, StaMPS) through 'Point time series to stack'."
    )
    HELP_ANCHOR = "import-insar-time-series-product-importproduct"

    def initAlgorithm(self, config=None):  # noqa: N802
        p = QgsProcessingParameterFile(
            self.INPUT, "InSAR time-series product (MintPy or LiCSBAS HDF5)", fileFilter=H5_FILTER
        )
        p.setHelp("MintPy geo_timeseries*.h5 or LiCSBAS cum.h5 / cum_filt.h5, recognised by content.")
        self.addParameter(p)
        g = QgsProcessingParameterFile(
            self.GEOMETRY, "MintPy geometry file (geometryGeo.h5)", fileFilter=H5_FILTER, optional=True
        )
        g.setHelp("Its incidenceAngle (degrees) is written to OUTPUT_INCIDENCE; same grid as INPUT.")
        self.addParameter(g)
        self.addParameter(
            QgsProcessingParameterString(
                self.REFERENCE_DATE,
                "Re-reference to this date (YYYYMMDD; empty = keep the product's reference)",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.ANIMATE,
                "Add one layer per date to the Temporal Controller (when loaded)",
                defaultValue=False,
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Deformation stack"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_INCIDENCE,
                "Incidence angle (degrees, from GEOMETRY)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputString(self.PROCESSOR, "Processor recognised"))
        self.addOutput(QgsProcessingOutputString(self.DATES, "Dates (comma-separated)"))
        self.addOutput(QgsProcessingOutputString(self.FIRST_DATE, "First date"))
        self.addOutput(QgsProcessingOutputString(self.LAST_DATE, "Last date"))
        self.addOutput(QgsProcessingOutputString(self.REFERENCE_DATE_USED, "Reference date of the stack"))
        self.addOutput(QgsProcessingOutputNumber(self.DATE_COUNT, "Dates (bands)"))

    def compute(self, parameters, context, feedback):
        path = self.parameterAsFile(parameters, self.INPUT, context)
        if not path:
            raise InputError(
                f"{self.INPUT}: no file given; choose a MintPy timeseries*.h5 or LiCSBAS cum*.h5."
            )
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        geometry = self.parameterAsFile(parameters, self.GEOMETRY, context)
        inc_out = self.parameterAsOutputLayer(parameters, self.OUTPUT_INCIDENCE, context)
        self.check_output_not_input(out, path, geometry)
        self.check_output_not_input(inc_out, path, geometry)
        run = self.run_context(feedback)
        params = {
            "input": path,
            "output": out,
            "geometry": geometry,
            "output_incidence": inc_out,
            "reference_date": self.parameterAsString(parameters, self.REFERENCE_DATE, context),
            "mb": run.budget_mb,
        }
        if not _in_process():
            from ..worker import run_worker

            feedback.pushInfo(
                "h5py cannot run inside this QGIS process (its libhdf5 clashes with GDAL's); "
                "reading the product in the worker's Python."
            )
            return run_worker("importproduct", params, feedback)

        def log(line: str) -> None:
            (feedback.pushWarning if line.startswith("Warning") else feedback.pushInfo)(line)

        return import_stack(params, log, run)


_USABLE: list[bool] = []


def _in_process() -> bool:
    """h5py usable in this process (checked once; see core.products.h5py_usable)."""
    if not _USABLE:
        _USABLE.append(h5py_usable())
    return _USABLE[0]
