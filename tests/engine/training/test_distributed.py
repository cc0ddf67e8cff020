"""Data-parallel training under torchrun: two CPU processes with Gloo, end to end, on this machine.

The runs go through `python -m torch.distributed.run` and the real `cardinal train`; each rank's file
opens are recorded by an audit hook (tests/engine/training/_torchrun_cardinal.py), so the tests observe which
process wrote the run folder and which images each one read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cardinal.engine.cli.main import main as cli_main
from cardinal.engine.data.datasets import scan_dataset, train_val_split
from cardinal.engine.models.registry import save_model
from cardinal.engine.progress import run_to_end
from cardinal.engine.runs.layout import DISTRIBUTED_RECORD_NAME as RECORD_NAME
from cardinal.engine.training.distributed import Team, launched_by_torchrun
from tests.conftest import make_shapes_folder, make_tiny_model

RUNNER = Path(__file__).with_name("_torchrun_cardinal.py")
ROOT = Path(__file__).resolve().parents[3]


def _team(rank: int, world_size: int) -> Team:
    return Team(rank, world_size, rank, torch.device("cpu"), "gloo")


def test_torchrun_is_detected_from_its_variables_only_with_several_processes():
    assert launched_by_torchrun({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert not launched_by_torchrun({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert not launched_by_torchrun({"WORLD_SIZE": "2"})
    assert not launched_by_torchrun({})


def test_shards_split_without_overlap_and_come_back_in_order():
    rows = torch.arange(11 * 3).reshape(11, 3)
    shares = [_team(rank, 3).shard(rows) for rank in range(3)]
    assert sorted(torch.cat(shares)[:, 0].tolist()) == rows[:, 0].tolist()
    assert torch.equal(_team(0, 3).unshard(shares), rows)
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    parts = [_team(rank, 3).shard_order(order) for rank in range(3)]
    assert {len(part) for part in parts} == {4}  # equal lengths: every rank runs the same number of steps
    assert set(torch.cat(parts).tolist()) == set(range(11))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """30 shapes (24 train + 6 validation at the default split) and a saved tiny model to start from."""
    root = tmp_path_factory.mktemp("distributed")
    folder = make_shapes_folder(root / "shapes", per_class=10)
    model = make_tiny_model(class_names=("a", "b", "c"))
    base = save_model(model, root / "base.safetensors")
    return folder, base


def torchrun(folder: Path, out: Path, audit: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`cardinal train` as two torchrun processes on the CPU; returns the finished launcher."""
    audit.mkdir(parents=True, exist_ok=True)
    for old in audit.glob("rank-*.json"):
        old.unlink()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "CARDINAL_AUDIT_DIR": str(audit), "CARDINAL_AUDIT_WATCH": os.pathsep.join([str(folder), str(out)]),
           "CARDINAL_DISTRIBUTED_TIMEOUT": "120"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(RUNNER), "train", str(folder), "--out", str(out), "--device", "cpu", "--workers", "0",
               "--patience", "0", "--warmup-epochs", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def opened(audit: Path, rank: int, *, write: bool, under: Path) -> list[Path]:
    entries = json.loads((audit / f"rank-{rank}.json").read_text())
    return [Path(e["path"]) for e in entries if e["write"] == write and Path(e["path"]).is_relative_to(under)]


