"""The results as JSON (everything), Markdown (the tables, for the README) and a PNG chart (the scaling sweep).

All three are written atomically: a temp file beside the target, then os.replace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinygrad_np.files import write_atomic

# (section, ratio column, limit, what it means): the targets, all "at most".
TARGETS = (
    ("full_batch", "tinygrad_np / numpy", 1.10, "full-batch step vs hand-written NumPy backprop"),
    ("minibatch", "tinygrad_np / pytorch", 1.0, "mini-batch epoch vs PyTorch"),
    ("overhead", "tinygrad_np / pytorch", 1.0, "per-op overhead vs PyTorch"),
    ("peak_memory", "tinygrad_np / pytorch", 1.5, "peak training memory vs PyTorch"),
    ("cnn_epoch", "tinygrad_np / pytorch", 2.0, "CNN epoch vs PyTorch"),
    ("cnn_memory", "tinygrad_np / pytorch", 1.5, "peak CNN training memory vs PyTorch"),
    ("busy", "split / BLAS's own, idle", 1.05, "idle machine: split products vs BLAS's own threads, the old default"),
    ("busy", "loaded / idle, split", 2.0, "one busy process per core vs idle, with split products"),
)


def check_targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per target and table row: the measured ratio, the limit, and whether it was met."""
    checked = []
    for name, column, limit, meaning in TARGETS:
        if name not in sections:
            continue
        for entry in sections[name]["rows"]:
            measured = entry["cells"].get(column)
            ok = isinstance(measured, float)
            checked.append({
                "target": f"{meaning} ({entry['label']})",
                "ratio": column,
                "measured": measured if ok else None,
                "limit": limit,
                "met": (measured <= limit) if ok else None,
            })
    return checked


# ---- JSON -----------------------------------------------------------------------------------------------


def write_json(results: dict[str, Any], path: Path) -> Path:
    text = json.dumps(results, indent=2, allow_nan=False)
    return write_atomic(path, lambda file: file.write(text.encode("utf-8") + b"\n"))


# ---- Markdown -------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if magnitude >= 0.1 else f"{value:.3g}"


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict) and "median" in value:
        return f"{_number(value['median'])} ({_number(value['q1'])}-{_number(value['q3'])})"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}x" if " / " in column else _number(value)
    return str(value).replace("|", "\\|")


def _table(section: dict[str, Any]) -> list[str]:
    columns = section["columns"]
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for entry in section["rows"]:
        cells = [_cell(entry["cells"].get(column), column) for column in columns]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return lines


def _threads_text(count: int | None) -> str | None:
    """'1 thread', '2 threads', or None when the count is unknown."""
    return None if count is None else f"{count} thread{'s' if count != 1 else ''}"


def _pool_text(pool: dict[str, Any]) -> str:
    """'openblas 0.3.31 (libscipy_openblas, SkylakeX kernels, 2 threads)'"""
    name = " ".join(str(part) for part in (pool.get("internal_api"), pool.get("version")) if part)
    kernels = f"{pool['architecture']} kernels" if pool.get("architecture") else None
    details = [part for part in (pool.get("prefix"), kernels, _threads_text(pool.get("num_threads"))) if part]
    return f"{name} ({', '.join(details)})"


def _environment_lines(env: dict[str, Any]) -> list[str]:
    machine = env["machine"]
    blas = env["blas"]
    if blas.get("source") == "threadpoolctl":
        blas_text = "; ".join(_pool_text(pool) for pool in blas["pools"])
    else:
        blas_text = f"{blas.get('name')} {blas.get('version')} ({blas.get('configuration')})"
    variables = ", ".join(f"{k}={v}" for k, v in env["thread_variables"].items() if v is not None) or "none set"
    # The 1-minute load decays over minutes, so the end reading still counts the busy section's own processes.
    own = env.get("own_busy_processes", 0)
    end = env.get("load_average_end")
    loads = [machine["load_average"][0]] if machine["load_average"] else []
    if end:
        loads.append(max(end[0] - own, 0.0))
    busy = (
        [f"- **the machine was busy** (1-minute load up to {max(loads):.1f} on {machine['usable_cores']} cores"
         + (f", not counting the benchmark's own {own} busy processes" if own else "")
         + "): other work competed for the cores, so expect wide ranges; rerun on a quiet machine"]
        if loads and max(loads) > machine["usable_cores"]
        else []
    )
    return [
        *busy,
        f"- date: {env['date']}; mode: {env['mode']}; data: {env['data']}",
        f"- machine: {machine['cpu']}, {machine['usable_cores']} usable cores ({machine['platform']})",
        f"- load average (1/5/15 min) at start: {machine['load_average'] or 'n/a'}, "
        f"at end: {end or 'n/a'}" + (f" (counting the busy section's own {own} busy processes)" if own else ""),
        f"- Python {env['python']}, NumPy {env['numpy']}, tinygrad_np {env['tinygrad_np']}, PyTorch {env['torch']}"
        + (f" ({_threads_text(env['torch_threads'])})" if env["torch_threads"] is not None else ""),
        f"- BLAS: {blas_text}; thread variables: {variables}",
    ]


