import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.errors import TrainingError
from cardinal.engine.progress import run_to_end
from cardinal.engine.runs.folder import claim_run_folder
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from tests.conftest import make_shapes_folder, make_tiny_model

ROOT = Path(__file__).resolve().parents[3]
QUICK = Recipe(mode="fast", epochs=2, batch_size=8, lr=0.05, patience=None)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=8)
    return run_to_end(scan_dataset(root))


def run(report, out, **options):
    return run_to_end(train(report, make_tiny_model(), QUICK, out, device="cpu", **options))


def test_a_folder_holding_a_run_is_refused_without_resume_and_left_untouched(shapes, tmp_path):
    out = tmp_path / "run"
    run(shapes, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(TrainingError, match=r"already holds a training run .*--resume.*another folder"):
        run(shapes, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_without_a_checkpoint_says_there_is_nothing_to_resume(shapes, tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        run(shapes, tmp_path / "empty", resume=True)


def hold_lock_in_another_process(folder: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from cardinal.engine.runs.folder import claim_run_folder
        with claim_run_folder({str(folder)!r}, resume=False):
            print("held", flush=True)
            time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_into_a_busy_folder_is_refused_at_once_naming_the_first(shapes, tmp_path):
    out = tmp_path / "run"
    holder = hold_lock_in_another_process(out)
    try:
        with pytest.raises(TrainingError, match=rf"in use by another training run \(process {holder.pid} on "):
            run(shapes, out)
        # Refused before any work: the first run's folder holds nothing but its lock.
        assert sorted(p.name for p in out.iterdir()) == [".cardinal-run.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_taken_over(shapes, tmp_path):
    out = tmp_path / "run"
    holder = hold_lock_in_another_process(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (out / ".cardinal-run.lock").exists()  # kill -9 left its lock file behind
    result = run(shapes, out)
    assert result.epochs_run == 2 and (out / "best.safetensors").is_file()
    assert not (out / ".cardinal-run.lock").exists()


def test_stale_temp_files_of_a_killed_save_are_removed_by_the_next_run(shapes, tmp_path):
    out = tmp_path / "run"
    run(shapes, out)
    stale = [out / ".best.safetensors.k1ll3d.tmp", out / ".checkpoint.pt.abc123.tmp", out / ".history.csv.0ff.tmp",
             out / ".report.html.dead.tmp", out / ".distributed.json.c0ffee.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1024)
    theirs = out / ".notes.txt.tmp"  # not a file Cardinal writes: left alone
    theirs.write_text("keep me")
    run_to_end(train(shapes, make_tiny_model(), Recipe(mode="fast", epochs=3, batch_size=8, lr=0.05,
                                                        patience=None), out, device="cpu", resume=True))
    assert not any(path.exists() for path in stale)
    assert theirs.read_text() == "keep me"


def test_claims_nest_within_one_process(tmp_path):
    folder = tmp_path / "run"
    with claim_run_folder(folder, resume=False):
        with claim_run_folder(folder, resume=False):
            assert (folder / ".cardinal-run.lock").exists()
        assert (folder / ".cardinal-run.lock").exists()  # the outer claim still holds it
    assert not (folder / ".cardinal-run.lock").exists()


def test_a_file_given_as_the_run_folder_is_refused(shapes, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("x")
    with pytest.raises(TrainingError, match="is a file, not a folder"):
        run(shapes, target)


def test_resuming_from_a_checkpoint_that_would_run_code_is_refused_for_that_reason(shapes, tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"weights": Payload()}, protocol=2))
    with pytest.raises(TrainingError, match="cannot resume: refused"):
        run(shapes, out, resume=True)
    assert not marker.exists()
