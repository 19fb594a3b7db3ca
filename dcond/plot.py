"""Accuracy plots as PNG, for pipeline reports and benchmarks, drawn with matplotlib.

Each plot is its own `Figure` on an Agg canvas: no display, no pyplot state shared between threads. matplotlib
is imported inside the functions, because the CLI imports this module at start-up and should start fast.
Accuracies are fractions, as the metrics hold them; the y axis shows them in percent.
"""

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TOP1 = "top-1 accuracy (%)"
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
FRONT = "Pareto front (best top-1 for at most these bytes)"


@dataclass(frozen=True)
class Point:
    x: float
    y: float  # an accuracy, as a fraction
    series: str  # its colour and legend entry: a label source, a compression
    group: str = ""  # its marker in the bytes plot (a matrix row: an IPC), named in the legend
    text: str = ""  # written beside the point in the bytes plot


@dataclass(frozen=True)
class Reference:
    """A line across the plot: at y = value (an accuracy, such as the teacher's), or at x = value if vertical."""

    label: str
    value: float
    vertical: bool = False


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats, that is none has at most their x (bytes) and at least their y
    (accuracy); in increasing x, so in increasing y."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(set(points), key=lambda p: (p[0], -p[1])):  # the best y first where x ties
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def accuracy_lines(path: Path, points: Sequence[Point], x_label: str, title: str,
                   references: Sequence[Reference] = (), y_label: str = TOP1) -> "Figure":
    """One line per series through the mean of its points at each x, in x order; where an x has several points
    (the seeds of a matrix row), each is also drawn as a faint dot. A tick at every x present; x on a log scale
    when it spans a decade or more (IPC 1 to 10, say). Saved to `path`; returned for inspection."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    fig, ax = _axes()
    xs = sorted({p.x for p in points})
    if xs[0] > 0 and xs[-1] >= 10 * xs[0]:
        ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.xaxis.set_minor_locator(NullLocator())  # a log axis would otherwise add unlabelled ticks between them
    handles = []
    for colour, name in zip(itertools.cycle(COLOURS), dict.fromkeys(p.series for p in points)):
        pts = [p for p in points if p.series == name]
        runs: dict[float, list[float]] = {}
        for p in pts:
            runs.setdefault(p.x, []).append(p.y)
        at = sorted(runs)
        if len(pts) > len(at):  # several runs at some x
            ax.plot([p.x for p in pts], [p.y for p in pts], color=colour, marker="o", linestyle="none", alpha=0.35)
        ax.plot(at, [statistics.fmean(runs[x]) for x in at], color=colour, marker="o")
        handles.append(Line2D([], [], color=colour, marker="o", label=name))
    return _finish(fig, ax, path, x_label, y_label, title, handles + _draw_references(ax, references))


def accuracy_vs_bytes(path: Path, points: Sequence[Point], x_label: str, title: str,
                      references: Sequence[Reference] = (), y_label: str = TOP1) -> "Figure":
    """One unjoined point per run on a log x axis of bytes: colour by series, marker by group, and the Pareto
    front over all points as a step line (the best accuracy any run reached with at most that many bytes).
    Saved to `path`; returned for inspection."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = _axes()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # labelled ticks even within one decade
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _bytes(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    colours = dict(zip(dict.fromkeys(p.series for p in points), itertools.cycle(COLOURS)))
    markers = {g: MARKERS[k % len(MARKERS)] for k, g in enumerate(dict.fromkeys(p.group for p in points))}
    x_max = max(p.x for p in points)
    lo, hi = math.log10(min(p.x for p in points)), math.log10(x_max)
    for p in points:
        ax.plot([p.x], [p.y], color=colours[p.series], marker=markers[p.group], markersize=8, linestyle="none")
        if p.text:  # in the right third the text goes to the left of its point, to stay inside the axes
            right = hi > lo and (math.log10(p.x) - lo) / (hi - lo) > 0.66
            ax.annotate(p.text, (p.x, p.y), xytext=(-7 if right else 7, 4), textcoords="offset points",
                        ha="right" if right else "left", fontsize=8)
    front = pareto_front((p.x, p.y) for p in points)
    ax.step([x for x, _ in front] + [x_max], [y for _, y in front] + [front[-1][1]], where="post",
            color="grey", linestyle="--", linewidth=1.2, zorder=1)
    handles = [Patch(color=c, label=s) for s, c in colours.items()]
    handles += [Line2D([], [], color="black", marker=m, linestyle="none", label=g) for g, m in markers.items() if g]
    handles.append(Line2D([], [], color="grey", linestyle="--", label=FRONT))
    return _finish(fig, ax, path, x_label, y_label, title, handles + _draw_references(ax, references))


def _axes() -> tuple["Figure", "Axes"]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(8, 4.8), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, which="major", color="#dddddd")
    ax.set_axisbelow(True)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig, ax


def _finish(fig: "Figure", ax: "Axes", path: Path, x_label: str, y_label: str, title: str, handles: list) -> "Figure":
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")  # "tight" keeps the legend, which lies outside the axes
    return fig


def _draw_references(ax: "Axes", references: Sequence[Reference]) -> list:
    """Draw each reference as a dotted line; their legend entries."""
    from matplotlib.lines import Line2D

    handles = []
    for colour, ref in zip(itertools.cycle(["black", "#cc6666", "#6666cc", "#66aa66"]), references):
        (ax.axvline if ref.vertical else ax.axhline)(ref.value, color=colour, linestyle=":", linewidth=1.5)
        handles.append(Line2D([], [], color=colour, linestyle=":", label=ref.label))
    return handles


def _bytes(value: float) -> str:
    """10000 -> '10 KB' (decimal units, as the byte counts of the tables)."""
    k = min(int(math.log10(value)) // 3, 3) if value >= 1 else 0
    return f"{value / 1000 ** k:g} {['B', 'KB', 'MB', 'GB'][k]}"
