"""What the student's process sends back to the judge (grader.remote's reply format).

Pure: no fork, no pytest child. A reply must bring every tensor back exactly (dtype,
shape, device, values, whatever its strides), and bytes written by a hostile process must
be read as plain data or refused, never run.
"""
from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict

import pytest
import torch

from grader.remote import Server, _dump_reply, _load_reply, _decode, LocalConnection, ReplyError


def _round_trip(value):
    return _load_reply(_dump_reply({"ok": value}))["ok"]


TENSORS = {
    "float32": lambda: torch.randn(3, 4),
    "transposed": lambda: torch.randn(3, 4).t(),
    "column of a wide matrix": lambda: torch.randn(4, 532)[:, 5],
    "one element with a large stride": lambda: torch.randn(3, 9)[1:2, 3],
    "expanded": lambda: torch.randn(2, 3).expand(4, 2, 3),
    "float64": lambda: torch.randn(5, dtype=torch.float64),
    "float16": lambda: torch.randn(5).half(),
    "bfloat16": lambda: torch.randn(5).bfloat16(),
    "complex conjugate view": lambda: torch.randn(3, dtype=torch.complex64).conj(),
    "negated complex128": lambda: -torch.randn(2, dtype=torch.complex128).conj(),
    "int64 slice": lambda: torch.arange(10)[2:7],
    "int8": lambda: torch.randint(-5, 5, (4,), dtype=torch.int8),
    "bool": lambda: torch.tensor([True, False, True]),
    "empty": lambda: torch.empty(0, 3),
    "scalar": lambda: torch.tensor(5),
}


@pytest.mark.parametrize("make", TENSORS.values(), ids=TENSORS.keys())
def test_a_tensor_comes_back_exactly(make):
    value = make()
    back = _round_trip(value)
    assert type(back) is torch.Tensor and back.dtype == value.dtype and back.shape == value.shape
    assert back.device == value.device
    assert torch.equal(back, value.resolve_conj().resolve_neg())


def test_a_meta_tensor_comes_back_with_its_shape_and_dtype():
    back = _round_trip(torch.empty(2, 3, dtype=torch.float16, device="meta"))
    assert back.is_meta and back.shape == (2, 3) and back.dtype == torch.float16


def test_plain_values_come_back_equal():
    value = [1, 2.5, "text", b"bytes", None, True, 1 + 2j, torch.float32, torch.device("cpu"),
             torch.Size([2, 3]), OrderedDict(a=1, b=[2]), (1, ("x", {"k": 3.0}))]
    back = _round_trip(value)
    assert back == value and type(back[9]) is torch.Size and type(back[10]) is OrderedDict
    # ... in the plain format, a module's state_dict (an OrderedDict of tensors) too: torch.save's
    # is for what that cannot carry, and costs a millisecond or two each way
    state = torch.nn.Linear(2, 1).state_dict()
    for reply in (value, state):
        assert _dump_reply({"ok": reply})[:4] != b"PK\x03\x04", reply
    back = _round_trip(state)
    assert type(back) is OrderedDict and list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_a_tensor_the_plain_format_cannot_carry_goes_in_torch_saves_format():
    sparse = torch.randn(3, 3).to_sparse()
    data = _dump_reply({"ok": sparse})
    assert data[:4] == b"PK\x03\x04"
    with pytest.warns(UserWarning):  # torch checks the sparse tensor it reads
        back = _load_reply(data)["ok"]
    assert back.layout == torch.sparse_coo and torch.equal(back.to_dense(), sparse.to_dense())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize("payload", [
    pickle.dumps(_RunsCode()),
    pickle.dumps({"ok": torch.nn.Linear(1, 1)}),           # a class: the student's process keeps those
    pickle.dumps({"ok": [print]}),
], ids=["os.system", "a module object", "a builtin function"])
def test_a_forged_reply_that_names_code_is_refused(payload):
    with pytest.raises(pickle.UnpicklingError, match="not plain data"):
        _load_reply(payload)


