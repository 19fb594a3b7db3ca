import itertools
import random
import subprocess
import sys

import pytest
from PIL import Image

from dcond.plot import FRONT, Point, Reference, accuracy_lines, accuracy_vs_bytes, pareto_front


def drawn_by_matplotlib(path) -> bool:
    return "matplotlib" in Image.open(path).info.get("Software", "").lower()


def legend_outside_axes(fig) -> bool:
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    return ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_pareto_front_is_exactly_the_points_no_other_point_beats():
    rng = random.Random(0)
    points = [(rng.randint(1, 20), rng.randint(1, 20)) for _ in range(60)]  # small ranges: ties in x and in y
    beaten = {p for p, q in itertools.product(points, points) if q != p and q[0] <= p[0] and q[1] >= p[1]}
    front = pareto_front(points)
    assert set(front) == set(points) - beaten and len(front) == len(set(front))
    assert front == sorted(front) and [y for _, y in front] == sorted(y for _, y in front)


def test_bytes_plot_joins_no_runs_marks_each_ipc_and_draws_the_front(tmp_path):
    points = [Point(b, acc, series, group=f"ipc={ipc}") for series, ipc, b, acc in [
        ("student", 1, 280_000, 0.68), ("student", 10, 1_500_000, 0.87),
        ("compressed", 1, 3_000, 0.64), ("compressed", 10, 27_000, 0.86)]]
    fig = accuracy_vs_bytes(tmp_path / "b.png", points, "bytes", "t", [Reference("teacher", 0.92)])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    runs = [line for line in ax.lines if len(line.get_xdata()) == 1]
    joined = [line for line in ax.lines if len(line.get_xdata()) > 1]
    assert len(runs) == 4  # one unjoined point per run; the only lines: the front and the teacher
    front = [line for line in joined if line.get_drawstyle() == "steps-post"]
    assert len(front) == 1 and len(joined) == 2
    assert list(front[0].get_xdata()) == [3_000, 27_000, 1_500_000, 1_500_000]
    assert list(front[0].get_ydata()) == [0.64, 0.86, 0.87, 0.87]
    marker = {(line.get_xdata()[0], line.get_ydata()[0]): line.get_marker() for line in runs}
    assert marker[(280_000, 0.68)] == marker[(3_000, 0.64)] != marker[(1_500_000, 0.87)] == marker[(27_000, 0.86)]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["student", "compressed", "ipc=1", "ipc=10", FRONT, "teacher"]
    assert legend_outside_axes(fig) and drawn_by_matplotlib(tmp_path / "b.png")


def test_accuracy_lines_tick_every_x_and_go_log_across_decades(tmp_path):
    points = [Point(ipc, acc, "student") for ipc, acc in [(50, 0.9), (1, 0.6), (10, 0.8)]]
    fig = accuracy_lines(tmp_path / "a.png", points, "IPC", "t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [1, 10, 50]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "50"]
    assert [list(line.get_xdata()) for line in ax.lines] == [[1, 10, 50]]  # joined in x order
    y_labels = [t.get_text() for t in ax.get_yticklabels()]  # accuracies in percent, as the tables give them
    assert all(t.endswith("%") for t in y_labels) and 80 in [float(t[:-1]) for t in y_labels]
    assert legend_outside_axes(fig) and drawn_by_matplotlib(tmp_path / "a.png")
    narrow = accuracy_lines(tmp_path / "n.png", [Point(2, 0.5, "s"), Point(3, 0.6, "s")], "IPC", "t")
    assert narrow.axes[0].get_xscale() == "linear"


def test_accuracy_lines_join_the_mean_of_the_seeds_and_dot_each(tmp_path):
    points = [Point(ipc, acc, "student") for ipc, acc in [(10, 0.8), (1, 0.6), (10, 0.9), (1, 0.7), (1, 0.8)]]
    seeds, means = accuracy_lines(tmp_path / "a.png", points, "IPC", "t").axes[0].lines
    assert list(means.get_xdata()) == [1, 10] and list(means.get_ydata()) == pytest.approx([0.7, 0.85])
    assert sorted(zip(seeds.get_xdata(), seeds.get_ydata())) == sorted((p.x, p.y) for p in points)
    assert seeds.get_linestyle() == "None"


def test_the_cli_loads_the_report_without_matplotlib():
    """matplotlib is imported when a report is drawn, not when the CLI starts."""
    code = "import sys; sys.modules['matplotlib'] = None; import dcond.report"  # None: any import of it fails
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
