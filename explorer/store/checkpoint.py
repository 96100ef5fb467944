"""Checkpoints: safetensors weights + JSON metadata that describes the model completely.

Layout of one checkpoint (e.g. `checkpoints/<run_id>/`):
- `model.safetensors`: every tensor of `model.state_dict()`; the safetensors metadata (string -> string)
  holds our whole metadata as one JSON string under the key "explorer".
- `model.optimizer.pt` (optional): the optimizer state for resuming, a plain dict of tensors and numbers
  written with `torch.save`, read back only with `torch.load(weights_only=True)`.

Loading never executes code from the file: safetensors is a JSON header plus raw bytes, pickles are
recognised by their first bytes and refused, and the optimizer file goes through PyTorch's weights-only
unpickler (which refuses any object that is not a tensor or a plain container). The model is rebuilt
from the metadata alone (explorer.arch.model.build_model) and loaded strictly.

Writes are atomic (explorer.atomic): each file is written to a temporary file in the same folder, fsynced,
moved over the old one with os.replace, and the folder fsynced. The weights file names the optimizer file's
SHA-256, so a crash between the two renames can only leave an optimizer state that is ignored, never a
mismatched one used.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from explorer.arch.config import ArchConfig, layer_shapes
from explorer.arch.cost import MAX_BUILD_PARAMS, build_refusal, model_cost
from explorer.arch.model import Net, build_model
from explorer.atomic import atomic_write
from explorer.engine.config import TrainConfig
from explorer.engine.evaluate import InferencePolicy
from explorer.errors import CheckpointError, ConfigError
from explorer.files import open_regular, read_regular

FORMAT_VERSION = 1
DISTRIBUTION = "architecture-explorer"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"  # where the version is declared, once
META_KEY = "explorer"
WEIGHTS_NAME = "model.safetensors"
OPTIMIZER_SUFFIX = ".optimizer.pt"
# A safetensors header larger than this is not one of ours (ours are a few KiB): refuse before parsing it.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# First bytes of the files people most often mistake for a checkpoint, to say what they are.
ZIP_MAGIC = b"PK\x03\x04"  # torch.save (zip container holding a pickle)
PICKLE_PROTOCOL_BYTE = 0x80  # pickle protocol 2+ starts with PROTO (0x80)
# What loading accepts: every field of a metadata header can be within its own range while the network they
# describe together needs gigabytes, so the whole network's cost is checked before a tensor is built.
# The limits are explorer.arch.cost's build rule (MAX_BUILD_*), the same for every path that builds a network.
# The largest file a network within the limits can need (8-byte values at most, plus its header).
MAX_FILE_BYTES = 8 + MAX_HEADER_BYTES + 8 * MAX_BUILD_PARAMS
# The optimizer state of such a network: at most two 8-byte moments a parameter (Adam), plus the pickle's framing.
MAX_OPTIMIZER_BYTES = 2 * MAX_FILE_BYTES


@dataclass
class LoadedCheckpoint:
    """A checkpoint read back: the rebuilt model (eval mode), its metadata and the optimizer state if any."""

    model: Net
    meta: dict
    optimizer_state: dict | None = None
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def arch(self) -> ArchConfig:
        return self.model.cfg

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["input_shape"])

    @property
    def mean(self) -> list[float]:
        return list(self.meta["normalization"]["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.meta["normalization"]["std"])

    @property
    def policy(self) -> InferencePolicy:
        """How this checkpoint's numbers were made (its recipe's TTA, float32): every inference path uses it."""
        return InferencePolicy.of(self.meta.get("train"))


# ----------------------------------------------------------------------------------------------- paths


def weights_path(path: str | os.PathLike) -> Path:
    """The weights file for `path`: a .safetensors file as given, or `model.safetensors` inside a folder."""
    path = Path(path)
    return path / WEIGHTS_NAME if path.is_dir() or (not path.suffix and not path.is_file()) else path


def optimizer_path(path: str | os.PathLike) -> Path:
    """Where the optimizer state of the checkpoint at `path` lives (beside the weights)."""
    weights = weights_path(path)
    return weights.with_name(weights.stem + OPTIMIZER_SUFFIX)


def find_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Every `*.safetensors` file under `root` (one level of run folders, and loose files), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in list(root.glob("*.safetensors")) + list(root.glob("*/*.safetensors"))
             if not p.parent.name.startswith(".")]  # skip folders being deleted (.deleted-<id>)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


# ----------------------------------------------------------------------------------------------- metadata


def library_versions() -> dict[str, str]:
    import safetensors

    from explorer import __name__ as package

    return {"python": platform.python_version(), "torch": torch.__version__, "safetensors": safetensors.__version__,
            package: _package_version()}


def _package_version() -> str:
    """The installed distribution's version; run from the source tree (never installed), pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return _source_tree_version(PYPROJECT)