def test_two_processes_train_full_mode_on_disjoint_shards_and_resume(dataset, tmp_path):
    folder, base = dataset
    out, audit = tmp_path / "run", tmp_path / "audit"
    common = ("--mode", "full", "--base", str(base), "--batch-size", "4", "--lr", "1e-3")
    done = torchrun(folder, out, audit, *common, "--epochs", "2")
    assert done.returncode == 0, done.stdout + done.stderr

    # Rank 0 speaks for the team: how many train together, one report, one line per epoch, one evaluation.
    assert done.stdout.count("2 processes train together") == 1
    assert done.stdout.count("epoch 1/2:") == 1 and done.stdout.count("epoch 2/2:") == 1
    assert done.stdout.count("Training finished after 2 epochs") == 1
    assert [line for line in done.stdout.splitlines() if line.startswith("accuracy ")] != []
    assert done.stdout.count("confusion matrix") == 1

    # Only rank 0 wrote into the run folder (lock, models, checkpoint); rank 1 wrote nothing anywhere there.
    assert opened(audit, 1, write=True, under=out) == []
    written = {path.name for path in opened(audit, 0, write=True, under=out)}
    assert ".cardinal-run.lock" in written
    assert any(name.startswith(".best.safetensors.") for name in written)
    assert any(name.startswith(".last.safetensors.") for name in written)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted([
        "best.json", "best.safetensors", "checkpoint.pt", RECORD_NAME, "last.json", "last.safetensors",
        "history.csv", "report.html"])
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 2  # a header and one row per epoch, once

    # Each rank trained on its own half of the training split; the halves cover it.
    report = run_to_end(scan_dataset(folder))
    train_samples, val_samples = train_val_split(report, 0.2, 0)
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["world_size"] == 2 and record["backend"] == "gloo"
    assert [entry["epoch"] for entry in record["epochs"]] == [1, 2]
    for entry in record["epochs"]:
        assert [share["images"] for share in entry["ranks"]] == [12, 12]
    first, second = (set(share["indices"]) for share in record["epochs"][-1]["ranks"])
    assert len(first) == len(second) == 12 and not first & second
    assert first | second == set(range(len(train_samples)))

    # The saved best model evaluates on its own.
    assert cli_main(["evaluate", str(out / "best.safetensors"), str(folder), "--device", "cpu"]) == 0

    # A second start without --resume is refused by both processes, promptly and with rank 0's reason.
    refused = torchrun(folder, out, audit, *common, "--epochs", "3")
    assert refused.returncode != 0
    assert "already holds a training run" in refused.stderr
    assert "process 1 of 2 stopped because process 0 failed" in refused.stderr

    # --resume under torchrun continues from epoch 2.
    resumed = torchrun(folder, out, audit, *common, "--epochs", "3", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch 3/3:" in resumed.stdout and "epoch 1/3:" not in resumed.stdout
    assert "Training finished after 3 epochs" in resumed.stdout
    record = json.loads((out / RECORD_NAME).read_text())
    assert [entry["epoch"] for entry in record["epochs"]] == [3]
    assert opened(audit, 1, write=True, under=out) == []
    # In its one epoch rank 1 (which does not scan) read exactly its shard and its half of the validation set.
    first, second = (set(share["indices"]) for share in record["epochs"][-1]["ranks"])
    assert not first & second and first | second == set(range(len(train_samples)))
    read_by_rank_1 = set(opened(audit, 1, write=False, under=folder))
    assert read_by_rank_1 == {train_samples[i][0] for i in second} | {path for path, _ in val_samples[1::2]}


def test_fast_mode_shares_the_feature_pass(dataset, tmp_path):
    folder, base = dataset
    out, audit = tmp_path / "run", tmp_path / "audit"
    done = torchrun(folder, out, audit, "--mode", "fast", "--base", str(base), "--epochs", "2", "--batch-size", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("epoch 2/2:") == 1
    report = run_to_end(scan_dataset(folder))
    train_samples, val_samples = train_val_split(report, 0.2, 0)
    # Rank 1 computed features for its share only (every second image of each split) ...
    read_by_rank_1 = set(opened(audit, 1, write=False, under=folder))
    assert read_by_rank_1 == {path for path, _ in train_samples[1::2]} | {path for path, _ in val_samples[1::2]}
    # ... and still trained on its half of every image's features.
    record = json.loads((out / RECORD_NAME).read_text())
    first, second = (set(share["indices"]) for share in record["epochs"][-1]["ranks"])
    assert not first & second and first | second == set(range(len(train_samples)))
    assert opened(audit, 1, write=True, under=out) == []


def test_processes_started_with_different_flags_all_stop_at_once_naming_them(dataset, tmp_path):
    """Two machines' torchrun (here two launchers of one process each, `--nnodes 2`) started with different
    flags: every process stops before any work, saying which flags differ, instead of one aborting and the
    other waiting for it at a meeting point."""
    from tests.conftest import closed_port

    folder, base = dataset
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CARDINAL_AUDIT_DIR": str(tmp_path),
           "CARDINAL_AUDIT_WATCH": str(out), "CARDINAL_DISTRIBUTED_TIMEOUT": "900"}
    port = closed_port()
    launchers = []
    for node, flags in enumerate([("--epochs", "2", "--lr", "1e-3"), ("--epochs", "3", "--lr", "1e-2")]):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                   "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port), str(RUNNER),
                   "train", str(folder), "--out", str(out), "--device", "cpu", "--workers", str(node),
                   "--base", str(base), "--mode", "full", "--batch-size", "4", *flags]
        launchers.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=env, cwd=ROOT))
    try:
        # At once: a process waiting for another at a meeting point would wait 900 s.
        said = [launcher.communicate(timeout=300) for launcher in launchers]
    finally:
        for launcher in launchers:
            if launcher.poll() is None:  # a launcher ends its own processes when it is terminated
                launcher.terminate()
                launcher.wait(timeout=30)
    for launcher, (stdout, stderr) in zip(launchers, said, strict=True):
        assert launcher.returncode != 0, stdout + stderr
        assert "epoch" not in stdout and "classes" not in stdout  # before any work
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert errors and str(ROOT / "engine") not in stderr, stderr  # no traceback of ours (torchrun prints its own)
        assert "--epochs 2 in process 0 but 3 in process 1" in errors[0], stderr
        assert "--lr" in errors[0] and "--workers" not in errors[0]  # a machine's own choice may differ
    assert not (out / "checkpoint.pt").exists() and not (out / "best.safetensors").exists()
