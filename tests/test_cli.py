"""The command line: clear one-line errors for bad input, and a small end-to-end train + eval."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clustering.cli import _add_train_args, main
from clustering.methods import method_names

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--method", "kmeanz"], "unknown method 'kmeanz'; valid: "),
        (["--dataset", "imagenet-1k"], "unknown dataset 'imagenet-1k'; valid: "),
        (
            ["--dataset", "mnist-test", "--root", "/nonexistent/mnist"],
            "'/nonexistent/mnist' for dataset 'mnist-test' does not exist",
        ),
        (["--dataset", "mnist-test"], "needs --root"),
        (["--num-clusters", "1"], "num_clusters must be an integer >= 2"),
        (["--backbone", "foo"], "unknown backbone 'foo'; valid: cnn, mlp, resnet18, resnet34"),
        (["--augment", "foo"],
         "unknown augmentation preset 'foo'; valid: digits, gray-flip, natural, natural-large, none"),
        (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
        (["--batch-size", "1"], "batch_size must be an integer >= 2"),
        (["--khop", "0"], "khop must be >= 1"),
        (["--tolerance", "6", "--num-clusters", "5"], "not in (-1, 1)"),
        (["--param", "nonsense=1"], "has no parameter(s) nonsense; its parameters:"),
        (["--variant", "fancy"], "must be one of cosine, paper"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--method", "x"], "valid"),
    ],
)
def test_bad_training_input_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    code, _out, err = run_cli(capsys, "train", "--out", str(tmp_path), "--max-steps", "1", *args)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    if "cuda" in args:
        assert "CUDA is not available" in err
    else:
        assert message in err


# Flags whose value is free text or a path: nothing to range-check. --dataset is checked when the
# data loads (a DataSet given in code may carry any name), with the valid names.
FREE_TEXT = {"dataset", "root", "label_column", "out", "run_id", "config", "resume", "param"}
# UCCC's shortcuts, validated by the method's Params (the same one-line error).
BAD_METHOD_PARAMS = {"pos_conf": ["1.5"], "tolerance": ["0"], "khop": ["0"], "variant": ["fancy"],
                     "cluster_temperature": ["0"], "instance_temperature": ["-1"]}  # fmt: skip


def train_value_actions() -> list[argparse.Action]:
    parser = argparse.ArgumentParser()
    _add_train_args(parser)
    return [a for a in parser._actions if a.option_strings and a.nargs != 0 and a.dest != "help"]


def bad_values(action: argparse.Action) -> list[str]:
    from clustering.rules import FIELD_RULES, Choices

    if action.dest in BAD_METHOD_PARAMS:
        return BAD_METHOD_PARAMS[action.dest]
    rule = FIELD_RULES[action.dest]
    if isinstance(rule, Choices):
        return [rule.invalid_example()]
    return [str(v) for v in rule.invalid_examples()] + (["1.5"] if rule.integer else []) + ["nan"]


def test_every_train_flag_with_a_value_has_a_rule() -> None:
    from clustering.rules import FIELD_RULES

    known = set(FIELD_RULES) | FREE_TEXT | set(BAD_METHOD_PARAMS)
    uncovered = [a.option_strings[0] for a in train_value_actions() if a.dest not in known]
    assert not uncovered, f"flags without a rule in clustering.rules.FIELD_RULES: {uncovered}"


@pytest.mark.parametrize(
    "flag,value",
    [(a.option_strings[0], v) for a in train_value_actions() if a.dest not in FREE_TEXT for v in bad_values(a)],
)
def test_every_bad_flag_value_is_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, value: str
) -> None:
    code, out, err = run_cli(capsys, "train", "--out", str(tmp_path), "--max-steps", "1", f"{flag}={value}")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "valid:" in err or "must be" in err or "invalid" in err, err
    assert not list(tmp_path.iterdir()), "a refused run must not leave a run directory"


def test_malformed_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{ not json")
    code, _, err = run_cli(capsys, "train", "--config", str(bad))
    assert code == 2 and "is not valid JSON" in err
    bad.write_text(json.dumps({"method": "uccc", "learning_rate": 0.1}))
    code, _, err = run_cli(capsys, "train", "--config", str(bad))
    assert code == 2 and "unknown config key(s) learning_rate" in err


def _fake_run(tmp_path: Path, payload: bytes | None = None, obj: object = None) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "uccc", "dataset": "digits", "image_size": 16}))
    target = run / "checkpoints" / "best.pt"
    if payload is not None:
        target.write_bytes(payload)
    else:
        torch.save(obj, target)
    return run


def test_corrupt_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = _fake_run(tmp_path, payload=b"PK\x03\x04 this is not a checkpoint")
    code, _, err = run_cli(capsys, "eval", str(run))
    assert code == 2 and "is not a readable checkpoint" in err


def test_foreign_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = _fake_run(tmp_path, obj={"state_dict": {"w": torch.zeros(2)}})
    code, _, err = run_cli(capsys, "eval", str(run))
    assert code == 2 and "is not a Cluster Studio checkpoint" in err


def test_resume_of_a_folder_that_is_not_a_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path))
    assert code == 2 and "no readable config.json" in err


def test_methods_lists_every_registered_method(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    for name in method_names():
        assert out.count(f"\n{name} ") + out.startswith(f"{name} ") == 1
    assert "khop=2" in out and "tolerance=4.0" in out
    blocks: dict[str, str] = {}
    for line in out.splitlines():  # one block per method: its name line, then indented lines
        if line and not line.startswith(" "):
            name = line.split()[0]
        blocks[name] = blocks.get(name, "") + line + "\n"
    assert "from the data where unset: instance_temperature, cluster_temperature" in blocks["sacc"]
    assert "from the data where unset: rgc_temperature" in blocks["gcc"]
    assert "from the data" not in blocks["lnscc"]  # no parameter of LNSCC's is chosen from the data


def test_end_to_end_train_then_eval_on_another_split(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    train = subprocess.run(
        [sys.executable, "-m", "clustering", "train", "--dataset", "digits", "--split", "train", "--max-steps", "6",
         "--batch-size", "128", "--out", str(tmp_path), "--run-id", "e2e", "--no-progress", "--threads", "2",
         "--projections", "none"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "finished:" in train.stdout and "acc=" in train.stdout

    def evaluate(*flags: str) -> str:  # ``eval`` of the run on its test split; its stdout
        done = subprocess.run([sys.executable, "-m", "clustering", "eval", str(tmp_path / "e2e"), "--split", "test",
                               *flags], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    metrics = json.loads(evaluate("--json"))
    assert metrics["num_samples"] == 297 and metrics["split"] == "test"
    assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["jsd"] <= 1.0
    assert "as_trained" not in metrics  # 150 images a cluster: the run kept its head as trained
    refitted = evaluate("--refit-head")
    assert "head refit:" in refitted and f"as trained: acc {metrics['acc']:.4f}" in refitted
    after = json.loads(evaluate("--split-merge", "--json"))
    assert "split_merge_moves" in after and ("as_trained" in after) == (after["split_merge_moves"] > 0)
    again = json.loads(evaluate("--kmeans-restarts", "3", "--json"))
    assert again["restarts_won"] in (0.0, 1.0) and ("as_trained" in again) == (again["restarts_won"] == 1.0)
    mixture = evaluate("--umap-gmm")
    assert "UMAP + GMM:" in mixture and f"as trained: acc {metrics['acc']:.4f}" in mixture


def test_flags_given_at_their_default_still_override_the_config_file(tmp_path: Path) -> None:
    from clustering.cli import build_parser, config_from_args, given_train_flags

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"method": "uccc", "dataset": "digits", "seed": 5, "amp": "off", "eval_every": 3}))

    def resolved(*flags: str):  # noqa: ANN202
        argv = ["train", "--config", str(path), *flags]
        args = build_parser().parse_args(argv)
        args.explicit = given_train_flags(argv[1:])
        return config_from_args(args)

    kept = resolved()
    assert (kept.seed, kept.amp, kept.eval_every) == (5, "off", 3)  # the file's values
    given = resolved("--seed", "0", "--amp=auto", "--eval-every", "1")  # seed and amp at their flags' defaults
    assert (given.seed, given.amp, given.eval_every) == (0, "auto", 1)
    assert given_train_flags(["--seed", "0", "--no-progress"]) == {"seed", "no_progress"}
