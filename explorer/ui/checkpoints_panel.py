"""The Checkpoints tab: pick a saved checkpoint (or upload one), see what it is, evaluate it on a dataset,
resume its training.

Evaluation results live in st.session_state (keyed by checkpoint, data and TTA) so reruns redraw them
without recomputing; loaded checkpoints are shared through st.cache_resource (keyed by path and mtime).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import streamlit as st

from explorer.errors import ExplorerError
from explorer.inspect.export import (  # architecture_line: the panel's design line, shared with the model card
    MEDIA_TYPES,
    SUFFIXES,
    ExportResult,
    architecture_line,
    check_images,
    export_model,
)
from explorer.store import settings
from explorer.store.checkpoint import LoadedCheckpoint, checkpoint_summary, find_checkpoints, load_checkpoint
from explorer.store.runs import RECORD_NAME, list_runs, run_record_for
from explorer.ui import eval_charts, widgets
from explorer.ui.format import human

KIND = "ckpt.kind"
SAVED = "ckpt.saved"
UPLOAD = "ckpt.upload"
DATA = "ckpt.data"
DATA_OTHER = "ckpt.data_other"
TTA = "ckpt.tta"
RESULT = "ckpt.result"
RESUME_EPOCHS = "ckpt.resume_epochs"
RESUME_MESSAGE = "ckpt.resume_message"
EXPORT_FORMAT = "ckpt.export_format"
EXPORTED = "ckpt.exported"  # (checkpoint identity, format) pairs built in this session: their downloads stay shown
EXPORT_LABELS = {"onnx": "ONNX", "torchscript": "TorchScript"}
OTHER_SOURCE = "other…"
KINDS = ("Saved checkpoint", "Upload a file")
GALLERY_SIZE = 24


# ----------------------------------------------------------------------------------------------- choosing


def checkpoint_options(runs_dir: Path) -> dict[str, str]:
    """Checkpoint path -> label ("name · best acc · status · run id"), newest first."""
    records = {r["id"]: r for r in list_runs(runs_dir, check_events=False)}  # cached by file times
    return {str(path): _checkpoint_label(path, records.get(path.parent.name) or {})
            for path in find_checkpoints(runs_dir)}


def _checkpoint_label(path: Path, record: dict) -> str:
    name = record.get("name") or record.get("preset") or path.parent.name
    best = (record.get("summary") or {}).get("best_test_accuracy")
    status = record.get("status")
    parts = [str(name)] + ([f"best {best:.1%}"] if isinstance(best, (int, float)) else [])
    parts += [status] if status in ("running", "stopped", "interrupted") else []
    return " · ".join(parts + [path.parent.name])


@st.cache_resource(max_entries=8, show_spinner=False)
def load_saved(path: str, mtime_ns: int) -> LoadedCheckpoint:  # mtime_ns: a re-saved file is reloaded
    return load_checkpoint(path, device="cpu")


@st.cache_resource(max_entries=4, show_spinner=False)
def _load_uploaded(data: bytes) -> LoadedCheckpoint:
    return load_checkpoint(data, device="cpu")


def _pick_checkpoint() -> tuple[LoadedCheckpoint | None, str | None]:
    """The chosen checkpoint and a stable identity for it (None when nothing usable is chosen)."""
    kind = st.radio("Checkpoint", KINDS, key=KIND, horizontal=True, label_visibility="collapsed")
    if kind == KINDS[1]:
        upload = st.file_uploader("A .safetensors checkpoint saved by explorer", key=UPLOAD,
                                  help="Pickles (.pt/.pth) are refused: loading them can run code.")
        if upload is None:
            return None, None
        data = upload.getvalue()
        return _load_or_error(lambda: _load_uploaded(data)), f"upload:{hashlib.sha256(data).hexdigest()[:16]}"
    runs_dir = settings.default_runs_dir()
    options = checkpoint_options(runs_dir)
    if not options:
        st.info(f"No checkpoints in `{runs_dir}` yet: train a network on the Train page, or upload a file.")
        return None, None
    if st.session_state.get(SAVED) not in options:
        st.session_state[SAVED] = next(iter(options))
    path = st.selectbox("Saved checkpoint", list(options), key=SAVED, format_func=options.get)
    mtime = Path(path).stat().st_mtime_ns if Path(path).exists() else 0
    return _load_or_error(lambda: load_saved(path, mtime)), f"{path}@{mtime}"


def _load_or_error(load) -> LoadedCheckpoint | None:
    try:
        return load()
    except ExplorerError as err:
        st.error(f"Checkpoint refused: {err}")
        return None


# ----------------------------------------------------------------------------------------------- describing


def _describe(loaded: LoadedCheckpoint) -> None:
    meta = loaded.meta
    facts = checkpoint_summary(meta)
    cols = st.columns(5)
    cols[0].metric("Parameters", f"{facts['params']:,}")
    cols[1].metric("FLOPs", human(facts["flops"]))
    cols[2].metric("Best test acc.", _pct(facts["best_test_accuracy"]))
    cols[3].metric("Final test acc.", _pct(facts["final_test_accuracy"]))
    cols[4].metric("Epochs", "—" if facts["epochs_done"] is None else facts["epochs_done"])
    shape = "×".join(map(str, facts["input_shape"]))
    st.markdown(f"**Architecture:** {architecture_line(meta['arch'])}")
    st.caption(f"Input {shape} · {len(facts['classes'])} classes ({', '.join(facts['classes'][:10])}"
               f"{'…' if len(facts['classes']) > 10 else ''}) · trained on `{facts['data'] or '?'}` · "
               f"saved {facts['created'] or '?'}")
    partial = facts.get("partial_epoch")
    if isinstance(partial, dict):
        st.info(f"A partial epoch: the run was stopped after {partial.get('batches')} of "
                f"{partial.get('steps_per_epoch')} batches of epoch {partial.get('epoch')}; its accuracy was "
                "evaluated at the stop. Resuming trains that epoch again from these weights.")
    for warning in loaded.warnings:
        st.warning(warning)
    with st.expander("Architecture, training config and library versions"):
        st.json({"arch": meta["arch"], "train": meta.get("train"), "normalization": meta["normalization"],
                 "metrics": meta.get("metrics"), "versions": meta.get("versions"),
                 "format_version": meta["format_version"]}, expanded=False)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


# ----------------------------------------------------------------------------------------------- evaluating


def data_options(trained_on: str | None) -> list[str]:
    """Sources to offer: the one the checkpoint was trained on first, then what is on this machine."""
    from explorer.ui.resources import cached_sources  # the Train page's scan, refreshed every 30 s

    names = [s["name"] for s in cached_sources() if s["available"]]
    if trained_on:
        names = [trained_on] + [n for n in names if n != trained_on]
    return names + [OTHER_SOURCE]


def _chosen_source(loaded: LoadedCheckpoint) -> str | None:
    options = data_options(loaded.meta.get("data"))
    if st.session_state.get(DATA) not in options:
        st.session_state[DATA] = options[0]
    left, right = st.columns([3, 1])
    choice = left.selectbox("Evaluate on", options, key=DATA,
                            help="The test split of this dataset; classes and image size must match the checkpoint.")
    own = loaded.policy
    right.checkbox("Test-time augmentation", key=TTA, value=own.views > 1,
                   help=f"On: the checkpoint's own inference policy ({own.describe()}; with flip added when it "
                        "had none), which gave the recorded numbers. Off: one view per image, what an exported "
                        "model does.")
    if choice == OTHER_SOURCE:
        text = st.text_input("Data source", key=DATA_OTHER, placeholder="folder:/path/to/images or cifar10:DIR")
        return text.strip() or None
    return choice


def _tta_choice(loaded: LoadedCheckpoint, tta: bool) -> bool | None:
    """The checkbox as evaluate_checkpoint's `tta_flip`: None keeps the checkpoint's own policy."""
    return None if tta == (loaded.policy.views > 1) else tta


def _run_evaluation(loaded: LoadedCheckpoint, source: str, tta: bool) -> dict:
    from explorer.engine.data import load_dataset
    from explorer.engine.evaluate import evaluate_checkpoint

    # Every source is checked, the one named in an uploaded checkpoint's metadata too.
    settings.check_app_source(source)
    dataset = load_dataset(source, settings.default_data_dir())
    evaluation = evaluate_checkpoint(loaded, dataset, tta_flip=_tta_choice(loaded, tta),
                                     misclassified_limit=GALLERY_SIZE)
    # Keep the few misclassified images themselves (H x W x C uint8) so the gallery needs no dataset later.
    images = [dataset.test_x[m["index"]].permute(1, 2, 0).numpy().copy() for m in evaluation.misclassified]
    return {"evaluation": evaluation, "images": images}


def _evaluate_section(loaded: LoadedCheckpoint, identity: str) -> None:
    st.subheader("Evaluate")
    source = _chosen_source(loaded)
    tta = bool(st.session_state.get(TTA, False))
    key = (identity, source, tta)
    if st.button("Evaluate", key="ckpt.evaluate", type="primary", disabled=source is None):
        try:
            with st.spinner(f"Evaluating on {source}…"):
                st.session_state[RESULT] = {"key": key} | _run_evaluation(loaded, source, tta)
        except ExplorerError as err:
            st.session_state.pop(RESULT, None)
            st.error(f"Cannot evaluate on {source}: {err}")
    result = st.session_state.get(RESULT)
    if result and result["key"] == key:
        _show_evaluation(result)


def _show_evaluation(result: dict) -> None:
    evaluation = result["evaluation"]
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{evaluation.accuracy:.2%}")
    cols[1].metric("Loss", f"{evaluation.loss:.4f}")
    cols[2].metric("Test images", f"{evaluation.count:,}")
    same = {True: "yes", False: "no", None: "unknown"}[evaluation.same_data_as_training]
    cols[3].metric("Same data as training", same)
    st.caption(f"Inference policy: {evaluation.policy} (the same on Inside a net, `evaluate` and `predict`).")
    for note in evaluation.notes:
        st.caption(note)
    left, right = st.columns(2)
    bars = eval_charts.per_class_accuracy_bars(evaluation.per_class, evaluation.accuracy)
    left.plotly_chart(bars, key="ckpt.per_class", width="stretch")
    heatmap = eval_charts.confusion_heatmap(evaluation.confusion, evaluation.classes)
    right.plotly_chart(heatmap, key="ckpt.confusion", width="stretch")
    _most_confused(evaluation)
    _gallery(evaluation, result["images"])
    st.download_button("Evaluation (JSON)", json.dumps(evaluation.to_dict(), indent=2), "evaluation.json",
                       "application/json", key="ckpt.download_eval", on_click="ignore")


def _most_confused(evaluation) -> None:
    if not evaluation.most_confused:
        return
    st.markdown("**Most confused pairs** (true → predicted)")
    rows = [{"true": p["true"], "predicted": p["predicted"], "images": p["count"],
             "share of true class": p["fraction"]} for p in evaluation.most_confused]
    st.dataframe(rows, key="ckpt.confused", hide_index=True,
                 column_config={"share of true class": st.column_config.NumberColumn(format="percent")})


def _gallery(evaluation, images: list[np.ndarray]) -> None:
    if not images:
        st.success("No misclassified test images.")
        return
    st.markdown(f"**Misclassified test images** (the {len(images)} most confident mistakes)")
    columns = st.columns(8)
    for i, (item, image) in enumerate(zip(evaluation.misclassified, images)):
        picture = image[..., 0] if image.shape[-1] == 1 else image
        caption = f"{item['true']} → {item['predicted']} ({item['confidence']:.0%})"
        columns[i % 8].image(picture, caption=caption, width=96)


# ----------------------------------------------------------------------------------------------- exporting


@st.cache_resource(max_entries=4, show_spinner=False)
def _build_export(identity: str, fmt: str, _loaded: LoadedCheckpoint) -> ExportResult:
    """The checked export of one checkpoint in one format (identity: path@mtime or the upload's hash)."""
    from explorer.ui.resources import cached_dataset  # checks the source against the allowed data roots

    images = check_images(_loaded, settings.default_data_dir(), load=cached_dataset)
    source = str(_loaded.path) if _loaded.path else "an uploaded checkpoint"
    return export_model(_loaded, fmt, images, export_file_name(_loaded, fmt), run_record_for(_loaded.path), source)


def export_file_name(loaded: LoadedCheckpoint, fmt: str) -> str:
    """`<run id>.onnx` for a run's checkpoint, `<file stem>.onnx` for a loose one: downloads keep their origin."""
    base = str(loaded.meta.get("run_id") or (loaded.path.name.split(".")[0] if loaded.path else "model"))
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in base).strip("-") or "model"
    return safe + SUFFIXES[fmt]


