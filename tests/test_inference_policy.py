"""One inference policy (issue 19 item 2): the same checkpoint and image give the same probabilities on every
path — training's evaluation, `evaluate`, `predict`, the Checkpoints and Inside-a-net pages, the search's trials —
and the export's check and model card say what the exported graph does (one view, no TTA)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from explorer.arch.config import ArchConfig, ConvBlock
from explorer.cli import main
from explorer.engine.config import TrainConfig
from explorer.engine.data import load_dataset
from explorer.engine.evaluate import NO_TTA, InferencePolicy, evaluate_checkpoint, evaluate_model
from explorer.inspect import net
from explorer.inspect.export import _check, check_images, model_card, pixel_model
from explorer.search.trial import Objective
from explorer.store.checkpoint import load_checkpoint
from explorer.store.runner import RunProcess, RunSpec
from explorer.ui import inspect_panel

TINY = ArchConfig(conv=(ConvBlock(16, pool="max"), ConvBlock(32, pool="max")), batchnorm=True, head="maxpool")
# Flip and translate TTA: the policy every path must apply; 1 epoch of 200 synthetic images.
RECIPE = TrainConfig(epochs=1, batch_size=32, test_batch_size=200, optimizer="adam", lr=3e-3, device="cpu",
                     tta_flip=True, tta_translate=1)
DATA = "synthetic:200"


@pytest.fixture
def trained(runs_dir):
    record = RunProcess(RunSpec(TINY, RECIPE, DATA)).run()
    return record, load_checkpoint(runs_dir / record["id"]), load_dataset(DATA)


def test_the_policy_comes_from_the_recipe_and_says_what_it_is():
    policy = InferencePolicy.of(RECIPE)
    assert policy == InferencePolicy.of(RECIPE.to_dict()) == InferencePolicy(True, 1) and policy.views == 6
    assert policy.describe("cpu") == "flip + ±1 px translate TTA (6 views), float32, on cpu"
    assert policy.with_tta(None) == policy and policy.with_tta(False) == NO_TTA
    assert InferencePolicy.of(None) == NO_TTA and NO_TTA.describe() == "no TTA (one view), float32"


def test_every_path_gives_the_same_probabilities_for_one_image(trained, tmp_path, capsys):
    record, loaded, dataset = trained
    pixels = dataset.test_x[0]
    reference = InferencePolicy(True, 1).probabilities(loaded.model, pixels[None], loaded.mean, loaded.std)[0]
    assert loaded.policy == InferencePolicy(True, 1)
    # Inside a net (the page's cached analysis and the package function it calls).
    assert torch.allclose(net.probabilities(loaded.model, pixels, loaded.mean, loaded.std, loaded.policy),
                          reference, atol=1e-6, rtol=0)
    page = inspect_panel._analyse("id", "digest", None, loaded, pixels)
    assert [p.index for p in page.predictions] == reference.topk(5).indices.tolist()
    assert [p.probability for p in page.predictions] == pytest.approx(reference.topk(5).values.tolist(), abs=1e-6)
    # evaluate and the Checkpoints page (evaluate_checkpoint -> evaluate_model under the checkpoint's policy).
    evaluated = evaluate_model(loaded.model, pixels[None], dataset.test_y[:1], loaded.mean, loaded.std,
                               policy=loaded.policy)
    assert torch.allclose(evaluated["logits"].softmax(dim=1)[0], reference, atol=1e-6, rtol=0)
    # predict, from an exact-size PNG (lossless: the same pixels).
    image = tmp_path / "test0.png"
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(image)
    assert main(["predict", str(loaded.path), str(image), "--top", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["tta_flip"], report["tta_translate"]) == (True, 1) and "6 views" in report["policy"]
    from_cli = torch.zeros(10)
    for entry in report["predictions"][0]["top"]:
        from_cli[entry["index"]] = entry["probability"]
    assert torch.allclose(from_cli, reference, atol=1e-6, rtol=0)
    # Without the policy (what the Inside-a-net page did before) the numbers differ: the test can fail.
    plain = NO_TTA.probabilities(loaded.model, pixels[None], loaded.mean, loaded.std)[0]
    assert not torch.allclose(plain, reference, atol=1e-6, rtol=0)


def test_training_evaluate_and_the_search_trial_agree_on_the_whole_test_set(trained):
    record, loaded, dataset = trained
    epoch = json.loads([line for line in (loaded.path.parent / "events.jsonl").read_text().splitlines()
                        if '"type": "epoch"' in line][0])
    evaluation = evaluate_checkpoint(loaded, dataset)
    assert evaluation.accuracy == epoch["test_accuracy"] == record["summary"]["final_test_accuracy"]
    assert evaluation.loss == pytest.approx(epoch["test_loss"], rel=1e-6)
    assert evaluation.policy == "flip + ±1 px translate TTA (6 views), float32, on cpu"
    snapshot = SimpleNamespace(model=loaded.model, normalization=loaded.meta["normalization"])
    assert Objective._test_accuracy(snapshot, dataset, RECIPE) == evaluation.accuracy
    assert evaluate_checkpoint(loaded, dataset, tta_flip=False).policy.startswith("no TTA")


def test_the_export_check_and_card_state_the_graphs_policy(trained, runs_dir):
    record, loaded, _ = trained
    images = check_images(loaded, runs_dir)
    check = _check(loaded, images, pixel_model(loaded))  # the graph's own computation, in PyTorch
    assert check.agree == check.images and check.max_abs_diff < 1e-4  # against NO_TTA: one view, like the graph
    card = model_card(loaded, "onnx", check, "net.onnx", record)
    assert "Measured with flip + ±1 px translate TTA (6 views), float32" in card
    assert "one view per image (no TTA), so its accuracy differs" in card and "--no-tta" in card
    assert "for these very weights (the last whole epoch" in card
