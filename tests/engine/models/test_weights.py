import hashlib
import io
import os
import pathlib
import pickle
import shlex
import warnings

import pytest
import torch

from cardinal.engine.errors import Cancelled, WeightsError, WeightsUnavailable
from cardinal.engine.models.download import cache_path, download, mirrored_url, resolve_pretrained
from cardinal.engine.models.weights import apply_state_dict, read_state_dict
from cardinal.engine.progress import CancelToken
from tests.conftest import closed_port, make_tiny_model


def state_dict_bytes(state_dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def hashed_name(stem: str, payload: bytes) -> str:
    return f"{stem}-{hashlib.sha256(payload).hexdigest()[:8]}.pth"


def leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_good_file_verifies_hash_and_reports_progress(server, tmp_path):
    state_dict = make_tiny_model().network.state_dict()
    payload = state_dict_bytes(state_dict)
    name = hashed_name("tiny", payload)
    server.files[f"/{name}"] = payload
    seen = []
    path = download(f"{server.base}/{name}", tmp_path / name, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == payload
    assert seen[0] == (0, len(payload)) and seen[-1] == (len(payload), len(payload))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    loaded = read_state_dict(path)
    assert torch.equal(loaded["fc.weight"], state_dict["fc.weight"])
    assert leftovers(tmp_path) == [name]


def test_download_bad_hash_leaves_nothing(server, tmp_path):
    payload = state_dict_bytes({"w": torch.ones(3)})
    name = "tiny-deadbeef.pth"
    server.files[f"/{name}"] = payload
    with pytest.raises(WeightsError, match="corrupt or not the expected one"):
        download(f"{server.base}/{name}", tmp_path / name)
    assert leftovers(tmp_path) == []


def test_connection_cut_mid_file_leaves_nothing(server, tmp_path):
    payload = state_dict_bytes(make_tiny_model().network.state_dict())
    name = hashed_name("tiny", payload)
    server.files[f"/{name}"] = payload
    server.cut.add(f"/{name}")
    with pytest.raises(WeightsUnavailable, match="connection lost"):
        download(f"{server.base}/{name}", tmp_path / name)
    assert leftovers(tmp_path) == []


def test_server_absent_names_url_and_destination(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/resnext50_32x4d-1a0047aa.pth"
    destination = tmp_path / "hub" / "checkpoints" / "resnext50_32x4d-1a0047aa.pth"
    with pytest.raises(WeightsUnavailable) as info:
        download(url, destination)
    message = str(info.value)
    assert url in message and str(destination) in message
    assert "cannot reach the server" in message
    assert leftovers(destination.parent) == []


def test_cancel_token_stops_download_and_leaves_nothing(server, tmp_path):
    payload = b"x" * (3 << 20)
    name = hashed_name("big", payload)
    server.files[f"/{name}"] = payload
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done > 0:
            token.cancel()

    with pytest.raises(Cancelled, match="download was cancelled"):
        download(f"{server.base}/{name}", tmp_path / name, progress=progress, cancel=token)
    assert max(seen) < len(payload)
    assert leftovers(tmp_path) == []


def test_resolve_uses_cache_first_then_mirror(server, torch_home, monkeypatch):
    payload = state_dict_bytes({"w": torch.ones(2)})
    name = hashed_name("cached", payload)
    official = f"https://download.pytorch.org/models/{name}"
    # Not cached yet: the mirror from the environment serves it.
    server.files[f"/mirror/{name}"] = payload
    monkeypatch.setenv("CARDINAL_WEIGHTS_MIRROR", f"{server.base}/mirror/")
    path = resolve_pretrained(official)
    assert path == cache_path(official) and path.parent == torch_home / "hub" / "checkpoints"
    # Cached now: no network needed even with the server gone.
    server.files.clear()
    assert resolve_pretrained(official) == path
    assert resolve_pretrained(official, allow_download=False) == path


def test_offline_without_cache_is_weights_unavailable(torch_home):
    url = "https://download.pytorch.org/models/resnext50_32x4d-1a0047aa.pth"
    with pytest.raises(WeightsUnavailable) as info:
        resolve_pretrained(url, allow_download=False)
    assert info.value.path == torch_home / "hub" / "checkpoints" / "resnext50_32x4d-1a0047aa.pth"
    assert url in str(info.value)


def test_mirror_forms():
    url = "https://download.pytorch.org/models/resnext50_32x4d-1a0047aa.pth"
    assert mirrored_url(url, "http://intranet/models") == "http://intranet/models/resnext50_32x4d-1a0047aa.pth"
    assert mirrored_url(url, "") == url
    assert mirrored_url(url, "/srv/models").startswith("file:///srv/models/")


def test_mirror_can_be_a_local_folder(tmp_path, torch_home):
    payload = state_dict_bytes({"w": torch.zeros(1)})
    name = hashed_name("local", payload)
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / name).write_bytes(payload)
    path = resolve_pretrained(f"https://example.invalid/{name}", mirror=str(tmp_path / "share"))
    assert path.read_bytes() == payload


class _WritesMarker:
    """Unpickling this writes a file: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "owned"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.ones(1), "payload": _WritesMarker(marker)}, evil)
    # The file really is malicious: a plain unpickle of the same object would write the marker.
    proof = tmp_path / "proof.txt"
    pickle.loads(pickle.dumps(_WritesMarker(proof)))
    assert proof.exists()
    with pytest.raises(WeightsError, match="refused"):
        read_state_dict(evil)
    assert not marker.exists()


def test_non_finite_tensor_is_refused_with_its_key(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "nan.safetensors"
    save_file({"layer.weight": torch.tensor([1.0, float("nan")]), "ok": torch.ones(1)}, str(path))
    with pytest.raises(WeightsError, match="'layer.weight' contains 1 NaN"):
        read_state_dict(path)


def test_wrappers_and_dataparallel_prefix_are_unwrapped(tmp_path):
    state_dict = make_tiny_model().network.state_dict()
    path = tmp_path / "trained.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, path)
    loaded = read_state_dict(path)
    assert set(loaded) == set(state_dict)


def test_strict_key_and_shape_check_names_the_key(tmp_path):
    network = make_tiny_model().network
    state_dict = dict(network.state_dict())
    state_dict["fc.weight"] = torch.zeros(7, state_dict["fc.weight"].shape[1])
    with pytest.raises(WeightsError, match=r"'fc.weight' has shape \(7, 2048\)"):
        apply_state_dict(network, state_dict, tmp_path / "x.pth")
    del state_dict["fc.weight"]
    state_dict["extra.bias"] = torch.zeros(1)
    with pytest.raises(WeightsError) as info:
        apply_state_dict(network, state_dict, tmp_path / "x.pth")
    assert "missing 'fc.weight'" in str(info.value) and "unexpected 'extra.bias'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("garbage.pth", b"not a zip at all", "not a PyTorch weights file"),
        ("garbage.safetensors", b"\x00\x01", "not a valid safetensors file"),
        ("weights.onnx", b"whatever", "unknown weights format"),
    ],
)
def test_unreadable_files(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=reason):
        read_state_dict(path)


class _RunsCommand:
    """Unpickling this runs a shell command that creates `marker` (harmless, but proof that code ran)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.mark.parametrize("layout", ["zip", "legacy", "raw-protocol-4"])
def test_pickle_that_runs_a_command_is_refused_for_that_reason_without_warnings(tmp_path, capfd, layout):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pth"
    payload = {"fc.weight": torch.ones(2), "payload": _RunsCommand(marker)}
    if layout == "zip":
        torch.save(payload, evil)
    elif layout == "legacy":
        torch.save(payload, evil, _use_new_zipfile_serialization=False)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(WeightsError, match=r"refused: opening this file would run Python code \(\w+\.system\)"):
            read_state_dict(evil)
    assert not marker.exists()
    assert capfd.readouterr().err == ""


def test_harmless_protocol_4_pickle_is_refused_as_unreadable_not_damaged(tmp_path, capfd):
    path = tmp_path / "weights.pth"
    path.write_bytes(pickle.dumps({"fc.weight": [1.0, 2.0]}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(WeightsError, match=r"refused: .*pickle protocol 4.*Re-save"):
            read_state_dict(path)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_integer_or_bool_weights_are_refused_naming_file_and_key(tmp_path, dtype, suffix):
    from safetensors.torch import save_file

    network = make_tiny_model().network
    cast = {key: value.to(dtype) if value.is_floating_point() else value for key, value in network.state_dict().items()}
    path = tmp_path / f"cast{suffix}"
    if suffix == ".pth":
        torch.save(cast, path)
    else:
        save_file(cast, str(path))
    before = {key: value.clone() for key, value in network.state_dict().items()}
    with pytest.raises(WeightsError, match=r"'conv1\.weight' holds .* not floating-point") as info:
        apply_state_dict(network, read_state_dict(path), path)
    assert str(path) in str(info.value) and str(dtype).removeprefix("torch.") in str(info.value)
    assert all(torch.equal(value, before[key]) for key, value in network.state_dict().items())


def test_integer_step_counter_of_batch_norm_is_still_accepted(tmp_path):
    from safetensors.torch import save_file

    state_dict = make_tiny_model(seed=3).network.state_dict()
    assert state_dict["bn1.num_batches_tracked"].dtype == torch.int64
    path = tmp_path / "ok.safetensors"
    save_file(dict(state_dict), str(path))
    network = make_tiny_model().network
    apply_state_dict(network, read_state_dict(path), path)
    assert torch.equal(network.fc.weight, state_dict["fc.weight"])


def test_a_mirror_folder_without_the_file_says_so_in_folder_words(tmp_path, torch_home):
    share = tmp_path / "share"
    share.mkdir()
    name = "resnext50_32x4d-1a0047aa.pth"
    with pytest.raises(WeightsUnavailable) as caught:
        resolve_pretrained(f"https://download.pytorch.org/models/{name}", mirror=str(share))
    message = str(caught.value)
    assert "cannot reach the server" not in message and "file:" not in message  # no server, no URL to download
    assert f"the mirror folder {share} has no {name}" in message
    assert f"Put {name} in {share}" in message and str(cache_path(f"https://x/{name}")) in message
