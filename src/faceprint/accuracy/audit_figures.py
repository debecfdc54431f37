"""Matplotlib figures of the audit report, drawn from the computed results only (PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def det_figure(section: dict, title: str, path: Path) -> str:
    """DET curves (FNMR vs FMR, log-log) per group, with the operating points of each threshold marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    markers = ["o", "s", "^", "D"]
    plotted = False
    for c, (label, curve) in enumerate(section["det"].items()):
        color = "k" if label == "all" else COLORS[c % len(COLORS)]
        fmr, fnmr = np.array(curve["fmr"]), np.array(curve["fnmr"])
        ok = (fmr > 0) & (fnmr > 0)
        plotted = plotted or bool(ok.any())
        people = section["by_threshold"][next(iter(section["by_threshold"]))]["rows"][label]["people"]
        ax.plot(
            fmr[ok],
            fnmr[ok],
            color=color,
            lw=1.6 if label == "all" else 1.2,
            label=f"{label} ({people} people)",
        )
        for m, block in enumerate(section["by_threshold"].values()):
            row = block["rows"][label]
            if row["fmr"] and row["fnmr"]:
                ax.plot(row["fmr"], row["fnmr"], markers[m % 4], color=color, ms=6, mfc="none")
    for m, (name, block) in enumerate(section["by_threshold"].items()):
        ax.plot(
            [],
            [],
            markers[m % 4],
            color="gray",
            mfc="none",
            label=f"{name} (Similarity {block['threshold']:g})",
        )
    if plotted:
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no errors of both kinds: no DET curve", ha="center", transform=ax.transAxes)
    ax.set_xlabel("false match rate (impostor pairs within the group)")
    ax.set_ylabel("false non-match rate (per person)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="lower left")
    return _save(fig, path)


def rates_figure(section: dict, threshold_name: str, title: str, path: Path) -> str:
    """FMR (log scale) and FNMR per group at one threshold: point estimates with 95% bootstrap intervals.

    A group with no errors is drawn as an open marker on the lower edge, with its interval's upper end.
    """
    block = section["by_threshold"][threshold_name]
    rows, threshold = block["rows"], block["threshold"]
    labels = list(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, name in ((axes[0], "fmr", "FMR"), (axes[1], "fnmr", "FNMR per person")):
        positive = [rows[g][key] for g in labels if rows[g][key]] + [
            rows[g][f"{key}_ci95"][1] for g in labels if rows[g][f"{key}_ci95"][1]
        ]
        floor = min(positive) / 3 if positive else 1e-6
        for i, g in enumerate(labels):
            v, (lo, hi) = rows[g][key], rows[g][f"{key}_ci95"]
            color = "k" if g == "all" else COLORS[i % len(COLORS)]
            if v is None:
                ax.text(i, 0.5, "n/a", ha="center", transform=ax.get_xaxis_transform(), fontsize=8)
                continue
            shown = v if v > 0 else floor
            if lo is not None and hi is not None:
                ax.plot([i, i], [max(lo, floor), max(hi, floor)], color=color, lw=2, alpha=0.6)
                ax.plot([i - 0.12, i + 0.12], [max(hi, floor)] * 2, color=color, lw=2, alpha=0.6)
            ax.plot(i, shown, "o" if v > 0 else "v", color=color, ms=8, mfc=color if v > 0 else "white")
            ax.annotate(
                f"{v:.2g}", (i, shown), textcoords="offset points", xytext=(10, 0), fontsize=8, va="center"
            )
        ax.set_yscale("log")
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xticks(range(len(labels)), [f"{g}\n({rows[g]['people']} people)" for g in labels], fontsize=8)
        ax.set_title(f"{name} at {threshold_name} (Similarity {threshold:g})", fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.25)
    fig.suptitle(title + " (95% bootstrap intervals over people; v = no errors observed)", fontsize=10)
    return _save(fig, path)


def calibration_figure(table, thresholds: dict[str, float], path: Path) -> str:
    """The shipped calibration: FMR (measured, then fitted tail) and FNMR against Similarity."""
    s = np.linspace(40, 100, 601)
    fmr = np.array([table.false_match_rate(v) for v in s])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    measured = s < table.tail_from
    ax.semilogy(s[measured], fmr[measured], color="tab:red", label="FMR, measured (LFW impostor pairs)")
    ax.semilogy(
        s[~measured], fmr[~measured], color="tab:red", ls="--", label="FMR, fitted tail (extrapolated)"
    )
    fnmr = np.array([table.false_non_match_rate(v) for v in s])
    ax.semilogy(s, np.maximum(fnmr, 1e-7), color="tab:green", label="FNMR (LFW genuine pairs)")
    for i, (name, t) in enumerate(thresholds.items()):
        ax.axvline(t, color=COLORS[i % len(COLORS)], ls=":", label=f"{name}: {t:g}")
    ax.set_ylim(1e-12, 1.5)
    ax.set_xlabel("Similarity")
    ax.set_ylabel("rate")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5)
    ax.set_title("What a Similarity score means (shipped calibration table)", fontsize=10)
    return _save(fig, path)


def proportion_figure(facets: dict[str, list[dict]], title: str, ylabel: str, path: Path) -> str:
    """One panel per facet: a proportion per group with its Wilson 95% interval."""
    fig, axes = plt.subplots(1, len(facets), figsize=(4.2 * len(facets), 3.6), squeeze=False)
    for ax, (facet, rows) in zip(axes[0], facets.items(), strict=True):
        for i, r in enumerate(rows):
            v, (lo, hi) = r["rate"] or 0.0, r["ci95"]
            color = "k" if r["group"] == "all" else COLORS[i % len(COLORS)]
            ax.bar(i, v, color=color, alpha=0.55)
            if lo == lo:  # not NaN
                ax.errorbar(i, v, yerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], color="k", capsize=4)
            ax.text(i, v, f"{100 * v:.1f}%", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rows)), [f"{r['group']}\n(n={r['n']})" for r in rows], fontsize=8)
        lows = [r["ci95"][0] for r in rows if r["ci95"][0] == r["ci95"][0]]
        if lows and min(lows) > 0.5:  # zoom in on rates near 1 (detection)
            ax.set_ylim(max(0.0, min(lows) - 0.05), 1.005)
        ax.set_title(facet, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, axis="y", alpha=0.25)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def best_score_figure(
    best_nonmate: np.ndarray, labels: list[str], thresholds: dict[str, float], path: Path
) -> str:
    """Distribution of each probe's highest score against people who are not them, per group."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    lab = np.array(labels)
    bins = np.linspace(min(50.0, float(best_nonmate.min())), 100, 60)
    for i, g in enumerate(sorted(set(labels))):
        ax.hist(
            best_nonmate[lab == g],
            bins=bins,
            histtype="step",
            lw=1.5,
            color=COLORS[i],
            label=f"{g} ({(lab == g).sum()})",
        )
    for i, (name, t) in enumerate(thresholds.items()):
        ax.axvline(t, color=COLORS[(i + 3) % len(COLORS)], ls=":", label=f"{name}: {t:g}")
    ax.set_xlabel("highest Similarity to a different person in the gallery")
    ax.set_ylabel("members")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.25)
    ax.set_title("Congress portraits vs LFW: closest impostor per member", fontsize=10)
    return _save(fig, path)
