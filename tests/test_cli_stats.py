"""`python -m explorer presets|stats` as a user runs them: JSON keys, values, exit codes, one-line errors."""

import json
import subprocess
import sys

from explorer.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=120)


def test_presets_json_lists_counts_and_budget(capsys) -> None:
    assert main(["presets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["tutorial"]["params"] == 62_006 and rows["tutorial"]["within_budget"]
    assert rows["study-wide"]["params"] == 267_530 and not rows["study-wide"]["within_budget"]
    assert rows["study-bn"]["config"]["batchnorm"] is True
    # Issue 5: the budget-optimal presets fit 256k and use the space (within 1 % of it).
    for name in ("fast", "best"):
        assert rows[name]["within_budget"] and rows[name]["params"] > 253_000


def test_stats_json_has_the_documented_keys(capsys) -> None:
    assert main(["stats", "--preset", "tutorial", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("params", "macs", "flops", "multiplications", "additions", "comparisons", "budget",
                "within_budget", "layers", "config"):
        assert key in out
    assert (out["params"], out["macs"], out["flops"]) == (62_006, 651_720, 1_303_440)
    assert out["layers"][0] | {"name": "conv1", "out_shape": [6, 28, 28], "params": 456} == out["layers"][0]


def test_stats_follows_input_shape_and_classes(capsys) -> None:
    assert main(["stats", "--preset", "tutorial", "--input-shape", "1,28,28", "--num-classes", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # conv1 1->6 5x5: 156; conv2: 2,416; fc1 256*120+120; fc2 120*84+84; out 84*5+5.
    assert out["params"] == 156 + 2_416 + 30_840 + 10_164 + 425


def test_stats_from_config_file_and_fit_budget(tmp_path, capsys) -> None:
    from explorer import PRESETS

    path = tmp_path / "net.json"
    path.write_text(PRESETS["study-wide"].to_json())
    assert main(["stats", "--config", str(path), "--fit-budget", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["within_budget"] and 240_000 < out["params"] <= 256_000


def test_invalid_config_exits_2_with_one_line_and_no_traceback(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"conv": [{"out_channels": 8, "kernel": 4}]}))
    result = run_cli("stats", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: conv1 kernel: 4 is not allowed; choose one of 1, 3, 5, 7."]
    collapsed = run_cli("stats", "--preset", "tutorial", "--input-shape", "3,8,8")
    assert collapsed.returncode == 2 and "Traceback" not in collapsed.stderr
    assert "conv2: the 2x2 feature map is smaller than its 5x5 kernel" in collapsed.stderr
    missing = run_cli("stats", "--config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read config file" in missing.stderr
    notjson = tmp_path / "x.json"
    notjson.write_text("{oops")
    broken = run_cli("stats", "--config", str(notjson))
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1


def test_arch_flag_takes_inline_json_and_excludes_preset(capsys) -> None:
    from explorer import PRESETS

    assert main(["stats", "--arch", PRESETS["tutorial"].to_json(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 62_006
    both = run_cli("stats", "--preset", "tutorial", "--arch", PRESETS["tutorial"].to_json())
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_train_flag_out_of_range_exits_2_with_one_line_naming_it() -> None:
    result = run_cli("train", "--preset", "tutorial", "--data", "synthetic:20", "--lr", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m explorer train: error: argument --lr: lr: 0 is out of range; use a value from 1e-08 to 100."]
