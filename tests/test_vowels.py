"""Japanese Vowels: the shipped data, its loader, last-step training against torch's packed path,
``rnnlab train --task vowels`` and the compare experiment end to end."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import TOL, assert_close, rel_err, to_torch
from rnnlab import nn
from rnnlab.data import (Padded, feature_stats, load_japanese_vowels, load_vowels_standardized,
                         pad_or_cut, pad_sequences, standardize)
from rnnlab.experiments import vowels
from rnnlab.last_step import LastStepClassifier, available_kinds, gather_last, scatter_last
from rnnlab.report import style

KINDS = available_kinds()  # rnn, lstm, and gru once rnnlab.nn has it


# ---------------------------------------------------------------- the data


@pytest.mark.parametrize("split, n, per_speaker", [
    ("train", 270, [30] * 9),
    ("test", 370, [31, 35, 88, 44, 29, 24, 40, 50, 29]),  # the counts of UCI's size_ae.test
])
def test_counts_classes_features_and_lengths(split, n, per_speaker):
    sequences, labels = load_japanese_vowels(split)
    assert len(sequences) == n and labels.shape == (n,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=9).tolist() == per_speaker
    lengths = [s.shape[0] for s in sequences]
    assert min(lengths) >= 7 and max(lengths) <= 29
    assert all(s.shape[1] == 12 and s.dtype == np.float32 for s in sequences)
    assert all(np.isfinite(s).all() for s in sequences)


def test_lengths_span_7_to_29_and_dtype_is_honoured():
    train, _ = load_japanese_vowels("train", dtype=np.float64)
    test, _ = load_japanese_vowels("test", dtype=np.float64)
    lengths = [s.shape[0] for s in train + test]
    assert (min(lengths), max(lengths)) == (7, 29)
    assert train[0].dtype == np.float64
    # The file keeps the source's 6 decimals exactly: every value is a whole number of millionths.
    frames = np.concatenate(train + test)
    assert np.abs(frames * 1e6 - np.round(frames * 1e6)).max() < 1e-6
    assert np.unique(np.round(frames * 1e6)).size > 10000  # real data, not a placeholder


def test_standardisation_uses_the_training_split_only():
    raw_train, _ = load_japanese_vowels("train", dtype=np.float64)
    raw_test, _ = load_japanese_vowels("test", dtype=np.float64)
    data = load_vowels_standardized(dtype=np.float64)
    frames = np.concatenate(raw_train)
    assert_close(data["mean"], frames.mean(axis=0), np.float64, "train mean")
    assert_close(data["std"], frames.std(axis=0), np.float64, "train std")
    both = np.concatenate(raw_train + raw_test)
    assert rel_err(data["mean"], both.mean(axis=0)) > 1e-3  # the test split would change it
    z_train = np.concatenate(data["train"][0])
    assert np.abs(z_train.mean(axis=0)).max() < 1e-12
    assert np.abs(z_train.std(axis=0) - 1).max() < 1e-12
    for z, x in zip(data["test"][0], raw_test):
        assert_close(z, (x - frames.mean(axis=0)) / frames.std(axis=0), np.float64, "test z")
    assert np.abs(np.concatenate(data["test"][0]).mean(axis=0)).max() > 0.05  # not re-centred


def test_standardize_keeps_a_constant_feature_at_zero_and_checks_shapes():
    seqs = [np.array([[1.0, 2.0], [1.0, 4.0]]), np.array([[1.0, 6.0]])]
    mean, std = feature_stats(seqs)
    z = standardize(seqs, mean, std)
    assert np.all(z[0][:, 0] == 0) and np.isclose(np.concatenate(z)[:, 1].std(), 1)
    with pytest.raises(ValueError, match=r"mean and std must have shape \(2,\)"):
        standardize(seqs, mean[:1], std)
    with pytest.raises(ValueError, match="split must be one of"):
        load_japanese_vowels("validation")
    with pytest.raises(ValueError, match="non-empty list"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"sequence 1: expected \(T_i, 2\) float64"):
        pad_sequences([seqs[0], np.zeros((3, 3))])


def test_pad_sequences_and_pad_or_cut():
    rng = np.random.default_rng(1)
    seqs = [rng.standard_normal((T, 3)) for T in (4, 1, 6)]
    x, lengths = pad_sequences(seqs, [2, 0, 1])
    assert x.shape == (6, 3, 3) and lengths.tolist() == [6, 4, 1]
    for n, i in enumerate([2, 0, 1]):
        T = seqs[i].shape[0]
        assert np.array_equal(x[:T, n], seqs[i]) and not x[T:, n].any()
    cut = pad_or_cut(seqs, 5)
    assert cut.shape == (5, 3, 3)
    assert np.array_equal(cut[:4, 0], seqs[0]) and not cut[4:, 0].any()
    assert np.array_equal(cut[:1, 1], seqs[1]) and not cut[1:, 1].any()
    assert np.array_equal(cut[:, 2], seqs[2][:5])  # the longer one is cut


# ---------------------------------------------------------------- last step vs torch's packed path


def _torch_layer(torch, kind, F, H, layers):
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": getattr(torch.nn, "GRU")}[kind]
    layer = cls(F, H, layers).double()
    with torch.no_grad():  # random non-zero biases, away from torch's init range
        for name, p in layer.named_parameters():
            if name.startswith("bias"):
                p.uniform_(-0.5, 0.5)
    return layer


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("trial", range(3))
def test_last_step_of_padded_batch_equals_torch_packed(torch, kind, trial):
    """h at each sequence's own last step, dL/dx and every parameter gradient, as torch packed."""
    rng = np.random.default_rng(100 + trial)
    T, N, F, H, layers = int(rng.integers(3, 9)), int(rng.integers(3, 7)), 4, 5, 1 + trial % 2
    lengths = rng.integers(1, T + 1, size=N)
    lengths[rng.permutation(N)[:2]] = [1, T]  # the extremes, at random places: unsorted
    x = rng.standard_normal((T, N, F))
    for n in range(N):
        x[lengths[n]:, n] = 0.0  # padding, as pad_sequences leaves it
    w = rng.standard_normal((N, H))  # L = Σ w ⊙ h_last

    ref = _torch_layer(torch, kind, F, H, layers)
    ours = getattr(nn, kind.upper())(F, H, layers, dtype=np.float64)
    ours.load_state_dict(ref.state_dict())

    output, _ = ours(x)
    h_last = gather_last(output, lengths)
    grad_x, _ = ours.backward(scatter_last(w, lengths, T))

    xt = to_torch(torch, x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                     enforce_sorted=False)
    _, h_n = ref(packed)
    h_ref = (h_n[0] if kind == "lstm" else h_n)[-1]  # last layer, in the caller's order
    (h_ref * to_torch(torch, w)).sum().backward()

    assert_close(h_last, h_ref.detach().numpy(), np.float64, "h at the last step")
    assert_close(grad_x, xt.grad.numpy(), np.float64, "dL/dx")
    assert all(not grad_x[lengths[n]:, n].any() for n in range(N))  # padding gets exactly 0
    for name, p in ours.named_parameters():
        assert_close(p.grad, dict(ref.named_parameters())[name].grad.numpy(), np.float64, name)


