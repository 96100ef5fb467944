"""The design in the URL (explorer.ui.links): round trips, short links, and every kind of bad link refused."""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib

import pytest

from explorer import PRESETS
from explorer.engine.recipes import RECIPES
from explorer.ui import links
from explorer.ui import state as arch_keys
from explorer.ui import train_state as train_keys
from explorer.ui.links import Design, LinkError


def _edited(name: str, recipe: str) -> Design:
    """A design that differs from its preset and recipe in a few places, plus budget, input and data."""
    arch = PRESETS[name]
    first = dataclasses.replace(arch.conv[0], out_channels=arch.conv[0].out_channels + 3)
    arch = dataclasses.replace(arch, conv=(first, *arch.conv[1:]), dropout=0.25)
    train = RECIPES[recipe].replace(epochs=7, lr=0.0375, augment=("flip",), crop_padding=2)
    return Design(arch=arch, train=train, budget=300_000, input_shape=(1, 28, 28), num_classes=3,
                  data="synthetic:500")


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_preset_and_recipe_round_trips_by_name(preset, recipe):
    design = Design(arch=PRESETS[preset], train=RECIPES[recipe], preset=preset, recipe=recipe)
    params = links.encode(design)
    assert links.DESIGN_PARAM not in params  # a named preset and recipe need no blob
    assert params.get("preset", "study-bn") == preset and params.get("recipe", "fast") == recipe
    assert links.decode(params) == design


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_edited_designs_round_trip_and_stay_short(preset, recipe):
    design = _edited(preset, recipe)
    params = links.encode(design)
    # Written against the nearest preset: never a longer difference than against the one it was edited from.
    chosen = PRESETS[params.get("preset", "study-bn")]
    assert len(json.dumps(links.arch_diff(design.arch, chosen))) <= len(json.dumps(links.arch_diff(design.arch,
                                                                                               PRESETS[preset])))
    decoded = links.decode(params)
    assert decoded == dataclasses.replace(design, preset=None, recipe=None)
    assert len(params["d"]) < 200


def test_the_default_design_is_a_bare_url():
    assert links.encode(Design()) == {}
    assert links.read({}) == (None, None)
    assert links.decode({}) == Design()


def test_a_deflated_blob_is_used_when_shorter():
    blocks = tuple(dataclasses.replace(PRESETS["best"].conv[0], out_channels=17) for _ in range(8))
    design = Design(arch=dataclasses.replace(PRESETS["best"], conv=blocks, fc=(33, 33, 33, 33)))
    blob = links.encode(design)["d"]
    assert blob.startswith("z")
    assert links.decode(links.encode(design)).arch == design.arch


def test_widget_values_round_trip_through_a_design():
    state: dict = {}
    arch_keys.init_state(state)
    train_keys.init_state(state)
    design = links.decode(links.encode(_edited("modern", "best")))  # as a link delivers it: edited, so custom
    state.update(links.design_values(design))
    assert links.design_of(state) == dataclasses.replace(design, preset="study-bn", recipe="fast")
    assert state[arch_keys.PRESET] == "custom" and state[train_keys.RECIPE] == "custom"
    assert links.encode(links.design_of(state)) == links.encode(design)


def test_a_folder_source_fills_the_folder_picker():
    values = links.source_values("folder:/data/my images")
    assert values == {train_keys.SOURCE: train_keys.FOLDER_CHOICE, train_keys.FOLDER: "/data/my images"}
    assert links.source_values("cifar10") == {train_keys.SOURCE: "cifar10"}


def _blob(data, deflate: bool = False) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    if deflate:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        raw = packer.compress(raw) + packer.flush()
    return ("z" if deflate else "j") + base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD = links.encode(_edited("fast", "study"))["d"]
BAD_LINKS = {
    "garbage": {"d": "not a design at all"},
    "unknown format": {"d": "x" + GOOD[1:]},
    "truncated": {"preset": "fast", "recipe": "study", "d": GOOD[: len(GOOD) // 2]},
    "bad base64": {"d": "j!!!!"},
    "not json": {"d": _blob(b"{oops")},
    "not an object": {"d": _blob([1, 2, 3])},
    "unknown part": {"d": _blob({"x": 1})},
    "unknown preset": {"preset": "../../etc/passwd"},
    "unknown recipe": {"recipe": "turbo"},
    "unknown arch key": {"d": _blob({"a": {"wings": 2}})},
    "arch part not an object": {"d": _blob({"a": [1]})},
    "wrong type in arch": {"d": _blob({"a": {"dropout": "lots"}})},
    "out of range train": {"d": _blob({"t": {"epochs": -3}})},
    "wrong type in train": {"d": _blob({"t": {"lr": [0.1]}})},
    "block not an object": {"d": _blob({"a": {"conv": [7]}})},
    "budget a string": {"d": _blob({"budget": "256k"})},
    "budget a bool": {"d": _blob({"budget": True})},
    "budget too big": {"d": _blob({"budget": 10**30})},
    "input too short": {"d": _blob({"input": [3, 32]})},
    "input a float": {"d": _blob({"input": [3, 32.5, 32]})},
    "classes below 2": {"d": _blob({"classes": 1})},
    "data not text": {"d": _blob({"data": {"folder": 1}})},
    "data huge": {"d": _blob({"data": "x" * 5000}, deflate=True)},  # a short blob that expands
    "huge parameter": {"d": "j" + "A" * 100_000},
    "zip bomb": {"d": _blob(b"[" + b" " * 5_000_000 + b"]", deflate=True)},
    "deep nesting": {"d": _blob(b"[" * 100_000 + b"]" * 100_000, deflate=True)},
    "params not text": {"d": 5},
}


@pytest.mark.parametrize("case", list(BAD_LINKS))
def test_a_bad_link_gives_a_message_and_no_design(case):
    design, message = links.read(BAD_LINKS[case])
    assert design is None
    assert message.startswith("This link's design cannot be read:")
    assert message.endswith("Showing the defaults instead.")


def test_bad_links_raise_link_errors_that_say_what_is_wrong():
    with pytest.raises(LinkError, match="turbo' does not exist here; known: study, fast, best"):
        links.decode({"recipe": "turbo"})
    with pytest.raises(LinkError, match="epochs: -3 is out of range"):
        links.decode({"d": _blob({"t": {"epochs": -3}})})
    with pytest.raises(LinkError, match="cut short or edited"):
        links.decode({"d": GOOD[:-5] + "#"})


def test_a_repeated_parameter_counts_once():
    params = links.encode(_edited("best", "best"))
    design, message = links.read({k: ["garbage", v] for k, v in params.items()})
    assert message is None and design.arch == _edited("best", "best").arch
