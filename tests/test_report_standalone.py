"""fedlt report as a stand-alone document: raw markdown on stdout, grouping that ignores
cadence keys, the all-modes table, s/round, registry order and integer round ticks.

Run folders are written in the real on-disk layout of :mod:`fedlt.runs` (config.yaml as
``fedlt run`` resolves it, summary.json, metrics.jsonl, timings.json, partition.json,
status.json), so the grouping sees every key a real run has.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fedlt.cli import main
from fedlt.config import load_config
from fedlt.report import (
    DEFAULT_IGNORED,
    Grouping,
    build_report,
    curve_figure,
    find_runs,
    group_runs,
    relink_figures,
)

FEDERATED_MODES = {
    "fedavg": (["global"], ["global"]),
    "fedloge": (["gla_fr", "universal", "psi"], ["gla_fr", "local_psi_phi"]),
}


def _final(rng: np.random.Generator, generic: list[str], personal: list[str]) -> dict:
    final: dict[str, float] = {}
    for side, modes in (("generic", generic), ("personal", personal)):
        top = "top1" if side == "generic" else "top1_mean"
        for mode in modes:
            final[f"{side}.{mode}.{top}"] = float(rng.uniform(0.2, 0.9))
            if side == "personal":
                final[f"{side}.{mode}.top1_weighted"] = float(rng.uniform(0.2, 0.9))
            for band in ("many", "medium", "few"):
                for split in ("count", "mass"):
                    final[f"{side}.{mode}.{band}.{split}"] = float(rng.uniform(0, 1))
    return final


def write_run(
    folder: Path,
    overrides: list[str],
    final: dict,
    *,
    headline: dict | None = None,
    rounds: tuple[int, ...] = (1, 2, 3),
    total_s: list[float] | None = None,
) -> Path:
    """A finished federated run folder as fedlt writes it."""
    cfg = load_config(None, ["logging.progress=false", *overrides])
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    generic = next(k for k in final if k.startswith("generic.")).split(".")[1]
    personal = next(k for k in final if k.startswith("personal.")).split(".")[1]
    summary = {
        "engine": cfg.engine,
        "name": cfg.name,
        "strategy": cfg.strategy.name,
        "seed": cfg.seed,
        "status": "complete",
        "rounds": rounds[-1],
        "headline": headline or {"generic": generic, "personal": personal},
        "final": final,
        "per_class": {"generic": [0.5] * 10},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "status.json").write_text(json.dumps({"status": "complete"}))
    metrics = [{"round": r, f"generic.{generic}.top1": 0.1 * r} for r in rounds]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if total_s is not None:
        timings = [
            {"round": r, "started": 1.0e9 + r, "train_s": 0.5 * t, "total_s": t}
            for r, t in zip(rounds, total_s, strict=True)
        ]
        (folder / "timings.json").write_text(json.dumps(timings))
    counts = np.arange(30).reshape(3, 10).tolist()
    (folder / "partition.json").write_text(json.dumps({"client_class_counts": counts}))
    return folder


def write_continual_run(folder: Path, method: str, seed: int) -> Path:
    folder.mkdir(parents=True)
    config = {"engine": "continual", "seed": seed, "strategy": {"name": method, "options": {}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    final = {"A_auc": 0.5, "A_avg": 0.4, "A_last": 0.3, "F_last": 0.2}
    summary = {"engine": "continual", "seed": seed, "final": final}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    """fedavg and fedloge × 2 seeds; the seeds were run with different eval/checkpoint
    cadence, round timeout and progress setting, as a resumed or re-planned sweep would."""
    rng = np.random.default_rng(0)
    for method, (generic, personal) in FEDERATED_MODES.items():
        for seed, eval_every in ((0, 1), (1, 2)):
            write_run(
                tmp_path / "sweep" / method / f"seed-{seed}",
                [
                    f"strategy.name={method}",
                    f"seed={seed}",
                    f"name={method}-{seed}",
                    f"federated.eval_every={eval_every}",
                    f"federated.checkpoint_every={eval_every + 1}",
                    f"federated.round_timeout={60.0 * (seed + 1)}",
                    f"logging.verbose={str(bool(seed)).lower()}",
                    f"output_dir=runs/x{seed}",
                ],
                _final(rng, generic, personal),
                total_s=[1.0 + seed, 2.0 + seed, 3.0 + seed],
            )
    return tmp_path / "sweep"


def _table_blocks(markdown: str) -> list[list[str]]:
    """Consecutive runs of lines starting with ``|``."""
    blocks: list[list[str]] = []
    previous = False
    for line in markdown.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous:
            blocks.append([])
        if is_row:
            blocks[-1].append(line)
        previous = is_row
    return blocks


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _assert_rows_whole(markdown: str) -> None:
    """Every table row on one line: each row starts and ends with ``|``, has as many cells
    as its header, and no line outside a table is the tail of a wrapped row."""
    blocks = _table_blocks(markdown)
    assert blocks
    for block in blocks:
        assert len(block) >= 2, block
        assert re.fullmatch(r"\|(---\|)+", block[1]), block[:2]
        width = len(_cells(block[0]))
        for row in block:
            assert row.endswith("|"), row
            assert len(_cells(row)) == width or row == block[1], row
    assert max(len(r) for b in blocks for r in b) > 120  # rows a terminal would wrap


# -- stdout ---------------------------------------------------------------------------------
def test_piped_report_is_raw_markdown_with_whole_rows(sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["report", str(sweep), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    _assert_rows_whole(captured.out)
    saved = (out / "report.md").read_text()
    assert captured.out == relink_figures(saved, out / "figures")
    assert _table_blocks(captured.out) == _table_blocks(saved)
    assert "wrote" not in captured.out and f"files to {out}" in captured.err
    # the printed copy links the figures where they are, the saved one next to itself
    assert f"]({out.as_posix()}/figures/curves_federated_" in captured.out
    assert "](figures/curves_federated_" in saved


def test_report_redirected_to_a_file(sweep: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    with open(target, "w") as fh:
        subprocess.run(
            [sys.executable, "-m", "fedlt.cli", "report", "sweep", "--out", "rep"],
            cwd=tmp_path,
            stdout=fh,
            stderr=subprocess.PIPE,
            check=True,
            timeout=300,
        )
    text = target.read_text()
    _assert_rows_whole(text)
    assert text.startswith("# fedlt report\n")
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert figures and all((tmp_path / f).is_file() for f in figures)  # links work from here


def test_relink_figures_only_touches_image_links() -> None:
    text = "see figures/x.png\n![a](figures/a.png)\n![b](figures/b=1.png)\n"
    assert relink_figures(text, Path("out/rep/figures")) == (
        "see figures/x.png\n![a](out/rep/figures/a.png)\n![b](out/rep/figures/b=1.png)\n"
    )


# -- grouping -------------------------------------------------------------------------------
def test_grouping_ignores_eval_every_and_bookkeeping(sweep: Path, tmp_path: Path) -> None:
    runs, _ = find_runs([sweep])
    eval_every = {r.config["federated.eval_every"] for r in runs}
    assert eval_every == {1, 2}
    groups = group_runs(runs)
    assert [(g.method, len(g.runs)) for g in groups] == [("fedavg", 2), ("fedloge", 2)]
    assert {g.setting for g in groups} == {"digits IF=10 α=0.5"}
    markdown = build_report([sweep], tmp_path / "r", formats=("md",))["markdown"]
    main_table = _table_blocks(markdown)[0]
    assert [_cells(r)[0] for r in main_table[2:]] == ["fedavg", "fedloge"]


def test_group_by_separates_and_ignore_merges(sweep: Path, tmp_path: Path) -> None:
    runs, _ = find_runs([sweep])
    split = group_runs(runs, Grouping.from_options(group_by=["federated.eval_every"]))
    assert sorted((g.method, g.setting) for g in split) == [
        ("fedavg", "eval_every=1"),
        ("fedavg", "eval_every=2"),
        ("fedloge", "eval_every=1"),
        ("fedloge", "eval_every=2"),
    ]
    # a section name un-ignores all its keys
    by_logging = group_runs(runs, Grouping.from_options(group_by=["logging"]))
    assert sorted(g.setting for g in by_logging if g.method == "fedavg") == [
        "verbose=false",
        "verbose=true",
    ]
    # ignoring strategy.* and --ignore '*' merges everything into one group per engine
    merged = group_runs(runs, Grouping.from_options(ignore=["strategy"]))
    assert [len(g.runs) for g in merged] == [4]
    only = group_runs(runs, Grouping.from_options(group_by=["strategy.name"], ignore=["*"]))
    assert [(g.method, len(g.runs)) for g in only] == [("fedavg", 2), ("fedloge", 2)]


def test_cli_group_options_reach_the_report(sweep: Path, tmp_path: Path, capsys) -> None:
    args = ["report", str(sweep), "--out", str(tmp_path / "r"), "--group-by"]
    assert main([*args, "federated.eval_every", "--ignore", "federated.eval_evry"]) == 0
    out = capsys.readouterr().out
    assert "| Method | eval_every=1 generic | eval_every=1 personal |" in out
    assert "--ignore federated.eval_evry: no config key of these runs matches" in out
    assert "did you mean 'federated.eval_every'?" in out


def test_same_seed_in_one_group_is_noted(tmp_path: Path) -> None:
    final = _final(np.random.default_rng(1), ["global"], ["global"])
    for every in (1, 5):
        write_run(
            tmp_path / f"e{every}", ["strategy.name=fedavg", f"federated.eval_every={every}"], final
        )
    result = build_report([tmp_path], tmp_path / "r", formats=("md",))
    assert [len(g.runs) for g in result["groups"]] == [2]
    assert any("2 runs with seed 0" in n and "--group-by" in n for n in result["notes"])


def test_default_ignored_keys_exist_in_a_resolved_config() -> None:
    keys = set(_flat(yaml.safe_load(load_config(None, []).to_yaml())))
    grouping = Grouping()
    for pattern in DEFAULT_IGNORED:  # no stale or misspelt entry
        matching = [k for k in keys if k == pattern or k.startswith(pattern + ".")]
        assert matching and all(grouping.ignores(k) for k in matching), pattern
    for counted in ("federated.rounds", "federated.lr", "stream.eval_period", "strategy.name"):
        assert not grouping.ignores(counted), counted


def _flat(mapping: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else key
        out.update(_flat(value, name) if isinstance(value, dict) and value else {name: value})
    return out


# -- tables ---------------------------------------------------------------------------------
def test_all_modes_table_lists_every_mode(sweep: Path, tmp_path: Path) -> None:
    result = build_report([sweep], tmp_path / "r", formats=("md", "csv"))
    markdown = result["markdown"]
    block = next(b for b in _table_blocks(markdown) if "evaluation" in _cells(b[0]))
    rows = [_cells(r) for r in block[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("fedavg", "generic", "global *"),
        ("fedavg", "personal", "global *"),
        ("fedloge", "generic", "gla_fr *"),
        ("fedloge", "generic", "universal"),
        ("fedloge", "generic", "psi"),
        ("fedloge", "personal", "gla_fr *"),
        ("fedloge", "personal", "local_psi_phi"),
    ]
    finals = [
        json.loads((sweep / "fedloge" / f"seed-{s}" / "summary.json").read_text())["final"]
        for s in (0, 1)
    ]
    psi = np.array([f["generic.psi.top1"] for f in finals]) * 100
    few = np.array([f["personal.local_psi_phi.few.mass"] for f in finals]) * 100
    psi_row = next(r for r in rows if r[2] == "psi")
    assert psi_row[3] == "2" and psi_row[4] == f"{psi.mean():.2f} ± {psi.std(ddof=1):.2f}"
    local_row = next(r for r in rows if r[2] == "local_psi_phi")
    assert local_row[-1] == f"{few.mean():.2f} ± {few.std(ddof=1):.2f}"
    with open(tmp_path / "r" / "federated_modes.csv") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 7
    universal = next(r for r in csv_rows if r["mode"] == "universal")
    expected = np.mean([f["generic.universal.top1"] for f in finals]) * 100
    assert universal["headline"] == "0" and float(universal["top_1_mean"]) == pytest.approx(
        expected, abs=1e-4
    )


def test_seconds_per_round_from_timings(sweep: Path, tmp_path: Path) -> None:
    result = build_report([sweep], tmp_path / "r", formats=("md", "csv"))
    # seed 0: total_s 1, 2, 3 -> 2.0; seed 1: 2, 3, 4 -> 3.0; over seeds 2.5 ± 0.71
    per_seed = np.array([2.0, 3.0])
    text = f"{per_seed.mean():.2f} ± {per_seed.std(ddof=1):.2f}"
    main_table = _table_blocks(result["markdown"])[0]
    header = _cells(main_table[0])
    assert header[-1] == "digits IF=10 α=0.5 s/round"
    assert [_cells(r)[-1] for r in main_table[2:]] == [text, text]
    with open(tmp_path / "r" / "federated.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["s_per_round_mean"]) for r in rows] == pytest.approx([2.5, 2.5])
    assert [float(r["s_per_round_std"]) for r in rows] == pytest.approx(
        [per_seed.std(ddof=1)] * 2, abs=1e-4
    )


def test_no_timings_no_seconds_column(tmp_path: Path) -> None:
    final = _final(np.random.default_rng(2), ["global"], ["global"])
    write_run(tmp_path / "a", ["strategy.name=fedavg"], final)
    markdown = build_report([tmp_path], tmp_path / "r", formats=("md",))["markdown"]
    assert "s/round |" not in _table_blocks(markdown)[0][0]


# -- method order ---------------------------------------------------------------------------
def test_methods_follow_registration_order(tmp_path: Path) -> None:
    from strategies.continual import CONTINUAL_LEARNERS
    from strategies.federated import FEDERATED_STRATEGIES

    rng = np.random.default_rng(3)
    federated = ["fedloge", "ditto", "fedavg", "fedprox", "fedbabu"]
    for name in federated:
        write_run(tmp_path / "fed" / name, [f"strategy.name={name}"], _final(rng, ["g"], ["p"]))
    continual = ["mvp_r", "acme.learners:Mine", "mvp", "er", "finetune"]
    for name in continual:
        write_continual_run(tmp_path / "cl" / name.replace(":", "_"), name, 0)
    groups = build_report([tmp_path], tmp_path / "r", formats=("md",))["groups"]
    fed_order = [g.method for g in groups if g.engine == "federated"]
    cl_order = [g.method for g in groups if g.engine == "continual"]
    assert fed_order == [n for n in FEDERATED_STRATEGIES.in_order() if n in federated]
    assert fed_order == ["fedavg", "fedprox", "fedbabu", "ditto", "fedloge"]
    assert cl_order == ["finetune", "er", "mvp", "mvp_r", "acme.learners:Mine"]
    assert (
        CONTINUAL_LEARNERS.in_order().index("mvp_r")
        == CONTINUAL_LEARNERS.in_order().index("mvp") + 1
    )


def test_registry_in_order_is_registration_order() -> None:
    from fedlt.registry import Registry

    registry: Registry[object] = Registry("thing")
    for name in ("zeta", "alpha", "mid"):
        registry.register(name)(object())
    assert registry.in_order() == ["zeta", "alpha", "mid"]
    assert registry.names() == ["alpha", "mid", "zeta"]


# -- figures --------------------------------------------------------------------------------
def _ticks_in_view(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]


def test_report_curves_have_integer_round_ticks(sweep: Path) -> None:
    runs, _ = find_runs([sweep])
    fig = curve_figure(group_runs(runs))
    assert fig is not None
    generic = fig.axes[0]
    assert generic.get_xlabel() == "round"
    ticks = _ticks_in_view(generic)
    assert len(ticks) >= 2 and all(t.is_integer() for t in ticks), ticks


def test_one_point_report_curve_has_a_sane_axis(tmp_path: Path) -> None:
    final = _final(np.random.default_rng(4), ["global"], ["global"])
    write_run(tmp_path / "a", ["strategy.name=fedavg"], final, rounds=(2,))
    runs, _ = find_runs([tmp_path])
    ax = curve_figure(group_runs(runs)).axes[0]
    lo, hi = ax.get_xlim()
    assert lo <= 1 and hi >= 3  # not 1.9-2.1
    ticks = _ticks_in_view(ax)
    assert 2.0 in ticks and all(t.is_integer() for t in ticks), ticks
