"""`hpsearch dashboard` as a real process while a real worker runs, read over HTTP and in Chromium.

One study on the default storage (``hpsearch.db`` in the working directory) is created, the
dashboard is started on it, and ``hpsearch run`` trains three tiny trials while a thread reads
the dashboard's API. Headless Chromium (Debian's ``chromium``) then opens the study page and
the HTML report; screenshots are saved under the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from search.cli import main
from tests.helpers import float_range, free_port, http_get, int_range, subprocess_env, wait_until, write_space

SPACE = {
    "dataset": {"name": "digits", "validation_fraction": 0.2, "limit": 200},
    "sampler": {"type": "random", "seed": 3},
    "budget": {"trials": 3},
    "model": {"layers": 1, "units": int_range(4, 32, log=True)},
    "optimizer": {"learning_rate": float_range(1.0e-3, 1.0e-1, log=True)},
    "training": {"batch_size": 64, "epochs": 2},
}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _get(port: int, path: str) -> Any:
    return http_get(f"http://127.0.0.1:{port}{path}")


def _start_dashboard(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = subprocess_env()
    env.pop("HPSEARCH_ARTIFACTS", None)  # the default: next to the database
    return subprocess.Popen(
        [sys.executable, "-m", "search", "dashboard", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_answering(port: int, proc: subprocess.Popen[str]) -> None:
    def answering() -> bool:
        try:
            _get(port, "/api/meta")
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"the dashboard exited: {proc.communicate()[0]}") from None
            return False
        return True

    try:
        wait_until(answering, what="the dashboard answering")
    except AssertionError:
        proc.kill()
        raise


@dataclass
class Served:
    dir: Path
    port: int
    run_code: int
    reads: int = 0
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A study with three finished trials, trained while the dashboard was read over HTTP."""
    work = tmp_path_factory.mktemp("dash")
    write_space(work, "dash", **SPACE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # the default storage: sqlite:///hpsearch.db here
        mp.delenv("HPSEARCH_ARTIFACTS", raising=False)  # and the default artifacts directory next to it
        assert main(["create", "dash.yaml"]) == 0
        port = free_port()
        proc = _start_dashboard(work, "--port", str(port))
        try:
            _wait_answering(port, proc)
            result = Served(work, port, run_code=-1)
            done = threading.Event()

            def poll() -> None:
                while not done.is_set():
                    try:
                        _get(port, "/api/studies/1")
                        result.reads += 1
                    except Exception as e:  # an error page, a refused connection, a crashed dashboard
                        result.errors.append(repr(e))
                    done.wait(0.1)

            reader = threading.Thread(target=poll, daemon=True)
            reader.start()
            wait_until(lambda: result.reads or result.errors, what="the first read")
            result.run_code = main(["run", "dash.yaml"])
            done.set()
            reader.join()
            wait_until(  # the dashboard caches a study's trials for 2 s
                lambda: all(t["state"] == "Complete" for t in _get(port, "/api/studies/1")["trials"]),
                timeout=30,
                what="the dashboard showing the finished trials",
            )
            yield result
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


def test_a_worker_runs_undisturbed_while_the_dashboard_reads(served: Served) -> None:
    assert served.run_code == 0
    assert served.errors == [] and served.reads > 0
    study = _get(served.port, "/api/studies/1")
    assert [t["state"] for t in study["trials"]] == ["Complete"] * 3


def test_the_api_lists_the_study_named_objectives_artifacts_and_notes(served: Served) -> None:
    summaries = _get(served.port, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["dash"]
    study = _get(served.port, "/api/studies/1")
    assert study["objective_names"] == ["val_accuracy", "train_seconds"]
    assert _get(served.port, "/api/meta")["artifact_is_available"] is True
    for trial in study["trials"]:
        n = trial["number"]
        files = {a["filename"]: a for a in trial["artifacts"]}
        assert set(files) == {f"trial-{n}-curves.svg", f"trial-{n}-model.txt"}
        assert files[f"trial-{n}-curves.svg"]["mimetype"] == "image/svg+xml"  # shown inline
        svg = _get(
            served.port, f"/artifacts/1/{trial['trial_id']}/{files[f'trial-{n}-curves.svg']['artifact_id']}"
        )
        assert b"<svg" in svg and f"trial {n}: ".encode() in svg
        text = _get(
            served.port, f"/artifacts/1/{trial['trial_id']}/{files[f'trial-{n}-model.txt']['artifact_id']}"
        )
        assert b"parameters" in text and b"FLOPs" in text
        assert "COMPLETE" in trial["note"]["body"] and "epochs run: 2 of 2" in trial["note"]["body"]
    assert (served.dir / "hpsearch-artifacts").is_dir()  # next to hpsearch.db
    assert len(list((served.dir / "hpsearch-artifacts").iterdir())) == 6


def test_binding_to_another_address_warns(served: Served) -> None:
    port = free_port()
    proc = _start_dashboard(served.dir, "--host", "0.0.0.0", "--port", str(port))
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert first.startswith("optuna-dashboard for sqlite:///hpsearch.db at http://0.0.0.0:")
    assert second.startswith("warning: optuna-dashboard has no authentication; bound to 0.0.0.0")


# ---- headless Chromium ---------------------------------------------------------------------------


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        message = "CHROMIUM NOT INSTALLED: browser tests NOT RUN (apt-get install chromium; .ci/run does)"
        if os.environ.get("HPSEARCH_REQUIRE_CHROMIUM") == "1":  # set by .ci/run: CI must not skip them
            pytest.fail(message + " and HPSEARCH_REQUIRE_CHROMIUM=1")
        pytest.skip(message)
    return exe


def _browse(url: str, tmp: Path, *mode: str) -> str:
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=10000",
        *mode, url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Subtree(HTMLParser):
    """Classes of every element under the element with ``id``."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.classes = element_id, 0, []  # type: ignore[var-annotated]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.depth == 0 and a.get("id") != self.element_id:
            return
        self.classes += (a.get("class") or "").split() + ([tag] if tag in ("svg", "canvas") else [])
        if tag not in VOID:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in VOID:
            self.depth -= 1


def _classes_under(dom: str, element_id: str) -> list[str]:
    parser = _Subtree(element_id)
    parser.feed(dom)
    return parser.classes


def test_chromium_renders_the_pareto_front_on_the_study_page(served: Served, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{served.port}/dashboard/studies/1"
    dom = _browse(url, tmp_path, "--dump-dom")
    pareto = _classes_under(dom, "graph-pareto-front")  # the study page's "Pareto Front" card
    assert "main-svg" in pareto and "svg" in pareto
    assert pareto.count("point") == 3  # one marker per finished trial
    assert "val_accuracy" in dom and "train_seconds" in dom
    shot = tmp_path / "dashboard-study.png"
    _browse(url, tmp_path, f"--screenshot={shot}", "--window-size=1400,1000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chromium_renders_the_offline_report(served: Served, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    assert main(["report", "--study", "dash", "--storage", f"sqlite:///{served.dir / 'hpsearch.db'}",
                 "--out", str(report)]) == 0  # fmt: skip
    dom = _browse(report.as_uri(), tmp_path, "--dump-dom")
    pareto = _classes_under(dom, "plot-0")
    assert "main-svg" in pareto and pareto.count("point") == 3
    shot = tmp_path / "report.png"
    _browse(report.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chromium_shows_a_trials_note_and_artifacts(served: Served, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{served.port}/dashboard/studies/1/trials?numbers=0"
    dom = _browse(url, tmp_path, "--dump-dom")
    assert "Trial 0: COMPLETE" in dom and "epochs run: 2 of 2" in dom  # the note, rendered
    assert "trial-0-curves.svg" in dom and "trial-0-model.txt" in dom
    assert 'src="/artifacts/1/' in dom  # the curves SVG shown inline
