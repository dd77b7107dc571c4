"""A benchmark run's output: CSV, JSON, Markdown and config.json files, and the terminal tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..analysis.complexity import MODELS
from .config import NOISY

__all__ = ["write_results", "render_timing", "render_memory", "timing_markdown", "memory_markdown",
           "machine_line", "gemm_line"]


def write_results(results: dict, out_dir, command: str | None = None) -> dict:
    """Write <name>.csv, <name>.json, <name>.md and config.json into ``out_dir`` (created).

    ``name`` is "bench" for a timing run and "memory" for a memory run; the
    Markdown file holds the tables, ready for a README, headed by ``command``.
    Returns the paths written, by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = "bench" if results["kind"] == "time" else "memory"
    paths = {"csv": out / f"{name}.csv", "json": out / f"{name}.json",
             "markdown": out / f"{name}.md", "config": out / "config.json"}
    markdown = (timing_markdown if results["kind"] == "time" else memory_markdown)(results, command)
    paths["markdown"].write_text(markdown, encoding="utf-8")
    rows = results["points"]
    if rows:
        columns = list(rows[0])
        with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    else:
        paths["csv"].write_text("", encoding="utf-8")
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=str)
        f.write("\n")
    with open(paths["config"], "w", encoding="utf-8") as f:
        json.dump({**results["config"], "command": command}, f, indent=2, default=str)
        f.write("\n")
    return paths


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.3g}"


def _spread(row, side) -> str:
    return f"{_ms(row[f'{side}_p10_s'])}–{_ms(row[f'{side}_p90_s'])}"


def _pct(share) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def _ratio_style(ratio) -> str:
    if ratio is None:
        return ""
    return "green" if ratio <= 0.8 else ("yellow" if ratio <= 1.25 else "red")


LABELS = {"torch": "torch", "jax": "jax", "reference": "ref"}  # short column names


def _peers(results: dict) -> list[str]:
    """The peers of a run (a run written before "peers" existed: torch or none)."""
    return results.get("peers", ["torch"] if results["vs"] == "torch" else [])


def _ratio_key(peer: str) -> str:
    return "ratio" if peer == "torch" else f"ratio_{peer}"


def _timing_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the per-point table (shared by the terminal and Markdown).

    One "ms / p10–p90 / ratio" triple per peer: "ratio" is rnnlab / torch, "÷ jax" and
    "÷ ref" rnnlab / jax and rnnlab / its NumPy reference; GF/s for rnnlab and torch."""
    peers = _peers(results)
    with_torch = "torch" in peers
    header = ["model", "d", "n", "m", "T", "MFLOP", "rnnlab ms", "p10–p90"]
    for peer in peers:
        header += [f"{LABELS[peer]} ms", "p10–p90",
                   "ratio" if peer == "torch" else f"÷ {LABELS[peer]}"]
    header += ["rnnlab GF/s", "%peak"]
    if with_torch:
        header += ["torch GF/s", "%peak"]
    header += ["others"]
    rows = []
    for r in results["points"]:
        cells = [r["model"], str(r["d"]), str(r["n"]), str(r["m"]), str(r["T"]),
                 f"{r['flops'] / 1e6:.3g}", _ms(r["rnnlab_median_s"]), _spread(r, "rnnlab")]
        for peer in peers:
            cells += [_ms(r[f"{peer}_median_s"]), _spread(r, peer), f"{r[_ratio_key(peer)]:.2f}"]
        cells += [f"{r['rnnlab_gflops']:.3g}", _pct(r["rnnlab_peak_share"])]
        if with_torch:
            cells += [f"{r['torch_gflops']:.3g}", _pct(r["torch_peak_share"])]
        other = r.get("other_load")
        cells.append("–" if other is None else f"{other:.2f}")
        rows.append(cells)
    return header, rows


def _peer_summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Per model and peer: the geometric mean, worst and best of rnnlab / peer."""
    header = ["model", "rnnlab / …", "geomean", "worst (d, n, m, T)", "best (d, n, m, T)"]
    rows = []
    for model, s in results["summary"].items():
        for peer, p in s.get("peers", {}).items():
            w, b = p["worst"], p["best"]
            rows.append([model, peer, f"{p['geomean_ratio']:.2f}",
                         f"{w['ratio']:.2f} ({w['d']}, {w['n']}, {w['m']}, {w['T']})",
                         f"{b['ratio']:.2f} ({b['d']}, {b['n']}, {b['m']}, {b['T']})"])
    return header, rows


