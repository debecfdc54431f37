"""HTML template of the audit report: every number is read from the computed results dict."""

from __future__ import annotations

from html import escape

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
code,pre{background:#f6f6f6;padding:.1em .3em;border-radius:3px}pre{padding:.6em;overflow-x:auto}
.note{color:#555;font-size:.9em}.warn{color:#a33}
"""


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if v != v:  # NaN
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e6:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _pct(v, digits: int = 1) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.{digits}f}%"


def _ci(ci, fmt=_num) -> str:
    if not ci or ci[0] is None or ci[0] != ci[0]:
        return ""
    return f" [{fmt(ci[0])}, {fmt(ci[1])}]"


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def img(name: str, alt: str) -> str:
    return f'<img src="{escape(name)}" alt="{escape(alt)}">'


def _ratio(r: dict) -> str:
    if r["ratio"] is None:
        return f"no ratio ({escape(r['note'])})"
    return f"{r['ratio']:.2f} (worst {escape(r['worst'])}, best {escape(r['best'])})"


def verification_section(sec: dict, title: str, fig_det: str, fig_rates: str) -> str:
    parts = [f"<h3>{escape(title)}</h3>"]
    parts.append(
        f"<p>{_num(sec['images_scored'])} images with a detected face scored "
        f"({_num(sec['images_without_face'])} without one are left out): "
        f"{_num(sec['pairs']['genuine'])} genuine and {_num(sec['pairs']['impostor'])} impostor pairs. "
        "TAR at FMR (all pairs): "
        + ", ".join(
            f"{k}: {_pct(v['tar'], 2)} (Similarity {_num(v['threshold'], 4)})"
            for k, v in sec["tar_at_fmr"].items()
        )
        + "</p>"
    )
    for name, block in sec["by_threshold"].items():
        rows = []
        for g, r in block["rows"].items():
            rows.append(
                [
                    g,
                    _num(r["people"]),
                    _num(r["images"]),
                    _pct(r.get("no_face_rate"), 2),
                    _num(r["impostor_pairs"]),
                    _num(r["false_matches"]),
                    _num(r["fmr"]) + _ci(r["fmr_ci95"]),
                    _num(r["people_with_genuine_pairs"]),
                    _num(r["genuine_pairs"]),
                    _pct(r["fnmr"], 2) + _ci(r["fnmr_ci95"], lambda v: _pct(v, 2)),
                ]
            )
        parts.append(f"<h4>At {escape(name)}: Similarity {_num(block['threshold'], 4)}</h4>")
        parts.append(
            table(
                [
                    "group",
                    "people",
                    "images",
                    "no face",
                    "impostor pairs",
                    "false matches",
                    "FMR [95% CI]",
                    "people with 2+ images",
                    "genuine pairs",
                    "FNMR per person [95% CI]",
                ],
                rows,
            )
        )
        parts.append(
            f"<p>FMR worst/best ratio: {_ratio(block['fmr_ratio'])}. "
            f"FNMR worst/best ratio: {_ratio(block['fnmr_ratio'])}.</p>"
        )
    parts.append(img(fig_det, "DET curves") + img(fig_rates, "rates by group"))
    return "".join(parts)


def identification_section(idn: dict, figures: dict) -> str:
    parts = [
        f"<p>{_num(idn['members_searched'])} of {_num(idn['members'])} portraits had a detected face "
        f"(no face: {escape(', '.join(idn['members_without_face']) or 'none')}); gallery: "
        f"{escape(idn['gallery'])}, N = {_num(idn['gallery_size'])}.</p>"
    ]
    rows = []
    for name, b in idn["by_threshold"].items():
        rows.append(
            [
                name,
                _num(b["threshold"], 4),
                _num(b["estimated_fmr"]),
                _num(b["members_falsely_matched"]),
                _num(b["expected_members_falsely_matched"]),
                _num(b["false_matches"]),
                _num(b["expected_false_matches"]),
                f"{b['genuine_found']} of {b['genuine_total']}",
            ]
        )
    parts.append(
        table(
            [
                "threshold",
                "Similarity",
                "calibrated FMR",
                "members falsely matched",
                "expected (calibration)",
                "false matches",
                "expected (FMR x N)",
                "LFW mates found",
            ],
            rows,
        )
    )
    for name, b in idn["by_threshold"].items():
        parts.append(
            f"<h4>Members with at least one false match at {escape(name)} "
            f"(Similarity {_num(b['threshold'], 4)})</h4>"
        )
        for facet in ("by_gender", "by_party"):
            parts.append(
                table(
                    [facet.replace("by_", ""), "members", "falsely matched", "share [95% Wilson CI]"],
                    [
                        [r["group"], _num(r["n"]), _num(r["count"]), _pct(r["rate"]) + _ci(r["ci95"], _pct)]
                        for r in b[facet]
                    ],
                )
            )
        if b["top_false_matches"]:
            parts.append("<p>Highest-scoring false matches:</p>")
            parts.append(
                table(
                    ["member", "party", "matched LFW person", "Similarity"],
                    [
                        [e["member"], e["party"], e["lfw_person"], f"{e['similarity']:.2f}"]
                        for e in b["top_false_matches"]
                    ],
                )
            )
        if b["genuine_missed"]:
            parts.append(f"<p>LFW mates missed: {escape(', '.join(b['genuine_missed']))}</p>")
    parts.append(
        img(figures["congress_rates"], "false-match shares") + img(figures["congress_best"], "best impostor")
    )
    parts.append("<h4>Members who are also LFW people (matched by name): genuine mates</h4>")
    parts.append(
        table(
            ["member", "LFW person", "LFW images", "best mate Similarity", "rank of best mate"],
            [
                [
                    m["member"],
                    m["lfw_person"],
                    m["lfw_images"],
                    _num(m["best_mate_similarity"], 4),
                    _num(m["best_mate_rank"]),
                ]
                for m in idn["lfw_name_matches"]
            ],
        )
    )
    alt = idn["alt_photos"]
    parts.append(
        f"<h4>Alternative photos of members (voteview) searched against LFW + the portraits "
        f"(N = {_num(alt['gallery_size'])})</h4><p>{alt['searched']} of {alt['photos']} photos had a "
        f"detected face; the member's own portrait (or LFW mate) scored highest for {alt['rank1_correct']}; "
        f"median mate Similarity "
        f"{_num(alt['mate_similarity_median'], 4)}.</p>"
    )
    parts.append(
        table(
            [
                "threshold",
                "Similarity",
                "mate found",
                "mate missed",
                "false matches",
                "photos with a false match",
            ],
            [
                [
                    n,
                    _num(b["threshold"], 4),
                    b["found"],
                    b["missed"],
                    b["false_matches"],
                    b["photos_with_false_match"],
                ]
                for n, b in alt["by_threshold"].items()
            ],
        )
    )
    return "".join(parts)


def detection_section(det: dict, fig: str) -> str:
    parts = [f"<p>{_num(det['found'])} of {_num(det['images'])} crops had a detected face.</p>"]
    for facet, rows in det["rates"].items():
        ratio = det["miss_ratio"][facet]
        parts.append(f"<h4>By {escape(facet.replace('_', ' '))}</h4>")
        parts.append(
            table(
                ["group", "images", "detected", "share [95% Wilson CI]"],
                [
                    [r["group"], _num(r["n"]), _num(r["count"]), _pct(r["rate"]) + _ci(r["ci95"], _pct)]
                    for r in rows
                ],
            )
        )
        parts.append(
            "<p>Miss rate worst/best ratio: "
            + ("n/a (best group misses none)" if ratio is None else f"{ratio:.2f}")
            + "</p>"
        )
    parts.append(img(fig, "detection rates"))
    return "".join(parts)


def scoring_section(r: dict) -> str:
    """Raw against cohort-normalised scores on held-out people, and what the cohort is made of."""
    sc, summ, scorer = r["scoring"], r["summary"], r["scorer"]
    raw, norm = summ["raw"], summ
    rows = [
        [f"TAR at FMR {k}", _pct(raw["heldout_tar_at_fmr"][k]), _pct(norm["heldout_tar_at_fmr"][k])]
        for k in norm["heldout_tar_at_fmr"]
    ]
    rows.append(["1:1 default (FMR 1e-4)", _num(raw["compare_default"], 4), _num(norm["compare_default"], 4)])
    for g in ("female", "male"):
        rows.append(
            [
                f"{g}: FMR / FNMR at the 1:1 default",
                f"{_num(raw['fmr_by_gender_at_default'][g])} / {_pct(raw['fnmr_by_gender_at_default'][g])}",
                f"{_num(norm['fmr_by_gender_at_default'][g])} / {_pct(norm['fnmr_by_gender_at_default'][g])}",
            ]
        )
    rows.append(
        [
            "women/men FMR ratio at the 1:1 default",
            _num(raw["gender_fmr_ratio_at_default"]),
            _num(norm["gender_fmr_ratio_at_default"]),
        ]
    )
    rows.append(
        [
            "FNMR at the 1:N default, 10,000 faces",
            _pct(raw["fnmr_at_search_default_10000"]),
            _pct(norm["fnmr_at_search_default_10000"]),
        ]
    )
    e, er = norm["enrolment"], raw["enrolment"]
    rows.append(
        [
            f"{e['enrolled']} enrolled: rank-1 found / {e['strangers']} strangers matched, at the default",
            f"{er['rank1_found_at_default']} / {er['strangers_matched_at_default']}",
            f"{e['rank1_found_at_default']} / {e['strangers_matched_at_default']}",
        ]
    )
    c, cr = norm["congress"], raw["congress"]
    rows.append(
        [
            "Congress vs LFW at the default: members falsely matched / mates found",
            f"{cr['members_falsely_matched_at_default']} / {cr['mates_found_at_default']} of {cr['mates']}",
            f"{c['members_falsely_matched_at_default']} / {c['mates_found_at_default']} of {c['mates']}",
        ]
    )
    cohort = scorer.get("cohort") or {}
    composition = (
        f"{_num(cohort.get('faces'))} faces of {_num(cohort.get('people'))} people: "
        f"{_num(cohort.get('women_faces'))} of women, {_num(cohort.get('men_faces'))} of men"
        f"{' (gender-balanced)' if cohort.get('gender_balanced') else ''}"
    )
    return f"""<p>Scores are cohort-normalised ({escape(scorer["name"])}): each face's similarity is measured
against its closest faces in a cohort of people never searched for. Cohort: {escape(composition)},
{escape(str(cohort.get("source", "")))}. Its composition is a fairness choice: who is in the cohort decides
how strict a score is for whom (see docs/accuracy.md). Measured on the {_num(sc["people"])} people
({_num(sc["images"])} images) of LFW's held-out folds {escape(str(sc["folds"]))}, who are neither in the
cohort nor in the calibration folds.</p>
{table(["measure", "raw scores", "normalised (default)"], rows)}"""


def render(r: dict) -> str:
    """The whole report as one HTML page (figures referenced as sibling PNG files)."""
    th, cal, f = r["thresholds"], r["calibration"], r["figures"]
    versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
    limit = f'<p class="warn">Subset run: at most {r["limit"]} images per dataset.</p>' if r["limit"] else ""
    idn = r["identification"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>faceprint audit</title>
<style>{CSS}</style></head><body>
<h1>faceprint accuracy and demographic audit</h1>{limit}
<p>Generated {escape(r["generated"])} by <code>{escape(r["command"])}</code> in {
        _num(r["timings_s"]["total"], 4)
    } s
(steps: {escape(", ".join(f"{k} {v:g} s" for k, v in r["timings_s"].items() if k != "total"))}).</p>
<p class="note">Versions: {escape(versions)}. Engine: detector <code>{escape(r["engine"]["detector"])}</code>,
embedder <code>{escape(r["engine"]["embedder"])}</code>, model <code>{
        escape(r["engine"]["model_version"])
    }</code>.
Data: <code>{escape(r["data_dir"])}</code>; embedding cache <code>{escape(r["cache_dir"])}</code>
({_num(r["lfw"]["computed"])} LFW images embedded in this run).</p>
<h2>0. Raw against cohort-normalised scores</h2>
{scoring_section(r)}
<h2>What the scores mean</h2>
<p>Similarity is a fixed map of the cohort-normalised score. The shipped calibration table (generated
{escape(str(cal["generated"]))} by <code>{escape(str(cal["command"]))}</code> from {
        _num(cal["impostor_pairs"])
    } LFW
impostor pairs) turns it into an estimated false match rate; above Similarity {
        _num(cal["tail_from"], 4)
    } the rate
is extrapolated from a fitted tail. Rekognition's default 80 means FMR {_num(th["rekognition_80_fmr"])};
faceprint's 1:1 default is Similarity {_num(th["compare_default"], 4)} (FMR {
        _num(th["compare_default_fmr"])
    }).</p>
{img(f["calibration"], "calibration")}
<h2>1. Verification (1:1): demographic differentials</h2>
<p class="note">FMR counts impostor pairs with both faces in the group; FNMR is averaged per person;
95% intervals come from {_num(r["bootstrap"])} bootstrap resamples of people. Gender: LFW's held-out
people only (not in the cohort, not in the calibration folds).</p>
{
        verification_section(
            r["verification"]["gender"],
            "Gender, LFW's held-out people (Afifi & Abdelhamed labels, majority per person)",
            f["det_gender"],
            f["rates_gender"],
        )
    }
{
        verification_section(
            r["verification"]["race"],
            "Perceived race, 62-person LFW attribute subset (Kumar et al. classifier)",
            f["det_race"],
            f["rates_race"],
        )
    }
<p class="note">Perceived race per person (highest mean attribute score): {
        escape(
            ", ".join(
                f"{p.replace('_', ' ')}: {g}"
                for p, g in r["verification"]["race"]["person_labels"].items()
                if g != "White"
            )
        )
    }; all others White.</p>
<h2>2. Identification (1:N), ACLU-style: Congress vs LFW</h2>
{identification_section(idn, f)}
<h2>3. Detection by demographic group (UTKFace subset)</h2>
{detection_section(r["detection"], f["detection"])}
<h2>Reproduce</h2>
<pre>{escape(r["command"])}</pre>
<p class="note">All numbers above are computed by this run from the data folder; the full results are in
<code>audit.json</code> beside this file.</p>
</body></html>
"""
