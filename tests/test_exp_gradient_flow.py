"""The gradient-flow experiment: exact per-step gradients (against torch), results, verdicts, plots."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from conftest import assert_close
from rnnlab.analysis import hidden_grads as flow
from rnnlab.data import adding_problem
from rnnlab.experiments import gradient_flow as gf
from rnnlab.experiments.base import VERDICTS, Claim, Progress, Table
from rnnlab.models import SequenceModel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = {"T": 12, "batch": 8, "measure_batch": 6, "lr": 0.01, "max_norm": 1.0, "eval_batch": 16,
        "blas_threads": 1, "hidden": 6, "train_steps": 4,
        "explode": {"nonlinearity": "tanh", "spectral_radius": 3.0, "T": 10, "lr": 0.1,
                    "max_norm": 1.0, "batch": 8, "hidden": 16, "steps": 5}}


@pytest.fixture(scope="module")
def combined():
    return gf.combine(TINY, [{"seed": s, **gf.run_seed(TINY, 3 + s)} for s in range(2)])


@pytest.fixture(scope="module")
def result(combined):
    """The first seed's measurements (the shape run_seed gives, with the config)."""
    return gf._first_seed(combined)


# ------------------------------------------------------------------ exactness against torch


def _torch_hidden_grads(torch, model, x, y):
    """h_t.grad (and c_t.grad) for t = 1..T from torch autograd, for L = MSE(head(h_T), y)."""
    body = model.body
    t = lambda a: torch.tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    w_ih, w_hh = t(body.weight_ih_l0.data), t(body.weight_hh_l0.data).requires_grad_()
    b_ih, b_hh = t(body.bias_ih_l0.data), t(body.bias_hh_l0.data)
    T, N, _ = x.shape
    H = body.hidden_size
    h = torch.zeros(N, H, dtype=torch.float64)
    c = torch.zeros(N, H, dtype=torch.float64)
    hs, cs = [], []
    for step in range(T):
        if model.kind == "gru":  # torch's own equations, b_hn inside r ⊙ (...)
            gx, gh = t(x[step]) @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            r = torch.sigmoid(gx[:, :H] + gh[:, :H])
            z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
            h.retain_grad()
            hs.append(h)
            continue
        pre = t(x[step]) @ w_ih.T + h @ w_hh.T + b_ih + b_hh
        if model.kind == "rnn":
            h = torch.tanh(pre) if body.nonlinearity == "tanh" else torch.relu(pre)
        else:
            i, f, g, o = pre.split(H, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            c.retain_grad()
            cs.append(c)
        h.retain_grad()
        hs.append(h)
    pred = h @ t(model.head.weight.data).T + t(model.head.bias.data)
    loss = torch.mean((pred - t(y)) ** 2)
    loss.backward()
    dh = np.stack([s.grad.numpy() for s in hs])
    dc = np.stack([s.grad.numpy() for s in cs]) if cs else None
    return dh, dc


@pytest.mark.parametrize("name", list(gf.MODELS))
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_hidden_grads_match_torch(torch, name, scale):
    """∂L/∂h_t (and ∂L/∂c_t) for every t, against torch's retain_grad, to float64 precision."""
    rng = np.random.default_rng(7)
    T, N, H = 9, 4, 5
    kind, act = gf.MODELS[name]
    model = SequenceModel(kind, 2, H, 1, activation=act, rng=rng)
    # Non-zero biases everywhere (a zero bias hides bias bugs); scale 3 makes relu units go
    # dead and alive and saturates gates, so every branch of the recurrence is exercised.
    for p in model.parameters():
        p.data[...] = rng.uniform(-1, 1, p.shape) * scale / np.sqrt(H)
    batch = adding_problem(N, T, rng=rng, dtype=np.float32)
    expected_dh, expected_dc = _torch_hidden_grads(torch, model, batch.x, batch.y)
    states = flow.forward_states(model, batch.x)
    grad_last = flow.last_step_grad(model, states["h"][-1], batch.y.astype(np.float64))
    dh, dc = flow.hidden_state_grads(model, batch.x, grad_last, states)
    assert dh.shape == (T, N, H)
    # Not a vacuous comparison: the gradient reaches every step.
    assert np.all(np.abs(expected_dh).reshape(T, -1).max(axis=1) > 0)
    for step in range(T):
        assert_close(dh[step], expected_dh[step], np.float64, f"{name} dL/dh_{step + 1}")
    if kind == "lstm":
        for step in range(T):
            assert_close(dc[step], expected_dc[step], np.float64, f"lstm dL/dc_{step + 1}")
    else:
        assert dc is None
    norms = flow.grad_norms(model, batch.x, batch.y)
    np.testing.assert_allclose(norms["h"], np.linalg.norm(expected_dh.reshape(T, -1), axis=1),
                               rtol=1e-10)
    assert norms["decay_ratio"] == pytest.approx(norms["h"][0] / norms["h"][-1])


def test_forward_states_match_the_library(backend):
    """The float64 re-run of the recurrence gives the states the layers compute."""
    rng = np.random.default_rng(3)
    x = adding_problem(5, 7, rng=rng, dtype=np.float64).x
    for name, (kind, act) in gf.MODELS.items():
        model = SequenceModel(kind, 2, 4, 1, activation=act, dtype=np.float64, rng=rng)
        output, _ = model.body(x)
        assert_close(flow.forward_states(model, x)["h"][1:], output, np.float64, name)


def test_the_experiment_measures_the_gru():
    assert gf.MODELS["gru"] == ("gru", "tanh") and gf.LABELS["gru"] == "GRU"
    with pytest.raises(ValueError, match="one-layer"):
        flow.forward_states(SequenceModel("gru", 2, 4, 1, num_layers=2), np.zeros((3, 1, 2)))


def test_set_spectral_radius():
    w = np.random.default_rng(0).uniform(-0.2, 0.2, (6, 6)).astype(np.float32)
    flow.set_spectral_radius(w, 3.0)
    assert np.max(np.abs(np.linalg.eigvals(w.astype(np.float64)))) == pytest.approx(3.0, rel=1e-5)


# ------------------------------------------------------------------ the result dict


def test_result_keys_and_shapes(result):
    T = TINY["T"]
    assert result["config"] == TINY and result["T"] == T
    assert set(result["models"]) == set(gf.MODELS)
    for name, m in result["models"].items():
        for when in ("init", "trained"):
            stats = m[when]
            assert len(stats["h"]) == T
            assert all(math.isfinite(v) and v > 0 for v in stats["h"])
            assert stats["decay_ratio"] == pytest.approx(stats["h"][0] / stats["h"][-1])
            assert stats["log10_decay"] == pytest.approx(math.log10(stats["decay_ratio"]))
            if name == "lstm":
                assert len(stats["c"]) == T and 0 < stats["forget_gate_mean"] < 1
                assert stats["forget_gate_mean"] <= stats["forget_gate_max_unit"] < 1
            else:
                assert stats["c"] is None
        assert len(m["train_curve"]["steps"]) == len(m["train_curve"]["loss"])
        assert m["train_curve"]["steps"][-1] == TINY["train_steps"]
        assert math.isfinite(m["init_loss"]) and math.isfinite(m["trained_loss"])
    ex = result["explode"]
    assert ex["radius"] == pytest.approx(3.0, rel=1e-4)
    assert len(ex["init"]["h"]) == TINY["explode"]["T"]
    assert set(ex["runs"]) == {"no_clip", "clip", "control"}
    for r in ex["runs"].values():
        assert len(r["loss"]) == len(r["grad_norm"]) == r["steps_run"]
        assert r["steps_run"] == TINY["explode"]["steps"] or r["stopped"] == r["steps_run"]
    clipped = ex["runs"]["clip"]
    assert all(v is not None and math.isfinite(v) for v in clipped["loss"])
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN or inf anywhere


def test_explosion_is_measured(result):
    """Radius 3 makes the gradient grow backwards in time; the initialised radius does not."""
    ex = result["explode"]
    assert ex["init"]["decay_ratio"] > 1
    assert ex["control_init"]["decay_ratio"] < 1
    assert ex["runs"]["no_clip"]["grad_norm"][0] == pytest.approx(ex["runs"]["clip"]["grad_norm"][0])


def test_diverged():
    assert gf.diverged([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == (False, False, 3.0)
    assert gf.diverged([1.0, 20.0], [1.0, 1.0])[0]
    assert gf.diverged([1.0, None], [1.0, None]) == (True, True, 1.0)
    assert gf.diverged([1.0, 2.0], [1.0, None])[:2] == (True, True)


# ------------------------------------------------------------------ verdicts


def _seeds(log10, jitter=(0.0, 0.3, -0.3)):
    """Per-seed log10 values around ``log10``."""
    return [log10 + j for j in jitter]


def test_verdict_functions_flip():
    assert gf.vanishing_verdict(_seeds(-20), _seeds(-30)) == "supported"
    assert gf.vanishing_verdict(_seeds(-20), _seeds(5)) == "nuanced"
    assert gf.vanishing_verdict(_seeds(-20), _seeds(-0.3)) == "nuanced"
    assert gf.vanishing_verdict(_seeds(-0.3), _seeds(-30)) == "not supported"
    assert gf.vanishing_verdict(_seeds(-3, (-2.0, 2.0, 0.0)), _seeds(-30)) == "undecided"
    assert gf.lstm_verdict([_seeds(-1), _seeds(-0.7)], [_seeds(-20), _seeds(-20)]) == "supported"
    assert gf.lstm_verdict([_seeds(-20), _seeds(-0.7)], [_seeds(-25), _seeds(-20)]) == "nuanced"
    # better than the RNN by 10 orders, but still vanishes
    assert gf.lstm_verdict([_seeds(-10), _seeds(-10)], [_seeds(-20), _seeds(-20)]) == "nuanced"
    assert gf.lstm_verdict([_seeds(-20), _seeds(-20)], [_seeds(-10), _seeds(-10)]) == "not supported"
    assert gf.lstm_verdict([_seeds(-1, (0, 30, -30)), _seeds(-1)],
                           [_seeds(-20), _seeds(-20)]) == "undecided"
    assert gf.explosion_verdict([6, 6], [True, True], [False, False], [False, False]) == "supported"
    assert gf.explosion_verdict([6, 6], [True, True], [False, False], [False, True]) == "nuanced"
    assert gf.explosion_verdict([6, 6], [True, False], [False, False]) == "nuanced"
    assert gf.explosion_verdict([6, 6], [False, False], [False, False]) == "nuanced"
    assert gf.explosion_verdict([-0.3, -0.3], [False, False], [False, False]) == "not supported"


def _set_ratio(result, name, when, ratio):
    """Seed k's decay ratio of ``name`` at ``when`` becomes ratio · 2^k (seeds differ a little)."""
    for k, seed in enumerate(result["per_seed"]):
        stats = seed["models"][name][when]
        stats["h"] = [ratio * 2.0 ** k] + stats["h"][1:-1] + [1.0]
        stats.update(flow.decay_stats(stats["h"]))


def _verdicts(result):
    result = gf.combine(result["config"], result["per_seed"])
    return {c.key: c.verdict for c in gf.claims(result)}


def test_claims_follow_the_numbers(combined):
    fake = copy.deepcopy(combined)
    for when in ("init", "trained"):
        _set_ratio(fake, "rnn_tanh", when, 1e-20)
        _set_ratio(fake, "rnn_relu", when, 1e-30)
        _set_ratio(fake, "lstm", when, 0.3)
    for seed in fake["per_seed"]:
        runs = seed["explode"]["runs"]
        runs["no_clip"].update(diverged=True, non_finite=True, stopped=3)
        runs["clip"].update(diverged=False, non_finite=False)
        runs["control"].update(diverged=False, non_finite=False)
    assert _verdicts(fake) == {"rnn-vanishing": "supported", "lstm-gradient-flow": "supported",
                               "gradient-explosion-clipping": "supported"}
    gru_lost = copy.deepcopy(fake)  # the GRU is measured beside the claims, not judged by them
    for when in ("init", "trained"):
        _set_ratio(gru_lost, "gru", when, 1e-40)
    assert _verdicts(gru_lost) == _verdicts(fake)
    evidence = gf.claims(gf.combine(gru_lost["config"], gru_lost["per_seed"]))[1].evidence
    assert "The GRU" in evidence and "1e-39.8" in evidence

    contrary = copy.deepcopy(fake)
    for when in ("init", "trained"):
        _set_ratio(contrary, "rnn_tanh", when, 0.5)  # the RNN keeps its gradient ...
        _set_ratio(contrary, "lstm", when, 1e-12)  # ... and the LSTM loses it
    for seed in contrary["per_seed"]:
        seed["explode"]["init"].update(flow.decay_stats([0.1] + [1.0] * 9))
        seed["explode"]["runs"]["no_clip"].update(diverged=False, non_finite=False,
                                                  max_loss_ratio=1.2)
    assert _verdicts(contrary) == {"rnn-vanishing": "not supported",
                                   "lstm-gradient-flow": "not supported",
                                   "gradient-explosion-clipping": "not supported"}

    mixed = copy.deepcopy(fake)
    _set_ratio(mixed, "rnn_relu", "init", 1e6)  # relu explodes instead of vanishing
    _set_ratio(mixed, "lstm", "init", 1e-19)  # the LSTM only keeps its gradient once trained
    mixed["per_seed"][1]["explode"]["runs"]["control"].update(diverged=True)
    assert _verdicts(mixed) == {"rnn-vanishing": "nuanced", "lstm-gradient-flow": "nuanced",
                                "gradient-explosion-clipping": "nuanced"}
    mixed = gf.combine(mixed["config"], mixed["per_seed"])
    assert "does not vanish" in gf.claims(mixed)[0].evidence


def test_claims_tables_on_the_run(combined):
    result = combined
    out = gf.claims(result)
    assert [c.key for c in out] == ["rnn-vanishing", "lstm-gradient-flow",
                                    "gradient-explosion-clipping"]
    for c in out:
        assert isinstance(c, Claim) and c.verdict in VERDICTS and c.evidence
    tables = gf.tables(result)
    for table in tables:
        assert isinstance(table, Table)
        assert all(len(row) == len(table.columns) for row in table.rows)
    assert [row[0] for row in tables[0].rows] == ["RNN (tanh)", "RNN (relu)", "LSTM", "GRU"]
    assert [row[0] for row in tables[1].rows] == ["RNN (tanh)", "RNN (relu)", "LSTM", "GRU"]


def test_a_result_from_before_the_gru_still_reports(combined, tmp_path):
    """A results.json written before the GRU joined (no "gru" anywhere) still gives claims,
    tables and figures, without a GRU row."""
    old = json.loads(json.dumps(combined))
    for seed in old["per_seed"]:
        del seed["models"]["gru"]
    del old["summary"]["gru"]
    claims = gf.claims(old)
    assert [c.verdict for c in claims] == [c.verdict for c in gf.claims(combined)]
    assert "GRU" not in claims[1].evidence
    assert "GRU" not in [row[0] for row in gf.tables(old)[0].rows]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in gf.plots(old, tmp_path))
    assert set(gf.combine(old["config"], old["per_seed"])["summary"]) == {"rnn_tanh", "rnn_relu",
                                                                         "lstm"}


def test_plots_are_png(combined, tmp_path):
    paths = gf.plots(combined, tmp_path)
    assert len(paths) == 3
    for path in paths:
        assert path.parent == tmp_path and path.read_bytes()[:8] == PNG_MAGIC


def test_plots_survive_a_diverged_run(combined, tmp_path):
    fake = json.loads(json.dumps(combined))  # as read back from results.json
    first = fake["per_seed"][0]
    first["models"]["lstm"]["trained"] = None
    first["models"]["lstm"]["trained_loss"] = None
    r = first["explode"]["runs"]["no_clip"]
    r["loss"][-1] = None
    r["grad_norm"][-1] = None
    r.update(stopped=r["steps_run"], non_finite=True, diverged=True, final_loss=None)
    fake = gf.combine(fake["config"], fake["per_seed"])
    assert fake["summary"]["lstm"]["trained"]["log10"][0] is None
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in gf.plots(fake, tmp_path))
    assert len(gf.claims(fake)) == 3
    gf.tables(fake)


def test_presets_are_plain_json():
    for name, cfg in gf.PRESETS.items():
        assert json.loads(json.dumps(cfg)) == cfg
        assert cfg["T"] == 100