def _summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    header = ["model", "points", "noisy", "geomean ratio", "worst ratio (d, n, m, T)",
              "best ratio (d, n, m, T)", "largest point (d, n, m, T)", "rnnlab %peak",
              "torch %peak", "rnnlab %local", "torch %local"]
    rows = []
    for model, s in results["summary"].items():
        if s["geomean_ratio"] is None:
            continue
        w, b, big = s["worst"], s["best"], s["largest"]
        rows.append([model, str(s["points"]), str(s.get("noisy_points", 0)),
                     f"{s['geomean_ratio']:.2f}",
                     f"{w['ratio']:.2f} ({w['d']}, {w['n']}, {w['m']}, {w['T']})",
                     f"{b['ratio']:.2f} ({b['d']}, {b['n']}, {b['m']}, {b['T']})",
                     f"({big['d']}, {big['n']}, {big['m']}, {big['T']})",
                     _pct(big["rnnlab_peak_share"]), _pct(big["torch_peak_share"]),
                     _pct(big.get("rnnlab_local_share")), _pct(big.get("torch_local_share"))])
    return header, rows


def machine_line(results: dict) -> str:
    """One line of machine facts: CPU, threads, numpy and its BLAS, torch, jax."""
    m = results["machine"]
    blas = ", ".join(f"{b['library']} {b['version']} ({b['kernel']})" for b in m["blas"]) or "?"
    load = m.get("loadavg")
    line = (f"{m['cpu_model']}, {m['usable_cpus']} usable CPUs, {m['threads']} threads; "
            f"Python {m['python']}, numpy {m['numpy']} on {blas}; torch {m['torch'] or 'not used'}; "
            + (f"jax {m['jax']} ({m.get('jax_threads_note') or 'XLA default threads'}); "
               if m.get("jax") else "")
            + f"rnnlab backend {m.get('rnnlab_backend', 'numpy')}"
            + (f" (numba {m['numba']})" if m.get("numba") else "")
            + (f"; load average {load[0]:.2f} at the start" if load else ""))
    if m.get("env", {}).get("OPENBLAS_CORETYPE"):
        line += f"; OPENBLAS_CORETYPE={m['env']['OPENBLAS_CORETYPE']}"
    return line


def gemm_line(results: dict) -> str:
    """The GEMM peak, and what %peak and %local divide by."""
    gemm = results["gemm"]
    local = [r["gemm_local_gflops"] for r in results["points"] if r.get("gemm_local_gflops")]
    return (f"float32 GEMM ({gemm['start']['size']}², NumPy): {gemm['start']['gflops']:.1f} "
            f"GFLOP/s at the start, {gemm['end']['gflops']:.1f} at the end; peak "
            f"{gemm['peak_gflops']:.1f} GFLOP/s (%peak)"
            + ("; %local: the same GEMM timed in the rounds of the largest point of each model, "
               + ", ".join(f"{g:.1f}" for g in local) + " GFLOP/s" if local else ""))


def render_timing(results: dict, console) -> None:
    """Print the machine line, the per-point table and the per-model summary."""
    from rich.markup import escape
    from rich.table import Table

    console.print(escape(machine_line(results)))
    console.print(escape(gemm_line(results)))
    load = results["machine"].get("loadavg")
    if load and load[0] > 1.0:
        console.print(f"[yellow]the machine was busy (load average {load[0]:.2f} at the start): "
                      f"other work skews absolute times, and thread pools that wait on a busy "
                      f"core can skew ratios too[/]")
    if not _peers(results):
        console.print("[yellow]no peer: rnnlab timed alone[/]")
    header, rows = _timing_rows(results)
    table = Table(title=f"One training step, grid {results['config']['grid']}: median and "
                        f"p10–p90 in ms; ratio = rnnlab / torch, ÷ x = rnnlab / x (ref: "
                        f"rnnlab's NumPy reference loops); GF/s from the GEMM work each side does; others = cores busy with other processes meanwhile")
    for col in header:
        table.add_column(col, justify="left" if col == "model" else "right")
    ratio_at = {_ratio_key(p): header.index("ratio" if p == "torch" else f"÷ {LABELS[p]}")
                for p in _peers(results)}
    for r, cells in zip(results["points"], rows):
        cells = list(cells)
        for key, at in ratio_at.items():
            cells[at] = f"[{_ratio_style(r[key])}]{cells[at]}[/]"
        if (r.get("other_load") or 0) > NOISY:
            cells[-1] = f"[red]{cells[-1]}[/]"
        table.add_row(*cells)
    console.print(table)
    noisy = sum(1 for r in results["points"] if (r.get("other_load") or 0) > NOISY)
    if noisy:
        console.print(f"[yellow]{noisy} point(s) ran while other processes kept more than "
                      f"{NOISY} of a core busy: rerun them on a quiet machine[/]")
    if results["vs"] == "torch":
        header, rows = _summary_rows(results)
        summary = Table(title="Per model: rnnlab / torch, and the share of the GEMM: of the run's "
                              "peak (%peak) and of the same GEMM in the point's rounds (%local)")
        for col in header:
            summary.add_column(col, justify="left" if col == "model" else "right")
        for cells in rows:
            summary.add_row(*cells)
        console.print(summary)
    if len(_peers(results)) > 1 or (_peers(results) and "torch" not in _peers(results)):
        header, rows = _peer_summary_rows(results)
        by_peer = Table(title="Per model and peer: rnnlab's step time over the peer's")
        for col in header:
            by_peer.add_column(col, justify="left" if col == "model" else "right")
        for cells in rows:
            by_peer.add_row(*cells)
        console.print(by_peer)


