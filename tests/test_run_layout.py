"""RunDirectory owns the run layout: readers that tolerate any state of a folder, and no other
module names a run file (docs/federated.md, "Run directory")."""

from __future__ import annotations

import re
from pathlib import Path

from fedlt.config import load_config
from fedlt.runs import RunDirectory

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.yaml", "status.json", "metrics.jsonl", "summary.json", "timings.json")
OWNERS = {"fedlt/runs.py"}


def test_readers_of_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    run = RunDirectory.at(tmp_path / "nothing")
    assert run.status == {"status": "unknown"}
    assert not run.is_complete and not run.has_checkpoint and not run.has_config
    assert run.read_metrics() == [] and run.read_timings() == []
    assert run.read_summary() is None and run.read_partition() is None


def test_record_failure_creates_the_folder_and_marks_it_failed(tmp_path: Path) -> None:
    run = RunDirectory.at(tmp_path / "sweep" / "a" / "seed-0")
    run.record_failure("worker died")
    assert run.status["status"] == "failed" and run.status["error"] == "worker died"


def test_the_config_is_read_when_first_asked_for(tmp_path: Path) -> None:
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=layout"])
    created = RunDirectory.create(cfg, lock=False)
    reader = RunDirectory.at(created.path)
    assert reader.has_config and reader.config == cfg
    assert reader.read_config_mapping()["name"] == "layout"


def test_torn_metrics_and_bad_timings_are_tolerated(tmp_path: Path) -> None:
    run = RunDirectory.at(tmp_path)
    run.metrics_path.write_text('{"round": 1}\n{"round": 2')
    assert run.read_metrics(skip_torn=True) == [{"round": 1}]
    run.timings_path.write_text('{"not": "a list"}')
    assert run.read_timings() == []
    run.write_timings([{"round": 1, "total_s": 0.5}])
    assert run.read_timings() == [{"round": 1, "total_s": 0.5}]


def test_no_other_module_names_a_run_file() -> None:
    pattern = re.compile("|".join(rf"[\"']{re.escape(name)}[\"']" for name in RUN_FILES))
    offenders = []
    for path in [*ROOT.glob("fedlt/**/*.py"), *ROOT.glob("scripts/*.py")]:
        relative = path.relative_to(ROOT).as_posix()
        if relative in OWNERS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "read run files through RunDirectory:\n" + "\n".join(offenders)
