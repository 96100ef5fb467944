"""Checkpoints: round trip, optimizer state, atomic writes, and every kind of refused file."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.arch.model import build_model
from explorer.engine.config import TrainConfig
from explorer.errors import CheckpointError
from explorer.store import checkpoint as ckpt
from explorer.store.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    optimizer_path,
    read_meta,
    save_checkpoint,
    weights_path,
)

torch.set_num_threads(1)
CLASSES = ["cat", "dog", "frog"]
ARCH = ArchConfig(conv=(ConvBlock(4, pool="max"), ConvBlock(6, pool="max")), fc=(8,), batchnorm=True, dropout=0.3)
SHAPE = (3, 8, 8)
META = {"classes": CLASSES, "normalization": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]},
        "train": TrainConfig(epochs=1), "metrics": {"final_test_accuracy": 0.5, "best_test_accuracy": 0.6},
        "data": "synthetic", "data_fingerprint": "abc123"}


def trained_model(seed: int = 0, arch: ArchConfig = ARCH) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A tiny net after one optimizer step, so weights, BN stats and momentum buffers are all non-trivial."""
    torch.manual_seed(seed)
    model = build_model(arch, SHAPE, len(CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    torch.nn.functional.cross_entropy(model(torch.randn(5, *SHAPE)), torch.tensor([0, 1, 2, 0, 1])).backward()
    optimizer.step()
    return model.eval(), optimizer


def rewrite_meta(path: Path, **changes) -> None:
    """Re-save the weights file with some metadata fields changed (what a tampered file would look like)."""
    data = path.read_bytes()
    meta = json.loads(json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]["explorer"])
    meta.update(changes)
    path.write_bytes(st_save(st_load(data), metadata={"explorer": json.dumps(meta)}))


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module, torch.optim.Optimizer]:
    model, optimizer = trained_model()
    return save_checkpoint(tmp_path / "run1", model, META, optimizer.state_dict()), model, optimizer


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_gives_identical_outputs(saved) -> None:
    path, model, _ = saved
    assert path.name == "model.safetensors"
    x = torch.randn(7, *SHAPE)
    for source in (path, path.parent, str(path), path.read_bytes()):
        loaded = load_checkpoint(source)
        assert not loaded.model.training
        assert torch.equal(loaded.model(x), model(x))
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert loaded.model.cfg == ARCH