def _markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if h == "model" else "---:" for h in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def _ratio_matrices(results: dict, peer: str = "torch") -> list[str]:
    """Per model, rnnlab / ``peer`` as a matrix: rows (d, n), columns (m, T); empty cells are
    absent points."""
    out, key = [], _ratio_key(peer)
    for model in MODELS:
        rows = [r for r in results["points"] if r["model"] == model and r.get(key) is not None]
        if len(rows) < 2:
            continue
        by_key = {(r["d"], r["n"], r["m"], r["T"]): r[key] for r in rows}
        row_keys = sorted({(r["d"], r["n"]) for r in rows})
        col_keys = sorted({(r["m"], r["T"]) for r in rows})
        header = ["d", "n"] + [f"m={m} T={T}" for m, T in col_keys]
        cells = [[str(d), str(n)] + [("" if (d, n, m, T) not in by_key else f"{by_key[d, n, m, T]:.2f}")
                                     for m, T in col_keys] for d, n in row_keys]
        what = "its NumPy reference" if peer == "reference" else peer
        out.append(f"**{model.upper()}**: rnnlab / {what} step time\n\n"
                   + _markdown_table(header, cells))
    return out


def timing_markdown(results: dict, command: str | None = None) -> str:
    """The run as Markdown: machine facts, the GEMM peak, the per-point and summary tables."""
    parts = []
    if command:
        parts.append(f"```\n{command}\n```")
    parts.append(f"- Machine: {machine_line(results)}\n- {gemm_line(results)}\n"
                 f"- Started {results['started']}, {results['elapsed_s']:.0f} s")
    peers = _peers(results)
    if "torch" in peers:
        parts.append(_markdown_table(*_summary_rows(results)))
    if peers:
        parts.append(_markdown_table(*_peer_summary_rows(results)))
    for peer in peers:
        parts.extend(_ratio_matrices(results, peer))
    parts.append(_markdown_table(*_timing_rows(results)))
    if not peers:
        parts.append("No peer: rnnlab timed alone.")
    return "\n\n".join(parts) + "\n"


def _memory_rows(results: dict):
    header = ["model", "d", "n", "m", "T", "traced peak MiB", "BPTT minimum MiB", "ratio",
              "parameters MiB"]
    rows = [[r["model"], str(r["d"]), str(r["n"]), str(r["m"]), str(r["T"]), _mb(r["peak_bytes"]),
             _mb(r["min_bytes"]), f"{r['ratio']:.2f}", _mb(r["param_bytes"])]
            for r in results["points"]]
    return header, rows


def memory_markdown(results: dict, command: str | None = None) -> str:
    parts = [f"```\n{command}\n```"] if command else []
    parts.append(f"- Machine: {machine_line(results)}\n- Method: {results['method']}")
    parts.append(_markdown_table(*_memory_rows(results)))
    return "\n\n".join(parts) + "\n"


def _mb(nbytes) -> str:
    return f"{nbytes / 2 ** 20:.3g}"


def render_memory(results: dict, console) -> None:
    """Print the per-point memory table and the per-model summary."""
    from rich.table import Table

    header, rows = _memory_rows(results)
    table = Table(title=f"Peak traced memory of an rnnlab training step, grid "
                        f"{results['config']['grid']}; target ratio <= 1.5")
    for col in header:
        table.add_column(col, justify="left" if col == "model" else "right")
    ratio_at = header.index("ratio")
    for r, cells in zip(results["points"], rows):
        style = "green" if r["ratio"] <= 1.5 else "red"
        cells[ratio_at] = f"[{style}]{cells[ratio_at]}[/]"
        table.add_row(*cells)
    console.print(table)
    for model, s in results["summary"].items():
        w = s["worst"]
        console.print(f"{model}: geometric mean {s['geomean_ratio']:.2f}× the minimum, worst "
                      f"{w['ratio']:.2f}× at d={w['d']} n={w['n']} m={w['m']} T={w['T']}")