def _export_section(loaded: LoadedCheckpoint, identity: str) -> None:
    st.subheader("Export")
    left, right = st.columns([1, 2])
    fmt = left.radio("Format", list(EXPORT_LABELS), key=EXPORT_FORMAT, format_func=EXPORT_LABELS.get,
                     horizontal=True, help="ONNX runs in onnxruntime, browsers and most deployment tools; "
                                           "TorchScript needs PyTorch.")
    label = EXPORT_LABELS[fmt]
    right.caption("The exported model takes float pixels in [0, 1] and does the normalization itself; it is "
                  "checked against this checkpoint on 64 test images before it is offered, with a model card.")
    built = st.session_state.setdefault(EXPORTED, [])
    if [identity, fmt] not in built and st.button(f"Build {label} export", key="ckpt.export"):
        try:
            with st.spinner(f"Exporting to {label} and checking it…"):
                _build_export(identity, fmt, loaded)
        except ExplorerError as err:
            st.error(f"Cannot export to {label}: {err}")
        else:
            built.append([identity, fmt])
            st.rerun()  # redraw with the downloads in place of the build button
    if [identity, fmt] in built:
        _export_downloads(loaded, identity, fmt)


def _export_downloads(loaded: LoadedCheckpoint, identity: str, fmt: str) -> None:
    try:
        result = _build_export(identity, fmt, loaded)  # cached: rebuilt only if it was evicted
    except ExplorerError as err:
        st.error(f"Cannot export to {EXPORT_LABELS[fmt]}: {err}")
        return
    check = result.check
    st.caption(f"Checked on {check.description}: same top class on {check.agree}/{check.images}, "
               f"max |Δlogit| {check.max_abs_diff:.2g}; batch sizes {', '.join(map(str, check.batch_sizes))} ran.")
    left, right, _ = st.columns([1, 1, 2])
    left.download_button(f"Download {EXPORT_LABELS[fmt]} ({len(result.data) / 1024:,.0f} KiB)", result.data,
                         result.file_name, MEDIA_TYPES[fmt], key="ckpt.download_model", on_click="ignore")
    right.download_button("Download model card", result.card, result.card_name, "text/markdown",
                          key="ckpt.download_card", on_click="ignore")