@pytest.mark.parametrize("pid", [
    ("tensor", "float32", (2,), "cpu", b"\x00" * 7),       # 7 bytes for 2 floats
    ("tensor", "object", (1,), "cpu", b"\x00" * 8),        # no such dtype
    ("tensor", "float32", (-1,), "cpu", b""),              # a negative size
    ("dtype", "torch.Tensor"),
    ("module", "os"),
], ids=["short data", "unknown dtype", "negative size", "unknown dtype name", "unknown kind"])
def test_a_malformed_reference_is_refused(pid):
    class Forge(pickle.Pickler):
        def persistent_id(self, obj):
            return pid if obj == "here" else None

    buffer = io.BytesIO()
    Forge(buffer, protocol=5).dump({"ok": "here"})
    with pytest.raises(pickle.UnpicklingError):
        _load_reply(buffer.getvalue())


def test_an_unreadable_reply_is_the_students_error_in_one_line():
    class Garbage(LocalConnection):
        def exchange(self, payload: bytes) -> bytes:
            return pickle.dumps(_RunsCode())

    conn = Garbage(Server(load_module=None, load_probes=None, local=True))
    with pytest.raises(ReplyError, match="could not be read back: UnpicklingError"):
        conn.request("seed", seed=0)


def test_a_tensor_reply_rebuilds_parameters_and_gradients():
    weight = torch.nn.Parameter(torch.randn(2, 2))
    weight.sum().backward()
    server = Server(load_module=None, load_probes=None, local=True)
    back = _decode(_round_trip(server._encode(weight, [0], 0)), None)
    assert isinstance(back, torch.nn.Parameter) and back.requires_grad
    assert torch.equal(back, weight.detach()) and torch.equal(back.grad, torch.ones(2, 2))


# --------------------------------------------------------------------------- requests

def _sent(value):
    """`value` as the student's process receives it in a request from the judge."""
    from grader.remote import _Pickler, _Unpickler
    buffer = io.BytesIO()
    _Pickler(buffer).dump({"op": "call", "args": value})
    return _Unpickler(io.BytesIO(buffer.getvalue()), server=None).load()["args"]


@pytest.mark.parametrize("make", TENSORS.values(), ids=TENSORS.keys())
def test_a_tensor_reaches_the_students_process_exactly(make):
    value = make()
    got = _sent(value)
    assert type(got) is torch.Tensor and got.dtype == value.dtype and got.shape == value.shape
    assert got.stride() == value.stride() and got.is_conj() == value.is_conj() and got.is_neg() == value.is_neg()
    assert torch.equal(got.resolve_conj().resolve_neg(), value.resolve_conj().resolve_neg())
    assert got._base is None or value._base is not None   # a whole tensor arrives whole, not as a view


def _pickled(value):
    return pickle.loads(pickle.dumps(value))


def test_tensors_arrive_as_pickle_brings_them_flags_and_storages_included():
    x = torch.arange(6.0)
    sent = (x, x.view(2, 3), x[2:], torch.zeros(2, 3, requires_grad=True), torch.ones(3))
    got, plain = _sent(sent), _pickled(sent)
    for g, p in zip(got, plain):
        assert (g.dtype, g.shape, g.stride(), g.requires_grad, g.is_leaf, g._base is None) == \
            (p.dtype, p.shape, p.stride(), p.requires_grad, p.is_leaf, p._base is None)
        assert torch.equal(g, p) and g.untyped_storage().resizable() == p.untyped_storage().resizable()
    ptrs = [t.untyped_storage().data_ptr() for t in got]
    plain_ptrs = [t.untyped_storage().data_ptr() for t in plain]
    assert [[a == b for b in ptrs] for a in ptrs] == [[a == b for b in plain_ptrs] for a in plain_ptrs]
    got[0][0] = 7.0
    assert got[1][0, 0].item() == plain[1][0, 0].item() == 0.0   # each a storage of its own, as pickle makes them
    model = torch.nn.Linear(3, 2)
    back = _sent(model)
    assert isinstance(back.weight, torch.nn.Parameter) and back.weight.requires_grad
    assert torch.equal(back.weight, model.weight) and torch.equal(back.bias, model.bias)


