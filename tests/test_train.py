"""rnnlab.train: exact resume, checkpoints on disk, the NaN guard, config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnlab.io import CheckpointError, read_checkpoint
from rnnlab.train import (TrainConfig, Trainer, TrainError, TrainingDiverged, checkpoint_path,
                          list_checkpoints, read_metrics)

SMALL = dict(task="adding", seq_len=6, hidden=5, batch=3, every=1000, keep=3)


def _weights(trainer):
    return trainer.model.state_dict()


def _assert_same_state(a: Trainer, b: Trainer):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), f"weight {k} differs"
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["step"] == sb["step"] and sa["hyperparameters"] == sb["hyperparameters"]
    assert sa["buffers"].keys() == sb["buffers"].keys()
    for k in sa["buffers"]:
        assert np.array_equal(sa["buffers"][k], sb["buffers"][k]), f"buffer {k} differs"
    assert a.data_rng.bit_generator.state == b.data_rng.bit_generator.state
    assert a.step == b.step


def _losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir)]


class _Crash(Exception):
    pass


# ---------------------------------------------------------------- exact resume


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("optimizer, extra", [("sgd", {"momentum": 0.9}), ("adam", {})])
def test_resume_is_bit_exact(tmp_path, optimizer, extra, layers):
    """N steps, stop, resume for M more == N + M steps in one go, bit for bit."""
    n, m = 7, 6
    config = TrainConfig(model="lstm", layers=layers, optimizer=optimizer, lr=0.05,
                         steps=n + m, clip=1.0, **extra, **SMALL)
    whole = Trainer(config, tmp_path / "whole", progress=False)
    assert whole.run().status == "completed"

    first = Trainer(TrainConfig(**{**config.to_dict(), "steps": n}), tmp_path / "split",
                    progress=False)
    assert first.run().step == n
    resumed = Trainer.resume(tmp_path / "split", steps=n + m, progress=False)
    assert resumed.step == n
    result = resumed.run()
    assert (result.status, result.step) == ("completed", n + m)
    _assert_same_state(whole, resumed)
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "split")


def test_interrupt_saves_the_current_step_and_resume_is_exact(tmp_path):
    """request_stop (what Ctrl-C does) finishes the step, checkpoints it, returns."""
    config = TrainConfig(model="lstm", optimizer="adam", steps=12, **{**SMALL, "every": 5})
    whole = Trainer(config, tmp_path / "whole", progress=False)
    whole.run()

    stopped = Trainer(config, tmp_path / "stop", progress=False)
    result = stopped.run(on_step=lambda row: row["step"] == 8 and stopped.request_stop())
    assert (result.status, result.step) == ("interrupted", 8)
    assert result.checkpoint == checkpoint_path(tmp_path / "stop", 8)
    assert [s for s, _ in list_checkpoints(tmp_path / "stop")] == [5, 8]

    resumed = Trainer.resume(tmp_path / "stop", progress=False)
    assert resumed.run().status == "completed"
    _assert_same_state(whole, resumed)
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "stop")


def test_crash_between_checkpoints_resumes_from_the_last_one(tmp_path):
    """Steps after the last checkpoint are redone; their stale metrics lines are dropped."""
    config = TrainConfig(model="rnn", optimizer="sgd", steps=12, **{**SMALL, "every": 4})
    whole = Trainer(config, tmp_path / "whole", progress=False)
    whole.run()

    def crash(row):
        if row["step"] == 10:
            raise _Crash

    crashed = Trainer(config, tmp_path / "crash", progress=False)
    with pytest.raises(_Crash):
        crashed.run(on_step=crash)
    assert len(read_metrics(tmp_path / "crash")) == 10
    resumed = Trainer.resume(tmp_path / "crash", progress=False)
    assert resumed.step == 8
    resumed.run()
    _assert_same_state(whole, resumed)
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "crash")


@pytest.mark.parametrize("model", ["mlp", "rnn", "lstm", "gru"])
@pytest.mark.parametrize("task", ["adding", "copy", "sine", "digits"])
def test_every_model_and_task_trains_and_resumes_exactly(tmp_path, model, task):
    sizes = {"adding": {"seq_len": 4}, "copy": {"seq_len": 3, "n_symbols": 3, "copy_length": 2},
             "sine": {"seq_len": 4, "noise": 0.1}, "digits": {}}[task]
    config = TrainConfig(model=model, task=task, hidden=4, batch=3, steps=4, every=2,
                         optimizer="sgd", layers=2, **sizes)
    whole = Trainer(config, tmp_path / "whole", progress=False)
    whole.run()
    assert all(np.isfinite(r["loss"]) for r in read_metrics(tmp_path / "whole"))

    part = Trainer(config, tmp_path / "part", progress=False)
    part.run(on_step=lambda row: row["step"] == 2 and part.request_stop())
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    resumed.run()
    _assert_same_state(whole, resumed)


# ---------------------------------------------------------------- files


def test_run_folder_contents(tmp_path):
    config = TrainConfig(model="lstm", steps=7, **{**SMALL, "every": 2, "keep": 2})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    rows = []
    result = trainer.run(on_step=rows.append)
    run = tmp_path / "run"

    saved = json.loads((run / "config.json").read_text())
    assert {k: saved[k] for k in trainer.config.to_dict()} == trainer.config.to_dict()
    assert saved["seq_len"] == 6 and saved["lr"] == 1e-3  # defaults resolved and written

    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 7
    for line, row in zip(lines, rows):
        parsed = json.loads(line)
        assert parsed["step"] == row["step"] and parsed["loss"] == row["loss"]  # exact float
        assert set(parsed) == {"step", "loss", "grad_norm", "seconds"}

    # every 2 steps and the last one (2, 4, 6, 7); keep the newest 2
    assert [s for s, _ in list_checkpoints(run)] == [6, 7]
    assert result.checkpoint == checkpoint_path(run, 7)
    info = read_checkpoint(result.checkpoint).info
    assert info.step == 7 and info.config == trainer.config.to_dict()
    assert info.metrics["loss"] == rows[-1]["loss"]
    assert info.rng == trainer.data_rng.bit_generator.state
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]

    # run() again on a finished trainer is a no-op that keeps the log
    assert trainer.run().status == "completed"
    assert (run / "metrics.jsonl").read_text().splitlines() == lines


def test_a_folder_with_a_run_is_not_overwritten(tmp_path):
    Trainer(TrainConfig(steps=1, **SMALL), tmp_path / "run", progress=False).run()
    with pytest.raises(TrainError, match="already holds a run.*--resume"):
        Trainer(TrainConfig(steps=1, **SMALL), tmp_path / "run", progress=False)


def test_resume_errors(tmp_path):
    with pytest.raises(TrainError, match="no such folder"):
        Trainer.resume(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainError, match="not a folder"):
        Trainer.resume(tmp_path / "file")
    with pytest.raises(TrainError, match="no checkpoint"):
        Trainer.resume(tmp_path)

    Trainer(TrainConfig(steps=4, **SMALL), tmp_path / "run", progress=False).run()
    with pytest.raises(TrainError, match="beyond --steps 2"):
        Trainer.resume(tmp_path / "run", steps=2)
    with pytest.raises(TrainError, match="cannot change hidden"):
        Trainer.resume(tmp_path / "run", hidden=9)
    with pytest.raises(TrainError, match=r"--hidden 9 conflicts .* \(hidden 5\)"):
        Trainer.resume(tmp_path / "run", expect={"hidden": 9, "model": "lstm"})

    # A damaged newest checkpoint is reported, not silently skipped.
    path = checkpoint_path(tmp_path / "run", 4)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="step-00000004.safetensors: sha256 digest mismatch"):
        Trainer.resume(tmp_path / "run")


def test_resume_with_a_new_lr_uses_it(tmp_path):
    Trainer(TrainConfig(steps=2, optimizer="sgd", **SMALL), tmp_path / "run", progress=False).run()
    trainer = Trainer.resume(tmp_path / "run", steps=3, lr=0.5, progress=False)
    assert trainer.optimizer.lr == 0.5 and trainer.config.lr == 0.5
    trainer.run()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.5


# ---------------------------------------------------------------- NaN guard


def test_huge_lr_stops_with_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = TrainConfig(model="lstm", optimizer="sgd", lr=1e30, steps=20,
                         **{**SMALL, "every": 1, "keep": 5})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    with pytest.raises(TrainingDiverged) as info:
        trainer.run()
    exc = info.value
    assert exc.step >= 2
    good = checkpoint_path(tmp_path / "run", exc.step - 1)
    assert exc.checkpoint == good
    message = str(exc)
    assert f"at step {exc.step}" in message and str(good) in message
    assert "--clip" in message and "--lr" in message and "\n" not in message
    assert exc.parameter in dict(trainer.model.named_parameters()) and exc.parameter in message
    # no checkpoint of the bad step, the good ones intact and loadable
    assert [s for s, _ in list_checkpoints(tmp_path / "run")][-1] == exc.step - 1
    assert read_checkpoint(good).info.step == exc.step - 1
    assert len(read_metrics(tmp_path / "run")) == exc.step - 1


def test_non_finite_gradient_names_the_parameter(tmp_path):
    config = TrainConfig(model="lstm", steps=10, **{**SMALL, "every": 2})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    backward = trainer.model.backward

    def poisoned(grad_out, **kwargs):
        result = backward(grad_out, **kwargs)
        if trainer.step == 4:  # during step 5
            trainer.model.body.weight_hh_l0.grad[1, 2] = np.nan
        return result

    trainer.model.backward = poisoned
    before = trainer.model.state_dict()
    with pytest.raises(TrainingDiverged, match=r"at step 5: the gradient of 'body.weight_hh_l0' "
                                               r"is not finite.*step-00000004.*--clip"):
        trainer.run(on_step=lambda row: row["step"] == 4 and before.update(trainer.model.state_dict()))
    # the update of step 5 was not applied
    assert all(np.array_equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2, 4]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("changes, match", [
    ({"lr": -1.0}, "lr must be a finite number > 0"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"hidden": 0}, "hidden must be an integer >= 1"),
    ({"model": "transformer"}, "model must be one of mlp, rnn, lstm, gru"),
    ({"task": "digits", "seq_len": 5}, "seq_len applies to the adding/copy/sine"),
    ({"task": "adding", "noise": 0.1}, "noise applies to the sine"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to the sgd"),
    ({"task": "adding", "seq_len": 1}, "seq_len must be an integer >= 2"),
    ({"clip": 0.0}, "clip must be a finite number > 0"),
    ({"task": "digits", "batch": 5000}, "batch must be at most 1348"),
    ({"model": "rnn", "activation": "sigmoid"}, "tanh or relu"),
])
def test_bad_config(changes, match):
    with pytest.raises(TrainError, match=match):
        TrainConfig(**changes).resolved()


def test_progress_bar_shows_loss_and_speed(tmp_path):
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    Trainer(TrainConfig(steps=3, **SMALL), tmp_path / "run", progress=True, console=console).run()
    text = buffer.getvalue()
    assert "3/3" in text and "loss" in text and "steps/s" in text


def test_training_doc_examples_run(torch, capsys):
    """The Python blocks of docs/training.md run as written (torch for the interchange one)."""
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "training.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 3
    namespace = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "expected shape (32, 2), got (64, 2)" in out
    assert "completed 20" in out and "completed 30" in out
