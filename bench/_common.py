"""Shared helpers of the benchmarks: the machine's description, a synthetic stack generator that
streams to disk (StackWriter, row strip by row strip, band by band) and a peak-RSS monitor of a
process tree (polling /proc; psutil is not in the venv).

Not a benchmark itself (run_all.sh runs bench/bench_*.py only).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the package is imported from $DF_BENCH_SRC when set (a snapshot, see bench_memory.build_plugin, so
# that a long run times one version of the code while others edit the tree), else from the tree
SRC = os.environ.get("DF_BENCH_SRC") or ROOT
if SRC not in sys.path:
    sys.path.insert(0, SRC)

RES = 20.0
ORIGIN = (400000.0, 4300000.0)  # upper-left corner, UTM 47N
CRS = "EPSG:32647"
START = dt.date(2014, 10, 14)
STEP_DAYS = 12


# ------------------------------------------------------------------------------------------ machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: cores, RAM, CPU model, OS, GPU (if nvidia-smi answers)."""
    cpu = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    osname = platform.platform()
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    gpu = "no GPU"
    try:
        p = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if p.returncode == 0 and p.stdout.strip():
            gpu = ", ".join(p.stdout.split("\n")[:8]).strip(", ")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"machine: {os.cpu_count()} cores, {mem:.0f} GiB, {cpu}, {osname}, {gpu}"


# ------------------------------------------------------------------------------------ the stack


def dates_for(bands: int, every: int = 1, offset_days: int = 0) -> list[dt.date]:
    return [START + dt.timedelta(days=STEP_DAYS * i + offset_days) for i in range(0, bands * every, every)][
        :bands
    ]


def transform_for(res: float = RES):
    from affine import Affine

    return Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1])


