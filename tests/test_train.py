"""The trainer: run directory contract, exact resume, failure handling, stop requests."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clustering.checkpoint import load_checkpoint
from clustering.config import TrainConfig
from clustering.data import load_dataset
from clustering.methods import get_method
from clustering.runs import read_metrics, read_predictions, read_status, request_stop
from clustering.train import train

DIGITS = load_dataset("digits", image_size=12)


def small_config(tmp_path: Path, **kw) -> TrainConfig:  # noqa: ANN003
    # split_merge and umap_gmm off: the tests here check the head as the run (and the refit) leaves
    # it; the moves and UMAP + GMM have their own tests (test_split_merge.py, test_umap_gmm.py).
    base = dict(method="uccc", dataset="digits", image_size=12, batch_size=256, out=str(tmp_path), seed=3, threads=2,
                projections="none", split_merge=False, umap_gmm=False)
    base.update(kw)
    return TrainConfig(**base)


def test_a_short_run_writes_a_valid_run_directory(tmp_path: Path) -> None:
    result = train(small_config(tmp_path, max_steps=8, run_id="r1"), progress=False, data=DIGITS)
    run = tmp_path / "r1"
    assert result.run_dir == run and result.state == "finished" and result.step == 8
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "uccc" and config["num_clusters"] == 10 and config["backbone"] == "cnn"
    assert config["method_params"]["khop"] == 2 and config["method_params"]["variant"] == "cosine"
    assert "torch" in config["versions"]
    status = read_status(run)
    assert status["state"] == "finished" and status["step"] == 8
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [7, 8]  # end of epoch 1, then the final evaluation
    for key in ("epoch", "step", "loss", "loss_ins", "loss_clu", "acc", "nmi", "ari", "jsd", "confidence",
                "n_nonempty", "cluster_sizes"):  # fmt: skip
        assert key in rows[0], key
    assert sum(rows[0]["cluster_sizes"]) == len(DIGITS)
    preds = read_predictions(run)
    assert preds["probs"].shape == (len(DIGITS), 10) and preds["z"].shape == (len(DIGITS), 128)
    np.testing.assert_array_equal(preds["label"], DIGITS.labels)
    np.testing.assert_array_equal(preds["cluster"], preds["probs"].argmax(1))
    for which in ("last", "best"):
        ckpt = load_checkpoint(run / "checkpoints" / f"{which}.pt")
        assert ckpt["config"]["run_id"] == "r1"
        assert {"model", "optimizer", "scheduler", "rng", "epoch", "step"} <= set(ckpt)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 8


def test_eval_every_evaluates_and_checkpoints_every_nth_epoch(tmp_path: Path) -> None:
    steps: list[int] = []
    train(small_config(tmp_path, max_steps=28, eval_every=2, run_id="e2"), progress=False, data=DIGITS,
          on_step=lambda step, parts: steps.append(step))  # fmt: skip
    rows = read_metrics(tmp_path / "e2")
    assert [r["epoch"] for r in rows] == [2, 4]  # 7 steps an epoch: epochs 2 and 4 end at step 14 and 28
    assert steps == list(range(1, 29))


def test_by_default_short_epochs_are_evaluated_by_time_and_rows_average_every_step_since_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clustering.train as train_module

    # A ratio no evaluation can meet: epoch 1 (before any evaluation was timed) and the run's end.
    monkeypatch.setattr(train_module, "EVAL_TIME_RATIO", 1e9)
    losses: dict[int, float] = {}
    train(small_config(tmp_path, max_steps=28, run_id="auto"), progress=False, data=DIGITS,
          on_step=lambda step, parts: losses.__setitem__(step, parts["loss"]))  # fmt: skip
    rows = read_metrics(tmp_path / "auto")
    assert [r["step"] for r in rows] == [7, 28]
    assert rows[0]["loss"] == pytest.approx(np.mean([losses[i] for i in range(1, 8)]), rel=1e-6)
    assert rows[1]["loss"] == pytest.approx(np.mean([losses[i] for i in range(8, 29)]), rel=1e-6)
    assert load_checkpoint(tmp_path / "auto" / "checkpoints" / "last.pt")["step"] == 28
    # A ratio every evaluation meets: every epoch, as eval_every=1; the same steps either way.
    monkeypatch.setattr(train_module, "EVAL_TIME_RATIO", 0.0)
    every: dict[int, float] = {}
    train(small_config(tmp_path, max_steps=28, run_id="every"), progress=False, data=DIGITS,
          on_step=lambda step, parts: every.__setitem__(step, parts["loss"]))  # fmt: skip
    assert [r["step"] for r in read_metrics(tmp_path / "every")] == [7, 14, 21, 28]
    assert every == pytest.approx(losses, rel=1e-6, abs=1e-7)


def test_a_run_stopped_after_unevaluated_epochs_resumes_exactly(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import clustering.train as train_module

    monkeypatch.setattr(train_module, "EVAL_TIME_RATIO", 1e9)  # epoch 1 and the end only
    reference: dict[int, float] = {}
    train(small_config(tmp_path, max_steps=21, run_id="ref"), progress=False, data=DIGITS,
          on_step=lambda step, parts: reference.__setitem__(step, parts["loss"]))  # fmt: skip

    def stop_at_16(step: int, _parts: dict[str, float]) -> None:
        if step == 16:  # in epoch 3; epoch 2's end (step 14) was not evaluated
            request_stop(tmp_path / "cut")

    first = train(small_config(tmp_path, max_steps=21, run_id="cut"), progress=False, data=DIGITS, on_step=stop_at_16)
    assert first.state == "stopped" and [r["step"] for r in read_metrics(first.run_dir)] == [7, 16]
    assert load_checkpoint(first.run_dir / "checkpoints" / "last.pt")["step"] == 16
    resumed: dict[int, float] = {}
    train(resume=first.run_dir, progress=False, data=DIGITS,
          on_step=lambda step, parts: resumed.__setitem__(step, parts["loss"]))  # fmt: skip
    assert sorted(resumed) == list(range(17, 22))
    for step in resumed:
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step
    rows = read_metrics(first.run_dir)
    assert [r["step"] for r in rows] == [7, 16, 21]
    assert rows[-1]["loss"] == pytest.approx(np.mean([resumed[i] for i in range(17, 22)]), rel=1e-6)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path: Path) -> None:
    # Uninterrupted reference: 10 steps (crossing the epoch boundary at step 7).
    reference: dict[int, float] = {}
    train(small_config(tmp_path, max_steps=10, run_id="ref"), progress=False, data=DIGITS,
          on_step=lambda s, parts: reference.__setitem__(s, parts["loss"]))  # fmt: skip

    # Same seed, stopped cleanly after step 5 (a STOP request, as the studio sends).
    def stop_at_5(step: int, _parts: dict[str, float]) -> None:
        if step == 5:
            request_stop(tmp_path / "int")

    first = train(small_config(tmp_path, max_steps=10, run_id="int"), progress=False, data=DIGITS, on_step=stop_at_5)
    assert first.state == "stopped" and first.step == 5
    assert read_status(tmp_path / "int")["state"] == "stopped"
    ckpt = load_checkpoint(tmp_path / "int" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 5 and ckpt["batch_in_epoch"] == 5

    resumed: dict[int, float] = {}
    second = train(resume=tmp_path / "int", progress=False, data=DIGITS,
                   on_step=lambda s, parts: resumed.__setitem__(s, parts["loss"]))  # fmt: skip
    assert second.state == "finished" and second.step == 10
    assert sorted(resumed) == [6, 7, 8, 9, 10]
    for step in resumed:
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step
    # The resumed checkpoint's optimizer state equals the uninterrupted run's.
    a = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "int" / "checkpoints" / "last.pt")
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        torch.testing.assert_close(sa["exp_avg"], sb["exp_avg"], rtol=1e-5, atol=1e-7)
    assert read_status(tmp_path / "int")["state"] == "finished"


def test_nan_loss_marks_the_run_failed_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uccc = get_method("uccc")
    original = uccc.training_step
    calls = {"n": 0}

    def poisoned(self, batch):  # noqa: ANN001, ANN202
        out = original(self, batch)
        calls["n"] += 1
        if calls["n"] == 9:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(uccc, "training_step", poisoned)
    with pytest.raises(FloatingPointError, match="step 9"):
        train(small_config(tmp_path, epochs=5, run_id="nan"), progress=False, data=DIGITS)
    run = tmp_path / "nan"
    status = read_status(run)
    assert status["state"] == "failed" and "step 9" in status["error"] and status["step"] == 8
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 7  # end of epoch 1, the last good state
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(read_metrics(run)) == 1


def test_time_budget_ends_the_run_cleanly(tmp_path: Path) -> None:
    result = train(small_config(tmp_path, minutes=0.05, run_id="budget"), progress=False, data=DIGITS)
    assert result.state == "finished"
    assert read_status(tmp_path / "budget")["reason"] == "time budget"
    assert read_metrics(tmp_path / "budget")[-1]["step"] == result.step


def test_existing_run_directory_is_not_overwritten(tmp_path: Path) -> None:
    train(small_config(tmp_path, max_steps=1, run_id="dup"), progress=False, data=DIGITS)
    with pytest.raises(ValueError, match="already exists"):
        train(small_config(tmp_path, max_steps=1, run_id="dup"), progress=False, data=DIGITS)


def test_literal_paper_variant_trains_and_logs(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, max_steps=2, run_id="paper", method_params={"variant": "paper"})
    result = train(cfg, progress=False, data=DIGITS)
    row = read_metrics(tmp_path / "paper")[-1]
    assert result.state == "finished" and math.isfinite(row["loss_clu"])


def test_a_run_saved_before_a_parameter_existed_is_rebuilt_as_it_was_trained(tmp_path: Path) -> None:
    """``strong_view`` (on by default) was added to UCCC after runs had been saved without it: such a
    run's config has no key for it, and resuming or re-evaluating it must rebuild the model it was
    trained with (two weak views), not today's default. A run saved with the key keeps its value."""
    from clustering.data_defaults import uccc_strong_view
    from clustering.evaluation import evaluate_run
    from clustering.setup import load_run_config

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo_runs" / "demo-uccc-digits"
    assert evaluate_run(demo, which="last")["acc"] > 0.5  # a config mismatch raises here
    saved = json.loads((demo / "config.json").read_text())
    assert saved["method_params"]["strong_view"] is True and load_run_config(demo).method_params["strong_view"]
    del saved["method_params"]["strong_view"]
    older = tmp_path / "older"
    older.mkdir()
    (older / "config.json").write_text(json.dumps(saved))
    assert uccc_strong_view(10)  # today's default for digits' 10 clusters (UCCCParams leaves it to the data)...
    assert load_run_config(older).method_params["strong_view"] is False  # ...is not what that run had


