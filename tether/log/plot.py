"""``tether log plot``: convergence, the worker timeline and partial-result curves, as a PNG.

matplotlib is imported here only (the ``plot`` extra), with the headless Agg backend, so a
worker node or a login node without a display never needs it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tether.errors import ConfigError
from tether.log.table import LogTable, Segment

COLORS = {"completed": "#3a923a", "failed": "#d62728", "killed": "#ff7f0e", "lost": "#9467bd",
          "superseded": "#9467bd", "running": "#9e9e9e"}
MAX_CURVES = 300  # partial-result curves drawn; more is a grey smear


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("tether log plot needs matplotlib: pip install 'tether[plot]'") from None
    return plt


def _unit(span: float) -> tuple[float, str]:
    """Seconds, minutes or hours, whichever keeps the time axis' numbers readable."""
    if span < 180:
        return 1.0, "s"
    if span < 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


class Figure:
    """The panels asked for, stacked, sharing one time origin and unit."""

    def __init__(self, table: LogTable, name: str, panels: list[str]) -> None:
        self.table = table
        self.name = name
        self.panels = panels
        self.t0 = table.t_first or 0.0
        self.scale, self.unit = _unit(table.wall_time)
        self.done = sorted((r for r in table.rows.values()
                            if r.status == "completed" and r.value is not None),
                           key=lambda r: r.t_finished or 0.0)

    def _t(self, t: float) -> float:
        return (t - self.t0) / self.scale

    def render(self, out: str) -> None:
        plt = _pyplot()
        lanes = self._lanes()
        heights = {"convergence": 3.6, "partials": 3.6,
                   "timeline": min(12.0, max(2.4, 0.32 * len(lanes) + 1.4))}
        ratios = [heights[p] for p in self.panels]
        fig = plt.figure(figsize=(12, sum(ratios) + 0.9), layout="constrained")
        grid = fig.add_gridspec(len(self.panels), 2, height_ratios=ratios)
        for i, panel in enumerate(self.panels):
            if panel == "convergence":
                self.convergence(fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1]))
            elif panel == "timeline":
                self.timeline(fig.add_subplot(grid[i, :]), lanes)
            else:
                self.partials(fig, fig.add_subplot(grid[i, :]))
        fig.suptitle(self._title(), fontsize=13)
        fig.savefig(out, dpi=100)
        plt.close(fig)

    def _title(self) -> str:
        tb = self.table
        best = tb.best()
        parts = [self.name]
        if tb.strategy:
            parts.append(f"strategy {tb.strategy}")
        parts.append(f"{len(self.done)} completed of {len(tb.rows)} evaluations")
        if best is not None and best.value is not None:
            parts.append(f"best {best.value:.4g}")
        parts.append(f"finished: {tb.finished.reason}" if tb.finished else "still running")
        return "  |  ".join(parts)

    # ------------------------------------------------------------------ convergence
    def convergence(self, by_n: Any, by_t: Any) -> None:
        if not self.done:
            for ax in (by_n, by_t):
                ax.text(0.5, 0.5, "no completed evaluation yet", ha="center", va="center",
                        transform=ax.transAxes)
            return
        vals = [float(r.value) for r in self.done if r.value is not None]
        best: list[float] = []
        for v in vals:
            best.append(v if not best or v < best[-1] else best[-1])
        n = list(range(1, len(vals) + 1))
        by_n.scatter(n, vals, s=8, color="#9e9e9e", alpha=0.6, label="each evaluation",
                     linewidths=0)
        by_n.step(n, best, where="post", color="#1f5fa8", lw=2, label="best so far")
        better = [i for i in range(len(best)) if i == 0 or best[i] < best[i - 1]]
        by_n.plot([n[i] for i in better], [best[i] for i in better], "o", ms=4, color="#1f5fa8")
        from matplotlib.ticker import MaxNLocator

        by_n.xaxis.set_major_locator(MaxNLocator(integer=True))
        by_n.set_xlabel("completed evaluations (in order of completion)")
        by_n.set_ylabel("objective value (lower is better)")
        by_n.set_title("convergence by evaluations")
        by_n.legend(loc="upper right", fontsize=8)
        ts = [self._t(r.t_finished or self.t0) for r in self.done]
        end = self.table.wall_time / self.scale  # the best holds until the log's last event
        by_t.step([*ts, max(end, ts[-1])], [*best, best[-1]], where="post", color="#1f5fa8",
                  lw=2, label="best so far")
        by_t.plot([ts[i] for i in better], [best[i] for i in better], "o", ms=4,
                  color="#1f5fa8", label="improvement")
        by_t.set_xlabel(f"wall time since the run started ({self.unit})")
        by_t.set_ylabel("best objective value so far")
        by_t.set_title("convergence by wall time")
        by_t.set_xlim(0, max(self.table.wall_time / self.scale, 1e-9) * 1.01)  # as the timeline
        by_t.legend(loc="upper right", fontsize=8)
        if min(vals) > 0 and max(vals) / min(vals) > 1e3:  # many decades: log scale
            by_n.set_yscale("log")
            by_t.set_yscale("log")
        for ax in (by_n, by_t):
            ax.grid(alpha=0.3)

    # ------------------------------------------------------------------ timeline
    def _lanes(self) -> list[tuple[str, list[Segment]]]:
        """One lane per worker slot: attempts of one worker that overlap go on separate lanes."""
        by_worker: dict[str, list[Segment]] = defaultdict(list)
        for seg in self.table.segments:
            by_worker[seg.worker].append(seg)
        first = {w: min(s.t0 for s in segs) for w, segs in by_worker.items()}
        for name, w in self.table.workers.items():
            if name not in first and w.spans:
                first[name] = w.spans[0][0]
        lanes: list[tuple[str, list[Segment]]] = []
        for worker in sorted(first, key=lambda w: (first[w], w)):
            mine: list[list[Segment]] = []
            for seg in sorted(by_worker.get(worker, []), key=lambda s: s.t0):
                lane = next((ln for ln in mine if (ln[-1].t1 or seg.t0) <= seg.t0), None)
                if lane is None:
                    mine.append([seg])
                else:
                    lane.append(seg)
            for k, segs in enumerate(mine or [[]]):
                lanes.append((worker if k == 0 else f"{worker} #{k + 1}", segs))
        return lanes

    def timeline(self, ax: Any, lanes: list[tuple[str, list[Segment]]]) -> None:
        if not lanes:
            ax.text(0.5, 0.5, "no worker ran an evaluation", ha="center", va="center",
                    transform=ax.transAxes)
            return
        thin = len(self.table.segments) > 3000  # bar edges would hide short bars
        # an instant failure stays visible in a sparse timeline; in a dense one a minimum
        # width would paint rare outcomes over most of the picture, so bars keep their width
        least = 0.0 if thin else self.table.wall_time / self.scale * 0.003
        workers = self.table.workers
        lost_x, lost_y, again_x, again_y = [], [], [], []
        for y, (label, segs) in enumerate(lanes):
            spans = workers[label.split(" #")[0]].spans if label.split(" #")[0] in workers else []
            ax.broken_barh([(self._t(a), (b - a) / self.scale) for a, b in spans], (y - 0.45, 0.9),
                           color="#ececec", zorder=0)
            groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for s in segs:
                end = s.t1 if s.t1 is not None else (self.table.t_last or s.t0)
                groups[s.outcome].append((self._t(s.t0), max(least, (end - s.t0) / self.scale)))
                if s.outcome in ("lost", "superseded"):
                    lost_x.append(self._t(end))
                    lost_y.append(y)
                if s.attempt > 0:
                    again_x.append(self._t(s.t0))
                    again_y.append(y)
            for outcome, bars in groups.items():
                ax.broken_barh(bars, (y - 0.35, 0.7), color=COLORS.get(outcome, "#444444"),
                               edgecolor="none" if thin else "white", lw=0 if thin else 0.4)
        if lost_x:
            ax.plot(lost_x, lost_y, "X", color="black", ms=7, zorder=3)
        if again_x:
            ax.plot(again_x, again_y, ">", color="black", ms=6, zorder=3)
        self._timeline_axes(ax, lanes, bool(lost_x), bool(again_x))

    def _timeline_axes(self, ax: Any, lanes: list[tuple[str, list[Segment]]],
                       lost: bool, again: bool) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        step = max(1, len(lanes) // 40)  # at most ~40 labels
        ax.set_yticks(range(0, len(lanes), step))
        ax.set_yticklabels([lanes[i][0] for i in range(0, len(lanes), step)], fontsize=8)
        ax.set_ylim(len(lanes) - 0.5, -0.5)
        ax.set_xlim(0, max(self.table.wall_time / self.scale, 1e-9) * 1.01)
        ax.set_xlabel(f"wall time since the run started ({self.unit})")
        ax.set_ylabel("worker")
        ax.grid(axis="x", alpha=0.3)
        tb = self.table
        busy = sum(w.busy for w in tb.workers.values())
        cap = sum(w.connected * w.slots for w in tb.workers.values())
        share = f"busy {100 * busy / cap:.0f} % of their connected time" if cap > 0 else ""
        ax.set_title(f"worker timeline: one bar per evaluation attempt, {len(tb.workers)} "
                     f"workers, {share}")
        seen = {s.outcome for s in tb.segments}
        handles: list[Any] = [Patch(color=COLORS[k], label=k) for k in COLORS
                              if k in seen and k != "superseded"]
        handles.append(Patch(color="#ececec", label="connected, idle"))
        if lost:
            handles.append(Line2D([], [], ls="", marker="X", color="black",
                                  label="worker lost (attempt ends)"))
        if again:
            handles.append(Line2D([], [], ls="", marker=">", color="black",
                                  label="re-queued attempt starts"))
        from matplotlib.transforms import offset_copy

        # below the tick labels and the axis label, whatever the panel's height
        below = offset_copy(ax.transAxes, fig=ax.figure, y=-30, units="points")
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0),
                  bbox_transform=below, ncol=len(handles), fontsize=8, frameon=False)

    # ------------------------------------------------------------------ partials
    def partials(self, fig: Any, ax: Any) -> None:
        curves = self.table.partial_steps
        if not curves:
            ax.text(0.5, 0.5, "no partial results in this log", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            return
        ids = sorted(curves)
        shown = ids[:: max(1, -(-len(ids) // MAX_CURVES))]
        rows = self.table.rows
        finals = [v for i in shown if rows[i].status == "completed"
                  and (v := rows[i].value) is not None]
        import matplotlib as mpl

        norm = mpl.colors.Normalize(min(finals), max(finals)) if finals else None
        cmap = mpl.colormaps["viridis"]
        for eid in shown:
            pts = sorted(curves[eid])
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            row = rows[eid]
            mark = "o" if len(xs) < 30 else None  # one-point curves stay visible
            if row.status == "completed" and row.value is not None and norm is not None:
                ax.plot(xs, ys, ls="-", marker=mark, ms=3, color=cmap(norm(row.value)), lw=1,
                        alpha=0.8)
            else:
                ax.plot(xs, ys, ls=":" if row.status == "failed" else "--", marker=mark, ms=3,
                        lw=1, color=COLORS.get(row.status, "#9e9e9e"), alpha=0.8)
        if norm is not None:
            fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                         label="final value (completed)")
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        top = max(p[0] for eid in shown for p in curves[eid])
        if top < 5:  # few steps: whole-number ticks with room on both sides
            ax.set_xlim(-0.5, top + 0.5)
            ax.set_xticks(range(top + 1))
        ax.set_xlabel("partial-result step (0 = first report)")
        ax.set_ylabel("partial value reported")
        note = f" ({len(shown)} of {len(ids)} shown)" if len(shown) < len(ids) else ""
        ax.set_title("partial results per evaluation: solid = completed (colour: final value), "
                     f"dashed = killed, dotted = failed, grey = running{note}", fontsize=11)
        ax.grid(alpha=0.3)


def plot(table: LogTable, name: str, panels: list[str], out: str) -> None:
    """Render the chosen panels of ``table`` to the PNG file ``out``."""
    Figure(table, name, panels).render(out)
