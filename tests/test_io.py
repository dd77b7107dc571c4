"""rnnlab.io: checkpoints that round-trip, refuse every damaged or foreign file without
touching the model, and PyTorch interchange through safetensors."""

from __future__ import annotations

import ast
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save, save_file

from conftest import assert_close
from rnnlab import io
from rnnlab.io import CheckpointError, load_checkpoint, load_torch_file, save_checkpoint
from rnnlab.models import SequenceModel
from rnnlab.nn import LSTM, MLP, RNN, Linear, MSELoss
from rnnlab.optim import SGD, Adam

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnlab"


# ---------------------------------------------------------------- helpers


def _trained(optimizer="adam", seed=0, steps=2, layers=1, hidden=3):
    """A small LSTM SequenceModel and its optimizer after a few steps (so buffers exist)."""
    rng = np.random.default_rng(seed)
    model = SequenceModel("lstm", 2, hidden, 1, num_layers=layers, rng=rng)
    opt = (Adam(model.parameters(), lr=1e-2) if optimizer == "adam"
           else SGD(model.parameters(), lr=1e-2, momentum=0.9))
    loss_fn = MSELoss()
    for _ in range(steps):
        x = rng.standard_normal((4, 3, 2)).astype(np.float32)
        y = rng.standard_normal((3, 1)).astype(np.float32)
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    return model, opt


def _snapshot(model, opt):
    sd = opt.state_dict()
    return ({k: v.copy() for k, v in model.state_dict().items()},
            sd["hyperparameters"], sd["step"], {k: v.copy() for k, v in sd["buffers"].items()})


def _same(a, b):
    (ma, ha, sa, ba), (mb, hb, sb, bb) = a, b
    return (ma.keys() == mb.keys() and all(np.array_equal(ma[k], mb[k]) for k in ma)
            and ha == hb and sa == sb and ba.keys() == bb.keys()
            and all(np.array_equal(ba[k], bb[k]) for k in ba))


