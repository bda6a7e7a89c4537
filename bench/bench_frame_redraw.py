"""Benchmark of one Temporal Controller frame of an animated 156-date stack (issue 16: under 0.5 s).

The stack is added as the plugin's animate action adds it (processing.temporal: one layer per date,
each with a fixed temporal range, the same diverging ramp) to a QgsMapCanvas (offscreen) whose
Temporal Controller is set by `configure_navigation` (first..last date, one frame per acquisition
interval, animated mode). A frame's redraw time is measured from `setCurrentFrameNumber` to the
canvas's `mapCanvasRefreshed` signal, i.e. what a person waits for between two frames:

- first frame: the first draw after the layers were added (GDAL opens the file);
- frames: the median and the largest of `--frames` frames spread over the series;
- every date drawn: the same canvas with temporal filtering off (all 156 layers draw), what a frame
  would cost if the animation drew every layer and hid all but one.

    .venv/bin/python bench/bench_frame_redraw.py             # 500^2 and 1500^2 pixels, 156 dates
    .venv/bin/python bench/bench_frame_redraw.py --small     # 100^2 pixels, 156 dates: a quick check
    .venv/bin/python bench/bench_frame_redraw.py --sizes 3000 --canvas 1600x1000

The stacks are generated in a temporary folder (bench/_common.generate_stack: the plugin's own
tiled, compressed GeoTIFF) and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (the package on sys.path; the machine's description)

sys.path.insert(0, "/usr/share/qgis/python/plugins")


def frame_times(path: str, canvas_size: tuple[int, int], frames: int) -> dict:
    """Redraw times (s) of frames of the stack at `path`, animated as the plugin's action does."""
    from qgis.core import QgsDateTimeRange, QgsProject, QgsTemporalNavigationObject
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtCore import QDateTime, QEventLoop, QTimer

    from deformation_forecast.core.stack import read_info
    from deformation_forecast.processing.temporal import add_stack_as_temporal_layers, configure_navigation

    project = QgsProject.instance()
    project.clear()
    dates = read_info(path).dates
    _, layers = add_stack_as_temporal_layers(path, project=project, group_name="stack")
    canvas = QgsMapCanvas()
    canvas.resize(*canvas_size)
    canvas.setDestinationCrs(layers[0].crs())
    canvas.setLayers(layers)
    canvas.setExtent(layers[0].extent())
    navigation = QgsTemporalNavigationObject(canvas)  # what the Temporal Controller panel drives
    canvas.setTemporalController(navigation)
    configure_navigation(navigation, dates)
    canvas.show()

    def redraw(action) -> float:
        """Seconds from `action()` (which must trigger a redraw) to the canvas's next refresh."""
        loop = QEventLoop()
        canvas.mapCanvasRefreshed.connect(loop.quit)
        QTimer.singleShot(60000, loop.quit)  # a frame that never comes shows as 60 s
        t0 = time.perf_counter()
        action()
        loop.exec_()
        seconds = time.perf_counter() - t0
        canvas.mapCanvasRefreshed.disconnect(loop.quit)
        return seconds

    total = navigation.totalFrameCount()
    first = redraw(lambda: navigation.setCurrentFrameNumber(total // 3))
    picks = [round(k * (total - 1) / max(1, frames - 1)) for k in range(frames)]
    times = [redraw(lambda k=k: navigation.setCurrentFrameNumber(k)) for k in picks]
    frame_range = navigation.dateTimeRangeForFrameNumber(picks[len(picks) // 2])
    drawn = sum(1 for lyr in layers if lyr.temporalProperties().isVisibleInTemporalRange(frame_range))

    def all_dates() -> None:
        navigation.setNavigationMode(QgsTemporalNavigationObject.NavigationOff)
        canvas.setTemporalRange(QgsDateTimeRange(QDateTime(), QDateTime()))  # every layer draws
        canvas.refresh()

    everything = redraw(all_dates)
    canvas.deleteLater()
    project.clear()
    return {
        "dates": len(dates),
        "frames_total": total,
        "layers_per_frame": drawn,
        "first_s": first,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "all_dates_s": everything,
        "frames_timed": len(times),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500,1500", help="stack sizes in pixels (square), comma-separated")
    ap.add_argument("--dates", type=int, default=156)
    ap.add_argument("--frames", type=int, default=12, help="frames timed per stack")
    ap.add_argument("--canvas", default="1200x800", help="canvas size in pixels, WxH")
    ap.add_argument("--small", action="store_true", help="one 100 x 100 stack: a quick check")
    args = ap.parse_args()
    sizes = [100] if args.small else [int(s) for s in args.sizes.split(",")]
    width, height = (int(v) for v in args.canvas.lower().split("x"))
    canvas_size = (width, height)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    print(_common.machine())
    print(f"canvas {canvas_size[0]} x {canvas_size[1]} px, QGIS {_qgis_version()}, {args.dates} dates")
    print(
        "| stack (px) | frames | layers drawn per frame | first frame (s) | frame median (s) | frame max (s) | every date drawn (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench_frame_") as tmp:
        for size in sizes:
            path = os.path.join(tmp, f"stack_{size}.tif")
            _common.generate_stack(path, size, _common.dates_for(args.dates))
            r = frame_times(path, canvas_size, args.frames)
            print(
                f"| {size} x {size} x {r['dates']} | {r['frames_timed']} of {r['frames_total']} "
                f"| {r['layers_per_frame']} | {r['first_s']:.3f} | {r['median_s']:.3f} | {r['max_s']:.3f} "
                f"| {r['all_dates_s']:.3f} |",
                flush=True,
            )
            os.remove(path)
    app.exitQgis()
    return 0


def _qgis_version() -> str:
    from qgis.core import Qgis

    return Qgis.QGIS_VERSION


if __name__ == "__main__":
    sys.exit(main())