def test_metadata_is_complete(saved) -> None:
    meta = read_meta(saved[0])
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["arch"] == ARCH.to_dict() and meta["input_shape"] == list(SHAPE) and meta["num_classes"] == 3
    assert meta["classes"] == CLASSES
    assert meta["normalization"] == {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    assert meta["train"] == TrainConfig(epochs=1).to_dict()
    assert meta["metrics"]["best_test_accuracy"] == 0.6
    assert meta["data"] == "synthetic" and meta["data_fingerprint"] == "abc123"
    assert set(meta["versions"]) >= {"python", "torch", "safetensors"} and meta["created"]


def test_optimizer_state_round_trip_resumes_identically(saved) -> None:
    path, model, optimizer = saved
    loaded = load_checkpoint(path)
    assert loaded.warnings == []
    resumed = torch.optim.SGD(loaded.model.parameters(), lr=0.1, momentum=0.9)
    resumed.load_state_dict(loaded.optimizer_state)
    batch, target = torch.randn(4, *SHAPE), torch.tensor([0, 1, 2, 2])
    for net, opt in ((model, optimizer), (loaded.model, resumed)):
        net.train()
        torch.manual_seed(1)  # same dropout masks
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(batch), target).backward()
        opt.step()
    for (name, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_uploaded_bytes_carry_no_optimizer_and_saving_without_one_removes_stale_state(saved) -> None:
    path, model, _ = saved
    assert load_checkpoint(path.read_bytes()).optimizer_state is None
    save_checkpoint(path, model, META)
    assert not optimizer_path(path).exists()
    assert load_checkpoint(path).optimizer_state is None


def test_mismatched_optimizer_state_is_ignored_with_a_warning(saved) -> None:
    path, _, _ = saved
    other, other_opt = trained_model(seed=3)
    buffer = io.BytesIO()
    torch.save(other_opt.state_dict(), buffer)
    optimizer_path(path).write_bytes(buffer.getvalue())  # as if a save died between its two renames
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is None
    assert "does not belong" in loaded.warnings[0]


def test_weights_path_accepts_folders_and_files(tmp_path: Path) -> None:
    assert weights_path(tmp_path) == tmp_path / "model.safetensors"
    assert weights_path(tmp_path / "new-run") == tmp_path / "new-run" / "model.safetensors"
    assert weights_path(tmp_path / "a.safetensors") == tmp_path / "a.safetensors"
    assert optimizer_path(tmp_path / "a.safetensors") == tmp_path / "a.optimizer.pt"


def test_save_refuses_metadata_that_does_not_fit_the_model(tmp_path: Path) -> None:
    model, _ = trained_model()
    with pytest.raises(CheckpointError, match="2 class names for 3 classes"):
        save_checkpoint(tmp_path, model, META | {"classes": ["a", "b"]})
    with pytest.raises(CheckpointError, match="normalization"):
        save_checkpoint(tmp_path, model, META | {"normalization": {"mean": [0.5], "std": [0.5]}})
    assert not (tmp_path / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------ atomic writes


def test_failure_mid_write_leaves_the_previous_checkpoint_intact(saved, monkeypatch) -> None:
    path, model, _ = saved
    before = path.read_bytes()
    newer, _ = trained_model(seed=5)

    def half_then_fail(handle, data: bytes) -> None:
        handle.write(data[: len(data) // 2])
        handle.flush()
        assert os.fstat(handle.fileno()).st_size == len(data) // 2  # the temp file really is half written
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "_write_file", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, newer, META)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.optimizer.pt", "model.safetensors"]
    x = torch.randn(3, *SHAPE)
    assert torch.equal(load_checkpoint(path).model(x), model(x))


def test_process_killed_mid_save_leaves_the_previous_checkpoint_intact(saved) -> None:
    path, model, _ = saved
    before = path.read_bytes()
    # A child process starts saving different weights and dies (no cleanup, no finally) half-way through.
    script = textwrap.dedent(f"""
        import os, torch
        from explorer.store import checkpoint as ckpt
        from explorer.arch.config import ArchConfig
        from explorer.arch.model import build_model
        def die(handle, data):
            handle.write(data[: len(data) // 2]); handle.flush(); os._exit(9)
        ckpt._write_file = die
        torch.manual_seed(42)
        model = build_model(ArchConfig.from_json({ARCH.to_json()!r}), {SHAPE!r}, 3)
        ckpt.save_checkpoint({str(path)!r}, model, {{"classes": {CLASSES!r}}})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1], capture_output=True,
                            timeout=120)
    assert result.returncode == 9, result.stderr.decode()
    assert path.read_bytes() == before
    assert any(p.name.endswith(".tmp") for p in path.parent.iterdir())  # the half-written temp file it left
    x = torch.randn(3, *SHAPE)
    assert torch.equal(load_checkpoint(path).model(x), model(x))
    assert ckpt.find_checkpoints(path.parent.parent) == [path]  # leftovers are not listed as checkpoints


# ------------------------------------------------------------------------------------------ refusals


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    cases = {"text.safetensors": b"hello, this is a text file\n" * 10, "empty.safetensors": b"",
             "short.safetensors": b"\x01\x02"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match="not a checkpoint"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_refuses_a_safetensors_file_without_explorer_metadata(tmp_path: Path) -> None:
    model, _ = trained_model()
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(st_save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata={"a": "b"}))
    with pytest.raises(CheckpointError, match="not an explorer checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.999, 0.7, 0.3, 0.001])
def test_refuses_a_truncated_file(saved, keep: float) -> None:
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    for reader in (load_checkpoint, read_meta):  # read_meta reads only the header, yet sees the truncation
        with pytest.raises(CheckpointError, match="truncated|not a checkpoint"):
            reader(path)
        with pytest.raises(CheckpointError, match="truncated|not a checkpoint"):
            reader(path.read_bytes())


def test_refuses_a_corrupted_header(saved) -> None:
    data = bytearray(saved[0].read_bytes())
    data[12:20] = b"\xff\xfe{{}}[]"
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bytes(data))


def test_refuses_corrupted_metadata_json(saved) -> None:
    path = saved[0]
    tensors = st_load(path.read_bytes())
    path.write_bytes(st_save(tensors, metadata={"explorer": "{not json"}))
    with pytest.raises(CheckpointError, match="metadata is corrupted"):
        load_checkpoint(path)


def test_refuses_an_unknown_format_version(saved) -> None:
    rewrite_meta(saved[0], format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1} is unknown"):
        load_checkpoint(saved[0])
    with pytest.raises(CheckpointError, match="format version"):
        read_meta(saved[0])


def test_refuses_metadata_that_fails_config_validation(saved) -> None:
    path = saved[0]
    bad_arch = ARCH.to_dict() | {"conv": [{"out_channels": 4, "kernel": 4}]}
    rewrite_meta(path, arch=bad_arch)
    with pytest.raises(CheckpointError, match="fails config validation: conv1 kernel: 4 is not allowed"):
        load_checkpoint(path)
    rewrite_meta(path, arch=ARCH.to_dict(), input_shape=[3, 1, 1])  # too small for two poolings
    with pytest.raises(CheckpointError, match="fails config validation"):
        load_checkpoint(path)
    rewrite_meta(path, input_shape=list(SHAPE), train={"epochs": -3})
    with pytest.raises(CheckpointError, match="fails config validation: epochs"):
        load_checkpoint(path)


def test_refuses_tensors_that_do_not_match_the_architecture(saved) -> None:
    path = saved[0]
    wider = dataclasses.replace(ARCH, conv=(ConvBlock(5, pool="max"), ConvBlock(6, pool="max")))
    rewrite_meta(path, arch=wider.to_dict())
    needs = r"tensor features.0.conv.weight has shape \[4, 3, 3, 3\].*needs \[5, 3, 3, 3\]"
    with pytest.raises(CheckpointError, match=needs):
        load_checkpoint(path)
    rewrite_meta(path, arch=dataclasses.replace(ARCH, batchnorm=False).to_dict())  # no BatchNorm: extra tensors
    with pytest.raises(CheckpointError, match="do not match the architecture.*unexpected"):
        load_checkpoint(path)


class _CreatesAFile:
    """Unpickling this object runs open(target, 'w'): the file appearing proves code ran."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_the_malicious_pickle_really_would_create_its_file(tmp_path: Path) -> None:
    target = tmp_path / "proof"
    pickle.loads(pickle.dumps(_CreatesAFile(target))).close()  # sanity: the payload is live
    assert target.exists()


def test_refuses_pickles_without_running_them(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"state_dict": _CreatesAFile(target)}))
    zipped = tmp_path / "model.pt"
    torch.save({"state_dict": _CreatesAFile(target)}, zipped)
    for path in (raw, zipped):
        with pytest.raises(CheckpointError, match="never"):
            load_checkpoint(path)
        with pytest.raises(CheckpointError, match="never"):
            load_checkpoint(path.read_bytes())
        with pytest.raises(CheckpointError, match="never"):
            read_meta(path)
    assert not target.exists()


def test_refuses_a_malicious_optimizer_file_without_running_it(saved, tmp_path: Path) -> None:
    path = saved[0]
    target = tmp_path / "pwned-by-optimizer"
    buffer = io.BytesIO()
    torch.save({"state": {}, "param_groups": [], "evil": _CreatesAFile(target)}, buffer)
    evil = buffer.getvalue()
    optimizer_path(path).write_bytes(evil)
    # Tamper the metadata so the hash check passes and the loader has to face the pickle itself.
    rewrite_meta(path, optimizer={"file": optimizer_path(path).name, "sha256": hashlib.sha256(evil).hexdigest()})
    with pytest.raises(CheckpointError, match="optimizer state .* refused"):
        load_checkpoint(path)
    assert not target.exists()
    assert load_checkpoint(path, with_optimizer=False).optimizer_state is None


def test_optimizer_reference_cannot_point_outside_the_checkpoint_folder(saved, tmp_path: Path) -> None:
    path = saved[0]
    outside = tmp_path / "elsewhere.pt"
    torch.save({"state": {}, "param_groups": []}, outside)
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    for reference in ("../elsewhere.pt", str(outside), ""):
        rewrite_meta(path, optimizer={"file": reference, "sha256": digest})
        loaded = load_checkpoint(path)
        assert loaded.optimizer_state is None and "missing" in loaded.warnings[0]


def test_header_length_with_a_pickle_like_first_byte_still_loads(tmp_path: Path) -> None:
    # The header length's low byte is the file's first byte; 0x80 is also a pickle's protocol marker.
    model, _ = trained_model()
    for pad in range(256):
        path = save_checkpoint(tmp_path / "run", model, META | {"note": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length ending in 0x80")
    assert load_checkpoint(path).meta["note"] == "x" * pad