def _split(data: bytes):
    """(header dict, tensor bytes) of a safetensors file."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _rewrite(data: bytes, edit, resign: bool) -> bytes:
    """Load tensors + metadata, apply edit(tensors, metadata), save; optionally recompute the
    digest, so that the checks behind it (names, shapes, dtypes, NaN, ...) must catch the edit."""
    tensors = {k: v.copy() for k, v in _load_bytes(data).items()}
    metadata = dict(_split(data)[0].get("__metadata__", {}))
    edit(tensors, metadata)
    if resign:
        metadata["sha256"] = io._digest(tensors, metadata)
    return save(tensors, metadata=metadata)


def _load_bytes(data):
    from safetensors.numpy import load
    return load(data)


@pytest.fixture
def saved(tmp_path):
    model, opt = _trained()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, step=2,
                           config={"hidden": 3}, rng=np.random.default_rng(5),
                           metrics={"loss": 0.25})
    return model, opt, path


def _fresh_target():
    """A model and optimizer, different from the saved ones, to load into."""
    return _trained(seed=1, steps=1)


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_checkpoint_round_trip_is_exact(tmp_path, optimizer):
    model, opt = _trained(optimizer, layers=2)
    rng = np.random.default_rng(7)
    rng.random(3)
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, step=9,
                           config={"a": [1, 2]}, rng=rng, metrics={"loss": 0.1 + 0.2})
    target_model, target_opt = _trained(optimizer, seed=3, steps=1, layers=2)
    info = load_checkpoint(path, target_model, target_opt)
    assert _same(_snapshot(model, opt), _snapshot(target_model, target_opt))
    assert info.step == 9 and info.config == {"a": [1, 2]}
    assert info.metrics == {"loss": 0.1 + 0.2}  # full precision through JSON
    assert info.rng == rng.bit_generator.state
    assert info.optimizer["type"] == type(opt).__name__

    # The tensors are plain safetensors, readable by anyone, keyed as documented.
    tensors = load_file(path)
    assert set(tensors) >= {"model.body.weight_ih_l0", "model.head.weight"}
    buffer = "exp_avg" if optimizer == "adam" else "momentum_buffer"
    assert f"optim.{buffer}.body.weight_hh_l1" in tensors


def test_weights_only_load_and_no_optimizer_state(tmp_path):
    model, opt = _trained()
    path = save_checkpoint(tmp_path / "m.safetensors", model, step=0)
    target, target_opt = _fresh_target()
    load_checkpoint(path, target)
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(),
                                                    target.state_dict().values()))
    before = _snapshot(target, target_opt)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, target, target_opt)
    assert _same(before, _snapshot(target, target_opt))


def test_save_refuses_non_finite_weights(tmp_path):
    model, opt = _trained()
    model.head.weight.data[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_checkpoint(tmp_path / "c.safetensors", model, opt, step=1)
    assert not list(tmp_path.iterdir())


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    io.atomic_write_bytes(path, b"old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        io.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temp file left


def test_no_pickle_anywhere_in_the_file_code():
    """io and train neither import pickle nor call a loader that could unpickle."""
    files = sorted((SRC / "io").glob("*.py")) + sorted((SRC / "train").glob("*.py"))
    assert len(files) >= 4
    for path in files + [SRC / "commands/train.py"]:
        name = str(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(m.split(".")[0] in {"pickle", "dill", "joblib", "torch", "shelve"}
                               for m in mods), (name, mods)
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"load", "loads"} or not (
                    isinstance(node.value, ast.Name) and node.value.id in {"np", "numpy", "pickle"}
                ), name
            if isinstance(node, ast.keyword):
                assert node.arg != "allow_pickle", name


# ---------------------------------------------------------------- damaged and foreign files


def _expect_rejected(path, model, opt, match):
    before = _snapshot(model, opt)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, model, opt)
    assert _same(before, _snapshot(model, opt)), "the model or optimizer changed"


def test_truncated_file(saved, tmp_path):
    _, _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "t.safetensors"
    bad.write_bytes(data[:len(data) // 2])
    _expect_rejected(bad, *_fresh_target(), "not a readable safetensors file")


def test_flipped_byte_in_the_weights(saved, tmp_path):
    _, _, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes: still a valid float
    bad = tmp_path / "f.safetensors"
    bad.write_bytes(bytes(data))
    _expect_rejected(bad, *_fresh_target(), "digest mismatch")


def test_not_a_safetensors_file(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("hello, this is text\n" * 10)
    _expect_rejected(bad, *_fresh_target(), "not a readable safetensors file")


def test_foreign_safetensors_file(tmp_path):
    """A valid safetensors file from elsewhere (a torch-style state_dict) is not a checkpoint."""
    model, _ = _fresh_target()
    bad = tmp_path / "torch.safetensors"
    save_file({k: v for k, v in model.state_dict().items()}, str(bad), metadata={"format": "pt"})
    _expect_rejected(bad, *_fresh_target(), "not an rnnlab checkpoint")


def test_missing_file_and_folder(tmp_path):
    _expect_rejected(tmp_path / "nope.safetensors", *_fresh_target(), "no such file")
    _expect_rejected(tmp_path, *_fresh_target(), "is a folder")


@pytest.mark.parametrize("case, edit, match", [
    ("nan", lambda t, m: t["model.head.weight"].__setitem__((0, 0), np.nan), "NaN or inf"),
    ("inf buffer", lambda t, m: t["optim.exp_avg.head.bias"].__setitem__(0, np.inf), "NaN or inf"),
    ("shape", lambda t, m: t.__setitem__("model.head.weight", np.zeros((1, 4), np.float32)),
     r"expected shape \(1, 3\), got \(1, 4\)"),
    ("dtype", lambda t, m: t.__setitem__("model.head.bias", t["model.head.bias"].astype(np.float64)),
     "expected dtype float32, got float64"),
    ("int dtype", lambda t, m: t.__setitem__("model.head.bias", np.zeros(1, np.int32)),
     "expected dtype float32, got int32"),
    ("missing", lambda t, m: t.pop("model.body.weight_hh_l0"), "missing"),
    ("unexpected", lambda t, m: t.__setitem__("model.extra", np.zeros(2, np.float32)), "unexpected"),
    ("stray key", lambda t, m: t.__setitem__("other", np.zeros(2, np.float32)), "unexpected tensor"),
    ("optim type", lambda t, m: m.__setitem__("optimizer", m["optimizer"].replace("Adam", "SGD")),
     "optimizer type"),
    ("optim hyper", lambda t, m: m.__setitem__("optimizer", m["optimizer"].replace('"eps"', '"epz"')),
     "optimizer state"),
    ("step", lambda t, m: m.__setitem__("step", "-3"), "step"),
    ("bad json", lambda t, m: m.__setitem__("config", "{not json"), "not valid JSON"),
    ("nan json", lambda t, m: m.__setitem__("metrics", '{"loss": NaN}'), "not valid JSON"),
    ("format", lambda t, m: m.__setitem__("format", "something.else"), "not an rnnlab checkpoint"),
    ("version", lambda t, m: m.__setitem__("format_version", "99"), "version"),
    ("no digest", lambda t, m: m.pop("sha256"), "missing keys"),
])
def test_edited_files_are_rejected_with_a_reason(saved, tmp_path, case, edit, match):
    """Each edit is re-signed (valid digest), so the specific check must catch it."""
    _, _, path = saved
    bad = tmp_path / "e.safetensors"
    resign = case != "no digest"
    bad.write_bytes(_rewrite(path.read_bytes(), edit, resign=resign))
    _expect_rejected(bad, *_fresh_target(), match)


def test_edited_header_without_resigning_fails_the_digest(saved, tmp_path):
    _, _, path = saved
    header, body = _split(path.read_bytes())
    header["__metadata__"]["step"] = "3"
    bad = tmp_path / "h.safetensors"
    bad.write_bytes(_join(header, body))
    _expect_rejected(bad, *_fresh_target(), "digest mismatch")


def test_checkpoint_of_another_model_names_the_mismatch(saved):
    _, _, path = saved
    model, opt = _trained(hidden=5, seed=2)
    _expect_rejected(path, model, opt, r"'body.weight_ih_l0': expected shape \(20, 2\), got \(12, 2\)")


# ---------------------------------------------------------------- fuzzing

_DTYPES = ["F16", "F32", "F64", "I8", "I32", "I64", "U8", "BOOL", "BF16", "F8_E4M3", "XYZ"]


@st.composite
def _mutation(draw, size):
    kind = draw(st.sampled_from(["truncate", "flip", "header", "tensors", "splice"]))
    if kind == "truncate":
        return ("truncate", draw(st.integers(0, size - 1)))
    if kind == "flip":
        n = draw(st.integers(1, 4))
        return ("flip", [(draw(st.integers(0, size - 1)), draw(st.integers(1, 255)))
                         for _ in range(n)])
    if kind == "splice":
        return ("splice", draw(st.integers(0, size)), draw(st.binary(min_size=1, max_size=16)))
    if kind == "header":
        op = draw(st.sampled_from(["dtype", "shape", "offsets", "drop", "rename", "meta", "junk"]))
        return ("header", op, draw(st.integers(0, 10 ** 6)), draw(st.sampled_from(_DTYPES)),
                draw(st.lists(st.integers(0, 40), min_size=0, max_size=3)),
                draw(st.text(max_size=12)))
    op = draw(st.sampled_from(["nan", "inf", "shape", "dtype", "drop", "add", "meta", "meta-json"]))
    return ("tensors", op, draw(st.integers(0, 10 ** 6)), draw(st.booleans()),
            draw(st.text(max_size=20)))


def _apply(data: bytes, m) -> bytes:
    if m[0] == "truncate":
        return data[:m[1]]
    if m[0] == "flip":
        out = bytearray(data)
        for pos, mask in m[1]:
            out[pos] ^= mask
        return bytes(out)
    if m[0] == "splice":
        return data[:m[1]] + m[2] + data[m[1]:]
    if m[0] == "header":
        _, op, pick, dtype, shape, text = m
        header, body = _split(data)
        names = sorted(k for k in header if k != "__metadata__")
        name = names[pick % len(names)]
        if op == "dtype":
            header[name]["dtype"] = dtype
        elif op == "shape":
            header[name]["shape"] = shape
        elif op == "offsets":
            a, b = header[name]["data_offsets"]
            header[name]["data_offsets"] = [a, max(a, b - 4 * (1 + pick % 3))]
        elif op == "drop":
            header.pop(name)
        elif op == "rename":
            header[name + text] = header.pop(name)
        elif op == "meta":
            meta = header.setdefault("__metadata__", {})
            key = sorted(meta)[pick % len(meta)] if meta else "format"
            meta[key] = text
        else:
            header["__metadata__"] = {"junk": text}
        return _join(header, body)

    _, op, pick, resign, text = m

    def edit(tensors, meta):
        name = sorted(tensors)[pick % len(tensors)]
        a = tensors[name]
        if op in ("nan", "inf"):
            a.reshape(-1)[pick % a.size] = np.nan if op == "nan" else -np.inf
        elif op == "shape":
            tensors[name] = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), a.dtype)
        elif op == "dtype":
            tensors[name] = a.astype([np.float64, np.float16, np.int32][pick % 3])
        elif op == "drop":
            tensors.pop(name)
        elif op == "add":
            tensors["model." + text] = np.zeros(3, np.float32)
        elif op == "meta":
            key = sorted(meta)[pick % len(meta)]
            meta[key] = text
        else:
            key = sorted(meta)[pick % len(meta)]
            meta[key] = json.dumps({"x": text})

    return _rewrite(data, edit, resign=resign)


_FUZZ_MODEL, _FUZZ_OPT = _trained()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_checkpoints_raise_only_checkpoint_error(tmp_path, data):
    """Whatever is done to the file, loading it either raises CheckpointError and leaves the
    model and optimizer exactly as they were, or (a harmless change) loads the saved values."""
    src = tmp_path / "src.safetensors"
    if not src.exists():
        save_checkpoint(src, _FUZZ_MODEL, _FUZZ_OPT, step=2, config={"k": 1},
                        rng=np.random.default_rng(0), metrics={"loss": 1.5})
    original = src.read_bytes()
    mutation = data.draw(_mutation(len(original)))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_apply(original, mutation))

    model, opt = _fresh_target()
    before = _snapshot(model, opt)
    try:
        load_checkpoint(bad, model, opt)
    except CheckpointError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert _same(before, _snapshot(model, opt)), f"changed by a rejected file: {mutation}"
    else:
        assert _same(_snapshot(_FUZZ_MODEL, _FUZZ_OPT), _snapshot(model, opt)), mutation


# ---------------------------------------------------------------- PyTorch interchange


def _torch_pairs(torch):
    """(name, rnnlab module, torch module, input) with equal sizes; the weights differ."""
    rng = np.random.default_rng(0)
    x_seq = rng.standard_normal((5, 3, 4)).astype(np.float32)
    x_flat = rng.standard_normal((3, 4)).astype(np.float32)
    return [
        ("rnn", RNN(4, 6, rng=1), torch.nn.RNN(4, 6), x_seq),
        ("rnn relu 2 layers", RNN(4, 6, 2, nonlinearity="relu", rng=1),
         torch.nn.RNN(4, 6, 2, nonlinearity="relu"), x_seq),
        ("lstm 2 layers bidirectional", LSTM(4, 5, 2, bidirectional=True, rng=1),
         torch.nn.LSTM(4, 5, 2, bidirectional=True), x_seq),
        ("linear", Linear(4, 7, rng=1), torch.nn.Linear(4, 7), x_flat),
        ("mlp", MLP([4, 8, 8, 2], activation="tanh", rng=1),
         torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8),
                             torch.nn.Tanh(), torch.nn.Linear(8, 2)), x_flat),
    ]


def _outputs_agree(torch, ours, theirs, x, what):
    with torch.no_grad():
        t_out = theirs(torch.from_numpy(x))
    o_out = ours(x)
    if isinstance(t_out, tuple):  # recurrent: output and final state(s)
        assert_close(o_out[0], t_out[0].numpy(), np.float32, f"{what} output")
        t_state, o_state = t_out[1], o_out[1]
        if isinstance(t_state, tuple):
            for a, b in zip(o_state, t_state):
                assert_close(a, b.numpy(), np.float32, f"{what} state")
        else:
            assert_close(o_state, t_state.numpy(), np.float32, f"{what} state")
    else:
        assert_close(o_out, t_out.numpy(), np.float32, f"{what} output")


def test_rnnlab_to_torch_and_back(torch, tmp_path):
    from safetensors.torch import load_file as torch_load_file
    from safetensors.torch import save_file as torch_save_file

    for what, ours, theirs, x in _torch_pairs(torch):
        # rnnlab -> file -> torch
        path = io.save_torch_compatible(ours, tmp_path / "ours.safetensors")
        theirs.load_state_dict(torch_load_file(str(path)))
        _outputs_agree(torch, ours, theirs, x, f"{what} rnnlab->torch")

        # torch (new weights) -> file -> rnnlab
        for p in theirs.parameters():
            torch.nn.init.uniform_(p, -0.3, 0.3)
        torch_save_file(theirs.state_dict(), str(tmp_path / "theirs.safetensors"))
        loaded = load_torch_file(ours, tmp_path / "theirs.safetensors")
        assert loaded == list(dict(ours.named_parameters()))
        _outputs_agree(torch, ours, theirs, x, f"{what} torch->rnnlab")


def test_load_torch_file_checks_before_assigning(torch, tmp_path):
    from safetensors.torch import save_file as torch_save_file

    ours = LSTM(4, 5, 2, rng=1)
    before = ours.state_dict()

    def rejected(path, match, **kw):
        with pytest.raises(CheckpointError, match=match):
            load_torch_file(ours, path, **kw)
        assert all(np.array_equal(before[k], v) for k, v in ours.state_dict().items())

    torch_save_file(torch.nn.LSTM(4, 6, 2).state_dict(), str(tmp_path / "wide.safetensors"))
    rejected(tmp_path / "wide.safetensors", r"expected shape \(20, 4\), got \(24, 4\)")
    torch_save_file(torch.nn.LSTM(4, 5, 1).state_dict(), str(tmp_path / "one.safetensors"))
    rejected(tmp_path / "one.safetensors", "missing")
    t64 = torch.nn.LSTM(4, 5, 2).double()
    torch_save_file(t64.state_dict(), str(tmp_path / "f64.safetensors"))
    rejected(tmp_path / "f64.safetensors", "expected dtype float32, got float64.*cast=True")
    sd = torch.nn.LSTM(4, 5, 2).state_dict()
    sd["weight_hh_l1"][0, 0] = float("nan")
    torch_save_file(sd, str(tmp_path / "nan.safetensors"))
    rejected(tmp_path / "nan.safetensors", "NaN")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    rejected(tmp_path / "junk.safetensors", "not a readable safetensors file")

    # With cast=True a float64 torch model loads into the float32 one.
    load_torch_file(ours, tmp_path / "f64.safetensors", cast=True)
    assert_close(ours.weight_ih_l0.data, t64.weight_ih_l0.detach().numpy(), np.float32, "cast")