def _source_tree_version(pyproject: Path) -> str:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        return "unknown (not installed; Python 3.10 cannot read pyproject.toml)"
    try:
        with open(pyproject, "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return "unknown (not installed, no readable pyproject.toml)"


def build_meta(model: Net, meta: dict) -> dict:
    """The metadata stored with `model`: what the caller gave, completed with what the model itself knows."""
    full = {
        "format_version": FORMAT_VERSION,
        "arch": model.cfg.to_dict(),
        "input_shape": list(model.input_shape),
        "num_classes": model.num_classes,
        "classes": None,
        "normalization": None,
        "train": None,
        "metrics": {},
        "data": None,
        "data_fingerprint": None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
    }
    # The caller's values win, except the ones the model defines (they must describe these weights).
    full.update({k: v for k, v in meta.items() if k not in ("arch", "input_shape", "num_classes", "format_version")})
    if isinstance(full.get("train"), TrainConfig):
        full["train"] = full["train"].to_dict()
    if full["classes"] is None:
        full["classes"] = [str(i) for i in range(model.num_classes)]
    if full["normalization"] is None:
        full["normalization"] = {"mean": [0.5] * model.input_shape[0], "std": [0.5] * model.input_shape[0]}
    validate_meta(full)
    return full


def validate_meta(meta: Any) -> ArchConfig:
    """Check every field loading relies on; CheckpointError says which one is wrong. Returns the ArchConfig."""
    if not isinstance(meta, dict):
        raise CheckpointError("checkpoint metadata is not a JSON object; the file was not written by explorer.")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError("checkpoint metadata has no format_version; the file was not written by explorer.")
    if version > FORMAT_VERSION or version < 1:
        raise CheckpointError(f"checkpoint format version {version} is unknown: this explorer reads version "
                              f"{FORMAT_VERSION}. Update explorer (or re-save the checkpoint with this version).")
    try:
        arch = ArchConfig.from_dict(meta.get("arch"))
        input_shape = tuple(meta.get("input_shape") or ())
        layer_shapes(arch, input_shape)
        if meta.get("train") is not None:
            TrainConfig.from_dict(meta["train"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"checkpoint metadata fails config validation: {err}") from None
    _check_classes(meta)
    _check_normalization(meta, input_shape[0])
    return arch


def _check_classes(meta: dict) -> None:
    num_classes, classes = meta.get("num_classes"), meta.get("classes")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise CheckpointError(f"checkpoint metadata: num_classes {num_classes!r} is not a whole number >= 2.")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError("checkpoint metadata: classes must be a list of class names.")
    if len(classes) != num_classes:
        raise CheckpointError(f"checkpoint metadata: {len(classes)} class names for {num_classes} classes.")


def _check_normalization(meta: dict, channels: int) -> None:
    norm = meta.get("normalization")
    ok = isinstance(norm, dict) and all(
        isinstance(norm.get(k), list) and len(norm[k]) == channels
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in norm[k])
        for k in ("mean", "std"))
    if not ok or min(norm["std"]) <= 0:
        raise CheckpointError(f"checkpoint metadata: normalization must be {{'mean': [...], 'std': [...]}} with "
                              f"{channels} finite values each and std > 0, got {norm!r}.")


# ----------------------------------------------------------------------------------------------- save


def _write_file(handle: io.BufferedWriter, data: bytes) -> None:
    """Write `data` (a seam the tests use to simulate a crash in the middle of a write)."""
    handle.write(data)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that readers see either the old file or the new one, never a mix."""
    # The lambda looks `_write_file` up at call time, so a test can replace it to simulate a crash mid-write.
    return atomic_write(path, lambda handle: _write_file(handle, data))


def _state_tensors(model: Net) -> dict[str, torch.Tensor]:
    # safetensors needs contiguous CPU tensors that share no memory: clone what we store.
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items()}


def _optimizer_bytes(optimizer_state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(_to_cpu(optimizer_state), buffer)
    data = buffer.getvalue()
    # Refuse to store what we could not read back: whatever needs more than the weights-only loader.
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"optimizer state holds objects other than tensors and plain values: {err}") from None
    return data


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def save_checkpoint(path: str | os.PathLike, model: Net, meta: dict,
                    optimizer_state: dict | None = None) -> Path:
    """Save `model` with its metadata (and optimizer state) atomically; returns the weights file path.

    `path` is a `.safetensors` file or a folder (then `model.safetensors` inside it). `meta` gives what the
    model does not know: classes, normalization {mean, std}, train (TrainConfig or dict), metrics, data,
    data_fingerprint; arch, input_shape, num_classes, versions, created and format_version are filled in.
    """
    from safetensors.torch import save as safetensors_save

    if not isinstance(model, Net):
        raise CheckpointError(f"save_checkpoint needs an explorer Net (from build_model), got {type(model).__name__}.")
    weights = weights_path(path)
    full = build_meta(model, meta)
    opt_file = optimizer_path(weights)
    if optimizer_state is not None:
        opt_data = _optimizer_bytes(optimizer_state)
        full["optimizer"] = {"file": opt_file.name, "sha256": hashlib.sha256(opt_data).hexdigest()}
        atomic_write_bytes(opt_file, opt_data)
    else:
        full.pop("optimizer", None)
    data = safetensors_save(_state_tensors(model), metadata={META_KEY: json.dumps(full), "format": "pt"})
    atomic_write_bytes(weights, data)
    if optimizer_state is None:
        opt_file.unlink(missing_ok=True)  # a stale state from an earlier save would not match these weights
    return weights


# ----------------------------------------------------------------------------------------------- load


def _read_source(source: str | os.PathLike | bytes | bytearray | memoryview) -> tuple[bytes, Path | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    path = _existing(weights_path(source))
    return read_regular(path, MAX_FILE_BYTES, CheckpointError), path


def _existing(path: Path) -> Path:
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"no checkpoint at {path}: check the path (a .safetensors file or a run folder).")
    return path


def _describe_non_checkpoint(data: bytes) -> str | None:
    """A message for files we recognise as something else (never parsed further)."""
    if data.startswith(ZIP_MAGIC):
        return ("this is a torch.save/zip file, which holds a pickle; explorer checkpoints are .safetensors and "
                "pickles are never loaded (they can run code). Re-save the weights with explorer.")
    # A safetensors file starts with its header length (8 bytes, little-endian) then '{': a length whose low
    # byte happens to be 0x80 must not be taken for a pickle's protocol marker.
    if data[:1] and data[0] == PICKLE_PROTOCOL_BYTE and data[8:9] != b"{":
        return ("this is a Python pickle; explorer never unpickles files (they can run code). "
                "Use a .safetensors checkpoint saved by explorer.")
    return None


def _parse_header(data: bytes, file_size: int | None = None) -> dict:
    """The safetensors JSON header, checked against the file size (truncation, garbage, wrong format).

    `data` is the whole file, or its start when `file_size` gives the full length."""
    file_size = len(data) if file_size is None else file_size
    known = _describe_non_checkpoint(data)
    if known:
        raise CheckpointError(f"not a checkpoint: {known}")
    if file_size > MAX_FILE_BYTES:
        raise CheckpointError(f"checkpoint refused: the file is {file_size / 2**20:,.0f} MiB, more than any network "
                              f"within the limit of {MAX_BUILD_PARAMS:,} parameters needs.")
    if len(data) < 8:
        raise CheckpointError(f"not a checkpoint: the file is only {len(data)} bytes (empty or truncated).")
    size = int.from_bytes(data[:8], "little")
    if size > MAX_HEADER_BYTES:
        raise CheckpointError("not a checkpoint: the file does not start with a safetensors header.")
    if 8 + size > len(data):
        raise CheckpointError("checkpoint is truncated: its header runs past the end of the file. "
                              "Copy or download it again.")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError("not a checkpoint: the safetensors header is not valid JSON (corrupted file?).") \
            from None
    if not isinstance(header, dict):
        raise CheckpointError("not a checkpoint: the safetensors header is not a JSON object.")
    _check_data_size(header, file_size - 8 - size)
    return header


def _check_data_size(header: dict, available: int) -> None:
    ends = [entry.get("data_offsets", [0, 0])[1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2]
    needed = max(ends, default=0)
    if not isinstance(needed, int) or needed > available:
        raise CheckpointError(f"checkpoint is truncated: the tensors need {needed} bytes but only {available} "
                              "are there. Copy or download it again.")


def _meta_from_header(header: dict) -> dict:
    stored = header.get("__metadata__")
    if not isinstance(stored, dict) or META_KEY not in stored:
        raise CheckpointError("not an explorer checkpoint: the safetensors file has no explorer metadata "
                              "(architecture, classes, normalization), so the model cannot be rebuilt.")
    try:
        meta = json.loads(stored[META_KEY])
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError("checkpoint metadata is corrupted (not valid JSON).") from None
    validate_meta(meta)
    check_load_limits(meta)
    return meta


def check_load_limits(meta: dict) -> None:
    """Refuse metadata whose network is too big to build here, from the cost model alone (nothing allocated)."""
    try:
        cost = model_cost(ArchConfig.from_dict(meta["arch"]), tuple(meta["input_shape"]), meta["num_classes"])
    except ConfigError as err:
        raise CheckpointError(f"checkpoint metadata fails config validation: {err}") from None
    refusal = build_refusal(cost)
    if refusal:
        raise CheckpointError(f"checkpoint refused (nothing was allocated): {refusal}")


def _read_head(path: Path) -> tuple[bytes, int]:
    """The 8-byte length and the JSON header of a file (not the tensors), and the file's size."""
    # Only a regular file (a FIFO would block, /dev/zero never ends); its size is judged by _parse_header.
    with open_regular(_existing(path), None, CheckpointError) as handle:
        try:
            head = handle.read(8)
            size = int.from_bytes(head[:8], "little") if len(head) == 8 else 0
            head += handle.read(size) if size <= MAX_HEADER_BYTES else b""
            total = os.fstat(handle.fileno()).st_size
        except OSError as err:
            raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror}.") from None
    return head, total