@pytest.mark.parametrize("kind", KINDS)
def test_classifier_logits_and_gradients_equal_torch_packed(torch, kind):
    rng = np.random.default_rng(7)
    T, N, F, H, C = 6, 5, 12, 7, 9
    seqs = [rng.standard_normal((int(t), F)) for t in (3, 6, 1, 4, 6)]
    batch = pad_sequences(seqs)
    y = rng.integers(0, C, size=N)
    model = LastStepClassifier(kind, F, H, C, dtype=np.float64, rng=0)
    ref, head = _torch_layer(torch, kind, F, H, 1), torch.nn.Linear(H, C).double()
    model.body.load_state_dict(ref.state_dict())
    model.head.load_state_dict(head.state_dict())

    logits = model(batch)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(logits, y)
    assert model.backward(loss_fn.backward()) is None

    packed = torch.nn.utils.rnn.pack_sequence([to_torch(torch, s) for s in seqs],
                                              enforce_sorted=False)
    _, h_n = ref(packed)
    ref_logits = head((h_n[0] if kind == "lstm" else h_n)[-1])
    ref_loss = torch.nn.functional.cross_entropy(ref_logits, torch.tensor(y))
    ref_loss.backward()
    assert_close(logits, ref_logits.detach().numpy(), np.float64, "logits")
    assert abs(loss - ref_loss.item()) <= TOL[np.float64] * abs(ref_loss.item())
    for name, p in model.body.named_parameters():
        assert_close(p.grad, dict(ref.named_parameters())[name].grad.numpy(), np.float64, name)
    assert_close(model.head.weight.grad, head.weight.grad.numpy(), np.float64, "head weight")