def test_a_tensor_computed_with_grad_arrives_as_pickle_brings_it():
    y = torch.ones(2, requires_grad=True) * 2
    got, plain = _sent(y), pickle.loads(pickle.dumps(y))
    assert (got.requires_grad, got.is_leaf, got.tolist()) == (plain.requires_grad, plain.is_leaf, plain.tolist())


# --------------------------------------------------------------------------- a test's requests

class _Recording(LocalConnection):
    """Both sides in this process; records the ops of every exchange."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.sent: list[list[str]] = []

    def exchange(self, payload: bytes) -> bytes:
        from grader.remote import _Unpickler
        request = _Unpickler(io.BytesIO(payload), self.server).load()
        ops = [one["op"] for one in request["ops"]] if request["op"] == "batch" else [request["op"]]
        self.sent.append(ops)
        return super().exchange(payload)


def test_a_tests_begin_travels_with_its_first_request_and_the_module_is_fetched_once():
    import types

    from grader.remote import Student

    module = types.ModuleType("ch05_linear_regression")
    module.draw = lambda: torch.rand(1).item()
    conn = _Recording(Server(load_module=lambda chapter: module, load_probes=None, local=True))
    student = Student(conn, "05")
    firsts = []
    for _ in range(3):
        student.begin()
        student.begin()                      # a test that never reached the student's code
        firsts.append(student.module.draw())
        assert student.module.draw() != firsts[-1]
    # every test starts afresh from seed 0, as when `begin` was a request of its own
    assert firsts[0] == firsts[1] == firsts[2]
    assert conn.sent == [["begin", "module"], ["getattr"], ["call"], ["getattr"], ["call"]] + \
        [["begin", "getattr"], ["call"], ["getattr"], ["call"]] * 2


def test_a_failed_import_is_asked_for_again_in_the_next_test():
    from grader.remote import ImplImportError, Student

    def broken(chapter):
        raise ImplImportError("ch05_linear_regression.py: SyntaxError at line 3")

    conn = _Recording(Server(load_module=broken, load_probes=None, local=True))
    student = Student(conn, "05")
    for _ in range(2):
        student.begin()
        with pytest.raises(ImplImportError, match="SyntaxError"):
            student.module  # noqa: B018
    assert conn.sent == [["begin", "module"]] * 2


def test_begin_arms_the_cpu_timer_for_its_test_or_disarms_it():
    """In the student's process the next test's `begin` does what the earlier test's `end`
    did: a test without a CPU limit does not inherit the earlier test's timer."""
    import signal

    from grader import remote

    server = Server(load_module=None, load_probes=None)
    handler = signal.getsignal(signal.SIGPROF)
    try:
        server.handle(_request({"op": "begin", "cpu": 50.0, "seed": 0}))
        assert signal.getitimer(signal.ITIMER_PROF)[0] > 40
        server.handle(_request({"op": "begin", "cpu": 0.0, "seed": 0}))
        assert signal.getitimer(signal.ITIMER_PROF)[0] == 0
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, handler)
    # the timer running out between requests (the student's own threads) stops only it
    assert remote._cpu_expired(signal.SIGPROF, None) is None
    remote._serving[0] = True
    try:
        with pytest.raises(remote.CpuTimeLimit):
            remote._cpu_expired(signal.SIGPROF, None)
    finally:
        remote._serving[0] = False


def _request(fields: dict) -> bytes:
    from grader.remote import _Pickler
    buffer = io.BytesIO()
    _Pickler(buffer).dump(fields)
    return buffer.getvalue()