def section_markdown(section: dict[str, Any]) -> str:
    """One benchmark's table under its title, with its unit and notes."""
    lines = [f"## {section['title']}", "", f"Unit: {section['unit']}.", "", *_table(section), ""]
    return "\n".join(lines + [f"- {note}" for note in section["notes"]])


def markdown(results: dict[str, Any]) -> str:
    lines = ["# tinygrad_np benchmarks", "", *_environment_lines(results["environment"]), ""]
    lines += ["Cells: median over interleaved rounds (interquartile range). Ratios compare medians.", ""]
    if results["targets"]:
        lines += ["## Targets", "", "| target | measured | limit | met |", "|---|---:|---:|---|"]
        for target in results["targets"]:
            measured = "n/a" if target["measured"] is None else f"{target['measured']:.2f}x"
            met = {True: "yes", False: "**no**", None: "not measured"}[target["met"]]
            lines.append(f"| {target['target']} | {measured} | ≤ {target['limit']:.2f}x | {met} |")
        lines.append("")
    else:
        lines += ["Targets are judged in full mode only: quick mode checks that everything runs, not how fast.", ""]
    for section in results["sections"].values():
        lines += [section_markdown(section), ""]
    if results.get("skipped"):
        lines += ["## Not run", ""] + [f"- {name}: {why}" for name, why in results["skipped"].items()] + [""]
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path) -> Path:
    text = markdown(results)
    return write_atomic(path, lambda file: file.write(text.encode("utf-8")))


# ---- the chart ------------------------------------------------------------------------------------------

COLORS = {"tinygrad_np": "#1f77b4", "numpy": "#2ca02c", "pytorch": "#d62728"}
NAMES = {"tinygrad_np": "tinygrad_np", "numpy": "NumPy", "pytorch": "PyTorch"}


def chart_title(scaling: dict[str, Any], machine: str) -> str:
    """'tinygrad_np vs NumPy vs PyTorch, AMD EPYC', naming only the contenders the sweep measured."""
    measured = {name for entry in scaling["rows"] for name in entry["cells"]}
    return " vs ".join(NAMES[name] for name in COLORS if name in measured) + f", {machine}"


def scaling_chart(scaling: dict[str, Any], path: Path, machine: str) -> Path:
    """Two log-log panels: ms per step against batch size, and against hidden width. Matplotlib's Agg only."""
    from matplotlib.figure import Figure  # the `plot` extra; Figure + Agg: no pyplot state, no display

    figure = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    panels = figure.subplots(1, 2)
    for axes, sweep, key, label in (
        (panels[0], "batch", "batch_size", "batch size"),
        (panels[1], "hidden", "hidden_size", "hidden width"),
    ):
        rows = [entry for entry in scaling["rows"] if entry.get("sweep") == sweep]
        for contender, color in COLORS.items():
            measured = [entry for entry in rows if contender in entry["cells"]]
            points = [(entry[key], entry["cells"][contender]["median"]) for entry in measured]
            if points:
                axes.plot(*zip(*points, strict=True), "-o", color=color, label=contender, markersize=4)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        sizes = sorted({entry[key] for entry in rows})
        axes.set_xticks(sizes, [str(size) for size in sizes])
        axes.minorticks_off()
        axes.set_xlabel(label)
        axes.set_ylabel("ms per step")
        fixed = rows[0]["hidden_size" if sweep == "batch" else "batch_size"] if rows else "?"
        axes.set_title(f"784-h-10 MLP, Adam: {label} ({'hidden' if sweep == 'batch' else 'batch'} {fixed})")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle(chart_title(scaling, machine))
    return write_atomic(path, lambda file: figure.savefig(file, format="png"))