def test_a_finished_run_re_seeds_its_empty_clusters_before_its_last_evaluation(tmp_path: Path) -> None:
    """Two steps of Eq. 6 alone (no balance term) leave clusters empty; with ``reseed_final`` (the
    default) the run's end fills them on the clean data set, and the final metrics row,
    predictions.npz and last.pt all show the edited head. Without it, the same run ends with the
    empty clusters."""
    plain_params = {"reseed_final": False, "cc_weight": 0.0}
    plain = train(small_config(tmp_path, max_steps=2, run_id="plain", method_params=plain_params), progress=False,
                  data=DIGITS)  # fmt: skip
    plain_row = read_metrics(plain.run_dir)[-1]
    assert plain_row["n_nonempty"] < 10 and "final_reseeds" not in plain_row  # the case to fix

    filled = train(small_config(tmp_path, max_steps=2, run_id="filled", method_params={"cc_weight": 0.0}),
                   progress=False, data=DIGITS)  # fmt: skip
    rows = read_metrics(filled.run_dir)
    assert [r["step"] for r in rows] == [2]  # one evaluation, after the re-seeding
    assert rows[-1]["n_nonempty"] == 10 and rows[-1]["final_reseeds"] > 0
    preds = read_predictions(filled.run_dir)
    assert len(np.unique(preds["cluster"])) == 10
    # The two runs trained alike; last.pt differs only in the re-seeded rows of the head's last layer.
    a = load_checkpoint(plain.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(filled.run_dir / "checkpoints" / "last.pt")["model"]
    changed = {key for key in a if not torch.equal(a[key], b[key])}
    assert changed and changed <= {"model.cluster_head.2.weight", "model.cluster_head.2.bias"}, changed
    rows_changed = (a["model.cluster_head.2.weight"] != b["model.cluster_head.2.weight"]).any(dim=1)
    assert int(rows_changed.sum()) <= 2 * rows[-1]["final_reseeds"]  # each re-seed: the empty and its donor


def test_a_stopped_run_is_not_re_seeded_at_its_end(tmp_path: Path) -> None:
    """A stop is a pause (the run may be resumed), so the end-of-run hook waits for the real end."""

    def stop_at_1(step: int, _parts: dict[str, float]) -> None:
        if step == 1:
            request_stop(tmp_path / "paused")

    result = train(small_config(tmp_path, max_steps=4, run_id="paused"), progress=False, data=DIGITS,
                   on_step=stop_at_1)  # fmt: skip
    assert result.state == "stopped" and "final_reseeds" not in read_metrics(result.run_dir)[-1]
    resumed = train(resume=result.run_dir, progress=False, data=DIGITS)
    assert resumed.state == "finished" and "final_reseeds" in read_metrics(result.run_dir)[-1]


def test_a_finished_run_refits_its_head_and_every_output_shows_the_refit(tmp_path: Path) -> None:
    """``refit_head``: after the re-seeding, the head becomes the spherical k-means of its own
    partition of h; the last metrics row, predictions.npz, last.pt and ``eval`` of that checkpoint
    all give the refitted clusters. Off, the same run ends with the head as trained."""
    from clustering.evaluation import embed, evaluate_run
    from clustering.head_refit import spherical_kmeans
    from clustering.setup import build_method, load_run_config

    # float32 throughout, so that ``eval`` (float32) sees the run's own features bit for bit.
    kept = train(small_config(tmp_path, max_steps=3, run_id="kept", refit_head=False, amp="off"), progress=False,
                 data=DIGITS)  # fmt: skip
    assert "refit_moved" not in read_metrics(kept.run_dir)[-1]
    result = train(small_config(tmp_path, max_steps=3, run_id="refit", refit_head=True, amp="off"), progress=False,
                   data=DIGITS)  # fmt: skip
    row = read_metrics(result.run_dir)[-1]
    assert row["step"] == 3 and 0 < row["refit_moved"] < 1 and row["refit_iterations"] >= 1
    assert row["acc_as_trained"] == pytest.approx(read_metrics(kept.run_dir)[-1]["acc"])  # the head before it
    before = read_predictions(kept.run_dir)  # the same training: the head as it was before the refit
    after = read_predictions(result.run_dir)
    assert np.array_equal(before["h"], after["h"]) and not np.array_equal(before["cluster"], after["cluster"])
    # predictions.npz keeps h in float16: the refit's own float32 features come from the checkpoint.
    trained = build_method(load_run_config(kept.run_dir), DIGITS, torch.device("cpu"))
    trained.load_state_dict(load_checkpoint(kept.run_dir / "checkpoints" / "last.pt")["model"])
    h = torch.from_numpy(embed(trained.model, DIGITS.inputs, torch.device("cpu"))["h"])
    _, expected, _ = spherical_kmeans(h, torch.from_numpy(before["cluster"]), 10)
    assert np.array_equal(after["cluster"], expected.numpy())
    assert row["refit_moved"] == pytest.approx(float(np.mean(after["cluster"] != before["cluster"])), abs=1e-6)
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["model"]
    assert torch.equal(state["model.cluster_head.0.weight"], torch.eye(state["model.cluster_head.0.weight"].shape[0]))
    assert evaluate_run(result.run_dir, which="last")["acc"] == pytest.approx(row["acc"])
    # ``eval --refit-head`` on the run made without it gives what the run made with it gave.
    late = evaluate_run(kept.run_dir, which="last", refit_head=True)
    assert late["acc"] == pytest.approx(row["acc"]) and late["refit_moved"] == pytest.approx(row["refit_moved"])
    assert late["as_trained"]["acc"] == pytest.approx(read_metrics(kept.run_dir)[-1]["acc"])


def test_a_head_the_refit_cannot_express_is_an_error_when_asked_for_and_skipped_when_chosen(tmp_path: Path) -> None:
    from clustering.errors import ConfigError

    odd = {"logit_norm": True}  # UCCC's option appends a BatchNorm1d to the head
    with pytest.raises(ConfigError, match=r"not Linear-ReLU-Linear \(Linear, ReLU, Linear, BatchNorm1d\)"):
        train(small_config(tmp_path, max_steps=1, run_id="asked", refit_head=True, method_params=odd),
              progress=False, data=DIGITS)  # fmt: skip
    assert not (tmp_path / "asked").exists()
    # 40 clusters of 1,797 images: the data chooses the refit, and the head cannot take it: skipped.
    chosen = train(small_config(tmp_path, max_steps=1, run_id="chosen", num_clusters=40, method_params=odd),
                   progress=False, data=DIGITS)  # fmt: skip
    config = json.loads((chosen.run_dir / "config.json").read_text())
    assert config["refit_head"] is True and "refit_moved" not in read_metrics(chosen.run_dir)[-1]


def test_the_trainer_embeds_each_model_state_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoch's evaluation and the next epoch's hook share one embedding of the same weights; a
    step, an epoch hook (which may edit the model) or a loaded checkpoint makes the next one anew."""
    from clustering import trainer as trainer_module
    from clustering.setup import prepare_data, resolve_config
    from clustering.trainer import Trainer

    calls: list[int] = []
    real = trainer_module.embed_all
    monkeypatch.setattr(trainer_module, "embed_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = resolve_config(small_config(tmp_path, batch_size=64), DIGITS, "cpu")
    trainer = Trainer(cfg, prepare_data(cfg, DIGITS), torch.device("cpu"))
    first = trainer.embed()
    assert trainer.embed() is first and len(calls) == 1
    state = copy.deepcopy(trainer.state_dict()) | {"step": 0}  # state_dict holds the live tensors
    trainer.step(torch.arange(64))
    second = trainer.embed()
    assert second is not first and len(calls) == 2
    assert not np.array_equal(second["probs"], first["probs"])  # the step changed the model
    trainer.start_epoch(1)
    trainer.embed()
    assert len(calls) == 3
    trainer.load_state_dict(state)
    np.testing.assert_array_equal(trainer.embed()["probs"], first["probs"])
    assert len(calls) == 4