def _bowls(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (n, 2) in pixels, widths (n,) in pixels, rates (n,) in mm/yr of the subsidence bowls;
    a function of (size, seed) only, so stacks made for other orbits or predictions share them."""
    rng = np.random.default_rng(seed)
    n = 8
    centres = rng.uniform(0.1 * size, 0.9 * size, (n, 2))
    widths = rng.uniform(size / 40, size / 10, n)
    rates = rng.uniform(-150, -10, n)
    return centres, widths, rates


def rate_field(size: int, r0: int, h: int, seed: int = 0) -> np.ndarray:
    """Linear rate (mm/yr, float32 (h, size)) of rows r0..r0+h of the scene."""
    centres, widths, rates = _bowls(size, seed)
    rows = np.arange(r0, r0 + h, dtype="float32")[:, None]
    cols = np.arange(size, dtype="float32")[None]
    out = np.zeros((h, size), dtype="float32")
    for (cy, cx), wd, v in zip(centres, widths, rates, strict=True):
        out += np.float32(v) * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / np.float32(2 * wd * wd))
    return out


def rate_at(size: int, rows, cols, seed: int = 0) -> np.ndarray:
    """rate_field at pixel (rows, cols) (float64 arrays), without computing whole rows."""
    centres, widths, rates = _bowls(size, seed)
    r = np.asarray(rows, dtype="float64")[..., None]
    c = np.asarray(cols, dtype="float64")[..., None]
    g = np.exp(-((r - centres[:, 0]) ** 2 + (c - centres[:, 1]) ** 2) / (2 * widths * widths))
    return (g * rates).sum(axis=-1)


def generate_stack(
    path: str,
    size: int,
    dates: list[dt.date],
    seed: int = 0,
    noise_mm: float = 2.0,
    scale: float = 1.0,
    noise_seed: int | None = None,
    progress=None,
) -> None:
    """Cumulative displacement (mm) of smooth bowls growing in time (linear rate plus a slight
    acceleration) times `scale`, plus Gaussian noise, written with StackWriter (its layout: 128 px
    tiles, deflate, BIGTIFF when needed) one 128-row strip and one band at a time: the
    memory used is a few strips of (128 x size) floats whatever the stack's size."""
    from rasterio.windows import Window

    from deformation_forecast.core.stack import StackWriter

    rng = np.random.default_rng(seed + 1000 if noise_seed is None else noise_seed)
    t = np.array([(d - START).days / 365.25 for d in dates], dtype="float32")
    strip = 128
    with StackWriter(
        path, dates, CRS, transform_for(), size, size, tags={"BENCH": f"size={size} seed={seed}"}
    ) as w:
        for r0 in range(0, size, strip):
            h = min(strip, size - r0)
            rate = rate_field(size, r0, h, seed) * np.float32(scale)
            win = Window(0, r0, size, h)
            for b, tb in enumerate(t):
                band = rate * (tb + np.float32(0.03) * tb * tb)
                if noise_mm:
                    band += rng.standard_normal((h, size), dtype="float32") * np.float32(noise_mm)
                w.write_band(b, band, window=win)
            if progress:
                progress(min(1.0, (r0 + h) / size))


def stack_ok(path: str, size: int, bands: int) -> bool:
    """An existing stack of the expected shape (StackWriter publishes only complete files)."""
    if not os.path.exists(path):
        return False
    try:
        from deformation_forecast.core.stack import read_info

        info = read_info(path)
    except Exception:  # noqa: BLE001 - anything unreadable is regenerated
        return False
    return (info.width, info.height, info.count) == (size, size, bands)


# ----------------------------------------------------------------------------------- peak RSS


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out += [int(c) for c in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class TreePeaks:
    """Peak RSS (MB) per role in a process tree: 'main' (the first process whose command line
    contains `main_match`, e.g. qgis_process.bin), 'worker' (any process whose command line contains
    `worker_match`) and 'total' (the largest sum over the whole tree at one poll)."""

    main_mb: float = 0.0
    worker_mb: float = 0.0
    total_mb: float = 0.0
    workers_seen: int = 0
    _seen: set = field(default_factory=set)


class TreeMonitor:
    """Polls /proc every `interval` s from a thread while a process tree runs."""

    def __init__(
        self,
        pid: int,
        main_match: str = "qgis_process",
        worker_match: str = "deformation_forecast.ml",
        interval: float = 0.2,
    ):
        self.pid, self.main_match, self.worker_match, self.interval = pid, main_match, worker_match, interval
        self.peaks = TreePeaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        todo, tree = [self.pid], []
        while todo:
            p = todo.pop()
            tree.append(p)
            todo += _children(p)
        total = 0
        for p in tree:
            kb = _rss_kb(p)
            total += kb
            cmd = _cmdline(p)
            if self.worker_match in cmd:
                self.peaks.worker_mb = max(self.peaks.worker_mb, kb / 1024)
                if p not in self.peaks._seen:
                    self.peaks._seen.add(p)
                    self.peaks.workers_seen += 1
            elif self.main_match in cmd:
                self.peaks.main_mb = max(self.peaks.main_mb, kb / 1024)
        self.peaks.total_mb = max(self.peaks.total_mb, total / 1024)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_monitored(
    cmd: list[str], env: dict | None = None, timeout: float | None = None, log: str | None = None, **kw
) -> tuple[int, float, TreePeaks, str]:
    """Run `cmd`, polling the RSS of its process tree; returns (rc, wall s, peaks, output tail).
    rc is -9 when it ran past `timeout` (the whole process group is killed)."""
    monitor = kw.pop("monitor", {})
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw
    )
    with TreeMonitor(proc.pid, **monitor) as mon:
        try:
            text, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            text, _ = proc.communicate()
            rc = -9
    wall = time.perf_counter() - t0
    if log:
        out.close()
        with open(log, errors="replace") as f:
            text = f.read()
    return rc, wall, mon.peaks, (text or "")[-4000:]


def dump_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=_json_number)


def _json_number(o):
    """numpy scalars and arrays as JSON numbers and lists (str() would make them strings)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