def test_classifier_bad_input():
    model = LastStepClassifier("lstm", 3, 4, 2, rng=0)
    x = np.zeros((5, 2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        model(x, np.array([0, 5]))
    with pytest.raises(ValueError, match="lengths must be 2 integers"):
        model(x, np.array([5, 5, 5]))
    with pytest.raises(ValueError, match="kind must be one of"):
        LastStepClassifier("transformer", 3, 4, 2)
    with pytest.raises(ValueError, match="before forward"):
        LastStepClassifier("rnn", 3, 4, 2, rng=0).backward(np.zeros((2, 2), np.float32))


# ---------------------------------------------------------------- rnnlab train --task vowels


@pytest.mark.parametrize("model", ["mlp", *KINDS])
def test_train_task_vowels_learns_and_resumes_exactly(tmp_path, model):
    from rnnlab.train import TrainConfig, Trainer, read_metrics

    config = TrainConfig(model=model, task="vowels", hidden=8, batch=16, steps=6, every=3,
                         lr=0.01)
    whole = Trainer(config, tmp_path / "whole", progress=False)
    whole.run()
    losses = [r["loss"] for r in read_metrics(tmp_path / "whole")]
    assert losses[0] > 1.5 and losses[-1] < losses[0]  # ln 9 ≈ 2.2 at the start, then it learns
    part = Trainer(config, tmp_path / "part", progress=False)
    part.run(on_step=lambda row: row["step"] == 3 and part.request_stop())
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    resumed.run()
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- the experiment


TINY = {**vowels.PRESETS["quick"], "hidden": 8, "mlp_hidden": 16, "epochs": 2, "batch": 64,
        "lr": 0.02, "warmup": 1}


@pytest.fixture(scope="module")
def per_seed():
    return [{"seed": s, **vowels.run_seed(TINY, s)} for s in (0, 1)]


@pytest.fixture(scope="module")
def result(per_seed):
    return vowels.combine(TINY, per_seed)


def test_experiment_numbers(result):
    models = result["models"]
    assert set(models) == {"mlp", "mlp_cut"} | set(KINDS)
    assert ("gru" in KINDS) == (not result["notes"])  # a missing GRU is said, not hidden
    assert result["seeds"] == [0, 1] and (result["n_train"], result["n_test"]) == (270, 370)
    H = TINY["hidden"]
    assert models["lstm"]["parameters"] == 4 * (12 * H + H * H + 2 * H) + 9 * H + 9
    assert models["rnn"]["parameters"] == (12 * H + H * H + 2 * H) + 9 * H + 9
    for kind, length in (("mlp", 26), ("mlp_cut", 7)):  # the longest and shortest in training
        assert result["runs"][kind][0]["mlp_length"] == length
        hidden = TINY["mlp_hidden"]
        assert models[kind]["parameters"] == length * 12 * hidden + hidden * 10 + 9
    for kind, m in models.items():
        runs = result["runs"][kind]
        assert [r["seed"] for r in runs] == [0, 1]
        assert m["accuracies"] == [r["test_accuracy"] for r in runs]
        iv = m["accuracy"]
        assert iv["low"] <= np.mean(m["accuracies"]) <= iv["high"] and iv["n"] == 2
        assert all(r["test_accuracy"] > 0.2 for r in runs), kind  # chance is 1/9
        assert all([p["epoch"] for p in r["curve"]] == [1, 2] for r in runs)
        assert all(r["steps"] == 2 * 5 for r in runs)  # ceil(270 / 64) batches per epoch
    test_lengths = [s.shape[0] for s in load_japanese_vowels("test")[0]]
    for kind, length in (("mlp", 26), ("mlp_cut", 7)):
        cut = sum(T > length for T in test_lengths)
        assert result["runs"][kind][0]["test_sequences_cut"] == cut > 0


def test_gru_cost_is_counted_from_the_formulas(result):
    """Parameters and FLOPs per step of the GRU against the LSTM: the counts of the layers
    (3 gate blocks against 4) and the same head, whatever the machine measured."""
    if "gru" not in result["models"]:
        pytest.skip("no GRU in this installation")
    p = result["pairs"]["gru_vs_lstm"]
    H, F, T, d = TINY["hidden"], 12, 26, TINY["batch"]
    assert p["T"] == T  # the longest training utterance
    for kind in ("gru", "lstm"):
        assert p["cost"][kind]["parameters"] == result["models"][kind]["parameters"]
    gates = {"gru": 3, "lstm": 4}
    # forward: x W_ih and h W_hh over T steps; backward: dW_ih, dW_hh, dh (no dX)
    flops = {k: 2 * T * d * g * H * (F + H) + 2 * T * d * g * H * (F + 2 * H)
             for k, g in gates.items()}
    assert p["cost"]["gru"]["flops"] / p["cost"]["lstm"]["flops"] == pytest.approx(0.75)
    assert p["flops_ratio"] == pytest.approx(flops["gru"] / flops["lstm"])
    assert p["param_ratio"] == pytest.approx((3 * (F * H + H * H + 2 * H) + 9 * H + 9)
                                             / (4 * (F * H + H * H + 2 * H) + 9 * H + 9))


def test_run_one_depends_only_on_its_arguments():
    a = vowels.run_one(TINY, "rnn", 3)
    b = vowels.run_one(TINY, "rnn", 3)
    c = vowels.run_one(TINY, "rnn", 4)
    assert [p["test_accuracy"] for p in a["curve"]] == [p["test_accuracy"] for p in b["curve"]]
    assert [p["loss"] for p in a["curve"]] == [p["loss"] for p in b["curve"]]
    assert [p["loss"] for p in a["curve"]] != [p["loss"] for p in c["curve"]]


def _with_accuracies(per_seed, accs, step=None):
    """Three seeds whose test accuracies are ``accs[model]`` (and step medians ``step``),
    combined again."""
    fake = []
    for s in range(3):
        seed = copy.deepcopy(per_seed[s % len(per_seed)])
        runs = {}
        for kind, values in accs.items():
            r = dict(seed["runs"].get(kind, seed["runs"]["lstm"]), model=kind,
                     test_accuracy=values[s], seed=s)
            if step and kind in step:
                r["step_time"] = dict(r["step_time"], median=step[kind])
            runs[kind] = r
        fake.append({**seed, "seed": s, "runs": runs})
    return vowels.combine(TINY, fake)


def _claim(fake, key):
    return next(c for c in vowels.claims(fake) if c.key == key)


def test_verdicts_follow_the_numbers(per_seed):
    base = {"mlp": [0.90, 0.91, 0.92], "rnn": [0.95, 0.96, 0.97], "lstm": [0.97, 0.98, 0.99]}
    verdict = lambda accs, key, **kw: _claim(_with_accuracies(per_seed, accs, **kw),  # noqa: E731
                                              key).verdict
    assert verdict(base, "vowels-any-length") == "supported"
    tie = dict(base, mlp=[0.971, 0.979, 0.991])
    assert verdict(tie, "vowels-any-length") == "not supported"
    noisy = dict(base, mlp=[0.99, 0.90, 0.97])
    assert verdict(noisy, "vowels-any-length") == "undecided"

    gru = {**base, "gru": [0.971, 0.979, 0.991]}
    assert verdict(gru, "vowels-gru-vs-lstm") == "supported"
    # The measured step time is context only: a GRU timed 5x slower (say, beside a busy
    # worker) does not flip the verdict, which rests on parameters and FLOPs.
    slow = {"lstm": 1e-3, "gru": 5e-3}
    claim = _claim(_with_accuracies(per_seed, gru, step=slow), "vowels-gru-vs-lstm")
    assert claim.verdict == "supported" and "context only" in claim.evidence
    assert "5.00" in claim.evidence and "0.75" in claim.evidence and claim.headline
    worse = {**base, "gru": [0.90, 0.91, 0.92]}
    assert verdict(worse, "vowels-gru-vs-lstm") == "not supported"
    unclear = {**base, "gru": [0.99, 0.90, 0.97]}
    assert verdict(unclear, "vowels-gru-vs-lstm") == "undecided"


def test_gru_verdict_on_the_cost():
    match = {"mean": 0.0, "low": -0.005, "high": 0.005}
    assert vowels.gru_verdict(match, 0.01, 0.76, 0.75, 0.8) == "supported"
    assert vowels.gru_verdict(match, 0.01, 0.9, 0.75, 0.8) == "nuanced"
    assert vowels.gru_verdict(match, 0.01, 1.0, 1.1, 0.8) == "not supported"
    assert vowels.gru_verdict({"mean": 0.0, "low": None, "high": None},
                              0.01, 0.76, 0.75, 0.8) == "undecided"


def test_tables_and_plot(result, tmp_path):
    main, published, *rest = vowels.tables(result)
    assert [r[0] for r in main.rows] == [
        f"MLP padded to 26 ({result['runs']['mlp'][0]['test_sequences_cut']} test cut)",
        "MLP cut to 7"] + [k.upper() for k in KINDS]
    assert all(len(r) == len(main.columns) for r in main.rows)
    assert any("Kudo" in r[0] and r[1] == "0.941" for r in published.rows)
    assert len(rest) == (1 if result["notes"] else 0)
    (path,) = vowels.plots(result, tmp_path)
    assert path.exists() and path.stat().st_size > 10_000
    assert "per seed" in style.read_caption(path)


def test_the_two_mlps_look_alike_but_differ():
    from rnnlab.experiments.vowels_report import model_look

    padded, cut = model_look("mlp"), model_look("mlp_cut")
    assert padded["color"] == cut["color"] == style.model_color("mlp")
    assert (padded["facecolor"], padded["ls"]) != (cut["facecolor"], cut["ls"])
    assert model_look("gru")["color"] == style.model_color("gru")
