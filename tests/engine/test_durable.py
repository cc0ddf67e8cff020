import errno
import hashlib
import io

import pytest

from cardinal.engine.durable import atomic_write, sha256_file, sha256_of
from cardinal.engine.errors import CheckpointError


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, lambda out: out.write(b"first"))
    atomic_write(target, lambda out: out.write(b"second"))
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failure_mid_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous good file")

    def disk_full(out):
        out.write(b"half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match="No space left on device.*Nothing was overwritten"):
        atomic_write(target, disk_full)
    assert target.read_bytes() == b"previous good file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(CheckpointError, match="choose a folder you can write to"):
        atomic_write(blocker / "model.safetensors", lambda out: out.write(b"x"))


def test_sha256_reads_in_chunks_and_equals_hashlib(tmp_path):
    data = bytes(range(256)) * 9000  # over two chunks
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest() == sha256_of(io.BytesIO(data))