# ----------------------------------------------------------------------------------------------- resuming


def _resume_section(loaded: LoadedCheckpoint) -> None:
    run_id = loaded.path.parent.name if loaded.path and (loaded.path.parent / RECORD_NAME).is_file() else None
    if run_id is None:
        return
    record = next((r for r in list_runs(settings.default_runs_dir(), check_events=False) if r["id"] == run_id), {})
    if not record.get("arch"):
        return  # unreadable record: nothing to resume from
    st.subheader("Resume training")
    if record.get("status") == "interrupted":
        st.warning(record.get("message") or "This run was interrupted.")
    left, right = st.columns([1, 2])
    epochs = widgets.number_input(widgets.number_spec("More epochs", 1, 1000), RESUME_EPOCHS, left, value=2)
    right.write("")
    if right.button(f"Resume training for {epochs} more epochs", key="ckpt.resume"):
        st.session_state[RESUME_MESSAGE] = _start_resume(record, int(epochs))
    message = st.session_state.get(RESUME_MESSAGE)
    if message:
        (st.error if message.startswith("Cannot") else st.success)(message)


def _start_resume(record: dict, epochs: int) -> str:
    """Start a new run that continues the record's run (its weights and optimizer state) for `epochs` epochs:
    the Train page's resume, watched there as if it had been started there."""
    from explorer.ui import resources, stop_resume

    return stop_resume.start_resume(resources.current_runner(), record, epochs, resources.attach,
                                    ": open the Train page to follow it")

# ----------------------------------------------------------------------------------------------- page


def render() -> None:
    """The Checkpoints tab."""
    st.header("Checkpoints")
    st.caption("Safetensors weights with their architecture, classes, normalization and training summary. "
               "Files that are not explorer checkpoints, and any pickle, are refused without running code.")
    loaded, identity = _pick_checkpoint()
    if loaded is None:
        return
    _describe(loaded)
    _evaluate_section(loaded, identity)
    _export_section(loaded, identity)
    _resume_section(loaded)
