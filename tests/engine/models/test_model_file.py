import json
import os
import stat

import pytest
import torch

from cardinal.engine.durable import atomic_write
from cardinal.engine.errors import CheckpointError, WeightsError
from cardinal.engine.models.model_file import read_model_sidecar, save_model_files


def test_model_files_need_safetensors_suffix(tmp_path):
    with pytest.raises(CheckpointError, match=r"must end in \.safetensors"):
        save_model_files(tmp_path / "model.pth", {}, {})


SIDECARS = {
    "json-list": b'["not", "a", "description"]',
    "another-tools-object": b'{"format": "labelme", "shapes": []}',
    "not-utf8": b"\xff\xfe\x00junk\x80",
    "invalid-json": b"{this is not json",
}


@pytest.mark.parametrize("content", SIDECARS.values(), ids=SIDECARS.keys())
def test_unrelated_json_beside_a_bare_weights_file_is_ignored(tmp_path, content):
    from safetensors.torch import save_file

    weights = tmp_path / "X.safetensors"
    save_file({"fc.weight": torch.zeros(2, 3)}, str(weights))
    (tmp_path / "X.json").write_bytes(content)
    assert read_model_sidecar(weights) is None


def test_cardinal_sidecar_beside_a_bare_weights_file_is_read(tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "X.safetensors"
    save_file({"fc.weight": torch.zeros(2, 3)}, str(weights))
    (tmp_path / "X.json").write_text(json.dumps({"format": "cardinal-model", "class_names": ["a", "b"]}))
    assert read_model_sidecar(weights)["class_names"] == ["a", "b"]


@pytest.mark.parametrize("embedded", ['["a list"]', "{broken"])
def test_invalid_embedded_description_is_still_an_error(tmp_path, embedded):
    from safetensors.torch import save_file

    weights = tmp_path / "X.safetensors"
    save_file({"fc.weight": torch.zeros(2, 3)}, str(weights), metadata={"cardinal": embedded})
    with pytest.raises(WeightsError, match=r"X\.safetensors: model description is not"):
        read_model_sidecar(weights)


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"]
)
def test_saved_files_get_the_mode_the_umask_allows(tmp_path, umask, mode):
    (tmp_path / "old.bin").write_bytes(b"replaced below")
    previous = os.umask(umask)
    try:
        written = [
            atomic_write(tmp_path / "new.bin", lambda out: out.write(b"x")),
            atomic_write(tmp_path / "old.bin", lambda out: out.write(b"y")),
            save_model_files(tmp_path / "m.safetensors", {"w": torch.ones(2)}, {"name": "m"}),
            tmp_path / "m.json",
        ]
    finally:
        os.umask(previous)
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in written} == {
        path.name: mode for path in written
    }
