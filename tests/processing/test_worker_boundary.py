"""The QGIS side of the process boundary (worker.py): relay, failure, crash, hang, cancel."""

import os
import threading
import time

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from deformation_forecast import worker
from tests import worker_selftest


@pytest.fixture(autouse=True)
def selftest_worker(monkeypatch):
    """The worker runs the tests' module, which adds the fault-injection command ``_selftest``."""
    monkeypatch.setattr(worker, "WORKER_MODULE", worker_selftest.MODULE)


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.progresses = [], []

    def pushInfo(self, info):  # noqa: N802
        self.infos.append(info)

    def setProgress(self, p):  # noqa: N802
        self.progresses.append(p)
        super().setProgress(p)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it must have been reaped
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_progress_and_messages_are_relayed(qgis_app):
    fb = RecordingFeedback()
    res = worker.run_worker("_selftest", {"mode": "slow", "steps": 5, "step_seconds": 0.01}, fb)
    assert res["mode"] == "slow"
    assert fb.progresses[:5] == [0, 20, 40, 60, 80]
    assert "step 4" in fb.infos


def test_failure_carries_the_workers_last_lines(qgis_app):
    with pytest.raises(QgsProcessingException, match="selftest failure") as e:
        worker.run_worker("_selftest", {"mode": "fail"})
    assert "something went wrong on purpose" in str(e.value)


def test_killed_worker_is_reported(qgis_app):
    with pytest.raises(QgsProcessingException, match="killed by signal 9") as e:
        worker.run_worker("_selftest", {"mode": "crash"})
    assert "about to be killed" in str(e.value)


def test_silent_worker_is_stopped_after_idle_timeout(qgis_app, tmp_path):
    touch = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(QgsProcessingException, match="printed nothing for 2 s"):
        worker.run_worker("_selftest", {"mode": "silent", "seconds": 60, "touch": str(touch)}, idle_timeout=2)
    assert time.monotonic() - t0 < 20
    assert not _alive(int(touch.read_text()))


def test_cancel_terminates_the_worker(qgis_app, tmp_path):
    fb = QgsProcessingFeedback()
    touch = tmp_path / "pid"
    threading.Timer(1.5, fb.cancel).start()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        worker.run_worker("_selftest", {"mode": "slow", "steps": 600, "touch": str(touch)}, fb)
    assert not _alive(int(touch.read_text()))


def test_paths_with_spaces_quotes_and_non_ascii(qgis_app, tmp_path):
    odd = tmp_path / 'dossier d\'été "x"' / "pid file.txt"
    odd.parent.mkdir()
    res = worker.run_worker("_selftest", {"mode": "ok", "touch": str(odd)})
    assert int(odd.read_text()) == res["pid"]


def test_missing_tensorflow_python_is_explained(qgis_app, monkeypatch, tmp_path):
    monkeypatch.setenv("DEFORMATION_FORECAST_PYTHON", str(tmp_path / "nope"))
    monkeypatch.setattr(worker, "PLUGIN_DIR", str(tmp_path / "a" / "b"))
    worker._checked.clear()
    python, why = worker.find_python()
    assert python is None
    assert "is not an executable file" in why and "tensorflow-cpu" in why
    worker._checked.clear()


def test_two_runs_at_once_get_their_own_workers(qgis_app):
    """Two algorithms running at once (QGIS background tasks are threads) do not share a worker."""
    results, errors = {}, []

    def run(key):
        try:
            results[key] = worker.run_worker("_selftest", {"mode": "slow", "steps": 10, "step_seconds": 0.05})
        except Exception as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert results["a"]["pid"] != results["b"]["pid"]
    assert not _alive(results["a"]["pid"]) and not _alive(results["b"]["pid"])


def test_out_of_memory_worker_is_explained(qgis_app):
    """A worker that runs out of memory fails with advice on the memory budget, not a traceback."""
    with pytest.raises(QgsProcessingException, match="ran out of memory") as e:
        worker.run_worker("_selftest", {"mode": "oom", "limit_mb": 400})
    assert "DEFORMATION_FORECAST_MEMORY_MB" in str(e.value) and "BATCH_SIZE" in str(e.value)


def test_sigkill_mentions_the_out_of_memory_killer(qgis_app):
    with pytest.raises(QgsProcessingException, match="out-of-memory killer"):
        worker.run_worker("_selftest", {"mode": "crash"})


@pytest.mark.parametrize("how", ["cancel", "crash"])
def test_a_stopped_worker_leaves_no_partial_output(qgis_app, tmp_path, how):
    """Cancel (SIGTERM: the worker's writers clean up) and SIGKILL (the plugin cleans up after it)
    while an output is half-written: nothing but the folder's previous content is left."""
    (tmp_path / "keep.txt").write_text("a file of the user's")
    params = {"mode": "write", "output": str(tmp_path / "out put.tif"), "then": how}
    fb = QgsProcessingFeedback()
    if how == "cancel":
        fb.progressChanged.connect(lambda p: p >= 50 and fb.cancel())
    with pytest.raises(QgsProcessingException, match="Cancelled" if how == "cancel" else "signal 9"):
        worker.run_worker("_selftest", params, fb)
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_provider_version_names_the_worker_python_and_tensorflow(df_plugin):
    """versionInfo (in every run's log): the plugin's version, the worker's Python and TensorFlow
    (read from the package metadata: TensorFlow is not imported for it)."""
    import platform

    from qgis.core import QgsApplication

    worker._checked.clear()
    worker._versions.clear()
    info = QgsApplication.processingRegistry().providerById("deformation_forecast").versionInfo()
    assert info.startswith("0.") and "; worker: " in info
    python, _ = worker.find_python()
    if python is None:
        assert info.endswith("no Python with TensorFlow found")
    else:  # the project's venv, which runs these tests
        import importlib.metadata as md

        tf = md.version(md.packages_distributions()["tensorflow"][0])  # tensorflow or tensorflow-cpu
        assert tf.startswith("2.")
        assert info.endswith(f"worker: Python {platform.python_version()}, TensorFlow {tf}")


def test_the_command_line_and_console_output_are_relayed(qgis_app):
    """The worker's command line via pushCommandInfo; its non-JSON output via pushConsoleInfo,
    TensorFlow's own notes filtered out."""

    class Console(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.commands, self.console = [], []

        def pushCommandInfo(self, info):  # noqa: N802
            self.commands.append(info)

        def pushConsoleInfo(self, info):  # noqa: N802
            self.console.append(info)

    fb = Console()
    with pytest.raises(QgsProcessingException, match="selftest failure"):
        worker.run_worker("_selftest", {"mode": "fail"}, fb)
    assert len(fb.commands) == 1 and " -m tests.worker_selftest _selftest --params " in fb.commands[0]
    assert "selftest: something went wrong on purpose" in fb.console
    assert not any(worker.is_tensorflow_noise(line) for line in fb.console)