def read_meta(source: str | os.PathLike | bytes) -> dict:
    """The checkpoint's metadata, validated, without building the model (a path: reads only the header)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _meta_from_header(_parse_header(bytes(source)))
    head, file_size = _read_head(weights_path(source))
    return _meta_from_header(_parse_header(head, file_size))


def _load_tensors(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as safetensors_load

    try:
        return safetensors_load(data)
    except Exception as err:  # SafetensorError and friends: bad offsets, dtypes, overlapping data
        raise CheckpointError(f"checkpoint is corrupted: {str(err).splitlines()[0][:200]}") from None


def _check_tensors(model: Net, tensors: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + \
                ([f"unexpected {', '.join(extra[:5])}"] if extra else [])
        raise CheckpointError(f"checkpoint tensors do not match the architecture in its metadata: {'; '.join(parts)}.")
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"checkpoint tensor {name} has shape {list(got.shape)} but the architecture in its "
                                  f"metadata needs {list(want.shape)}: the weights belong to another network.")
        if got.dtype.is_floating_point != want.dtype.is_floating_point:
            raise CheckpointError(f"checkpoint tensor {name} has dtype {got.dtype}, expected {want.dtype}.")


def _load_optimizer(weights: Path | None, meta: dict, warnings: list[str]) -> dict | None:
    ref = meta.get("optimizer")
    if weights is None or not isinstance(ref, dict):
        return None
    name = Path(str(ref.get("file") or "")).name  # a bare name: never leave the checkpoint's folder
    path = weights.with_name(name or OPTIMIZER_SUFFIX.lstrip("."))
    if not path.exists():
        warnings.append(f"optimizer state {path.name} is missing: resuming starts a fresh optimizer.")
        return None
    try:
        data = read_regular(path, MAX_OPTIMIZER_BYTES, CheckpointError)
    except CheckpointError as err:
        warnings.append(f"optimizer state {path.name} cannot be used ({err}): resuming starts a fresh optimizer.")
        return None
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        warnings.append(f"optimizer state {path.name} does not belong to these weights (interrupted save?): "
                        "resuming starts a fresh optimizer.")
        return None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"optimizer state {path.name} refused: it holds more than tensors and plain values "
                              f"({str(err).splitlines()[0][:160]}).") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"optimizer state {path.name} is not a state dict.")
    return state


def load_checkpoint(source: str | os.PathLike | bytes, device: str | torch.device = "cpu",
                    with_optimizer: bool = True) -> LoadedCheckpoint:
    """Rebuild the model from the metadata, load the weights strictly, eval mode, on `device`.

    `source` is a `.safetensors` path, a run folder, or the bytes of an uploaded file (bytes carry no
    optimizer state). Anything we cannot vouch for raises CheckpointError; nothing in the file is executed.
    """
    if not isinstance(source, (bytes, bytearray, memoryview)):
        read_meta(source)  # the header alone first: a refused network never has its file read into memory
    data, path = _read_source(source)
    header = _parse_header(data)
    meta = _meta_from_header(header)
    try:
        model = build_model(ArchConfig.from_dict(meta["arch"]), tuple(meta["input_shape"]), meta["num_classes"])
    except ConfigError as err:
        raise CheckpointError(f"checkpoint metadata fails config validation: {err}") from None
    tensors = _load_tensors(data)
    _check_tensors(model, tensors)
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    warnings: list[str] = []
    optimizer_state = _load_optimizer(path, meta, warnings) if with_optimizer else None
    return LoadedCheckpoint(model, meta, optimizer_state, path, warnings)


def checkpoint_summary(meta: dict) -> dict:
    """Headline facts for lists and tables: architecture size, data, metrics."""
    cost = model_cost(ArchConfig.from_dict(meta["arch"]), tuple(meta["input_shape"]), meta["num_classes"])
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    summary = metrics.get("summary") if isinstance(metrics.get("summary"), dict) else {}

    def first(key: str, *fallbacks: Any) -> Any:
        # Training writes {"metrics": {last evaluation, "summary": {...}}}; hand-made metadata may be flat.
        for value in (summary.get(key), metrics.get(key), meta.get(key), *fallbacks):
            if value is not None:
                return value
        return None

    return {"params": cost.params, "flops": cost.flops, "input_shape": list(meta["input_shape"]),
            "classes": list(meta["classes"]), "data": meta.get("data"), "created": meta.get("created"),
            "final_test_accuracy": first("final_test_accuracy", metrics.get("test_accuracy")),
            "best_test_accuracy": first("best_test_accuracy"), "epochs_done": first("epochs_done"),
            "partial_epoch": meta.get("partial_epoch")}


__all__ = ["FORMAT_VERSION", "WEIGHTS_NAME", "LoadedCheckpoint", "save_checkpoint", "load_checkpoint", "read_meta",
           "validate_meta", "check_load_limits", "find_checkpoints", "weights_path", "optimizer_path",
           "atomic_write_bytes", "checkpoint_summary"]
