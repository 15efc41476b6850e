"""Fuzzing the weight readers (hypothesis): a TF checkpoint, safetensors, and PyTorch .bin files (zip and
legacy layouts, plus arbitrary pickle bytes), each mutated by bit flips, byte overwrites and
truncation. Every outcome is either a correct load or a CheckpointError (the readers' one error
class, which names the file); never another exception, a crash or an unbounded allocation.

The default run tries FAST examples per case (~20 s in all); `-m slow` runs the long version."""
import os
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from paddle_electra.io import CheckpointError, load_tensors, save_tensors  # noqa: E402
from paddle_electra.io.torch_pickle import load_torch_state_dict  # noqa: E402

FAST, LONG = 1000, 5000
TENSORS = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "a.bias": np.linspace(-1, 1, 4, dtype=np.float32),
           "emb": np.random.RandomState(0).randn(5, 2).astype(np.float32)}


def _mutations(size: int):
    """A list of edits: ("flip", pos, bit), ("set", pos, bytes), ("cut", length)."""
    flip = st.tuples(st.just("flip"), st.integers(0, size - 1), st.integers(0, 7))
    put = st.tuples(st.just("set"), st.integers(0, size - 1), st.binary(min_size=1, max_size=8))
    cut = st.tuples(st.just("cut"), st.integers(0, size - 1))
    return st.lists(st.one_of(flip, flip, put, cut), min_size=1, max_size=4)


def _apply(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for e in edits:
        if e[0] == "flip" and e[1] < len(b):
            b[e[1]] ^= 1 << e[2]
        elif e[0] == "set" and e[1] < len(b):
            b[e[1]:e[1] + len(e[2])] = e[2]
        elif e[0] == "cut":
            del b[e[1]:]
    return bytes(b)


def _same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def _well_formed(got):
    assert isinstance(got, dict) and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in got.items())


@pytest.fixture(scope="module")
def files():
    """The intact files, each as bytes, and what they hold."""
    tmp = tempfile.mkdtemp(prefix="fuzz-src-")
    out = {}
    save_tensors(TENSORS, os.path.join(tmp, "w.safetensors"))
    out["safetensors"] = open(os.path.join(tmp, "w.safetensors"), "rb").read()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        sd = {k: torch.tensor(v) for k, v in TENSORS.items()}
        sd["view"] = torch.arange(20.0).reshape(4, 5)[1:3, ::2]
        for legacy in (False, True):
            p = os.path.join(tmp, f"w{legacy}.bin")
            torch.save(sd, p, _use_new_zipfile_serialization=not legacy)
            out["legacy" if legacy else "zip"] = open(p, "rb").read()
        out["bin_values"] = {k: v.numpy().copy() for k, v in sd.items()}
    return out


def _check_reader(read, data: bytes, edits, want=None):
    fd, path = tempfile.mkstemp(prefix="fuzz-")
    with os.fdopen(fd, "wb") as f:
        f.write(_apply(data, edits))
    try:
        got = read(path)
    except CheckpointError as e:
        assert path in str(e)  # the error names the file
        return
    finally:
        os.remove(path)
    _well_formed(got)
    if want is not None:  # a checksummed format: a load that succeeds is the intact content
        _same(got, want)


def _cases(n):
    common = dict(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow], derandomize=n == FAST)

    def safetensors_case(files):
        data = files["safetensors"]

        @settings(**common)
        @given(_mutations(len(data)))
        def run(edits):
            _check_reader(load_tensors, data, edits)
        run()

    def bin_case(files, layout):
        if layout not in files:
            pytest.skip("torch is needed to write the .bin files")
        data = files[layout]

        @settings(**common)
        @given(_mutations(len(data)))
        def run(edits):  # zip records carry CRC-32s; the legacy layout has no checksum
            _check_reader(load_torch_state_dict, data, edits, files["bin_values"] if layout == "zip" else None)
        run()

    def pickle_case(files):
        import pickle
        import struct
        head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))

        @settings(**common)
        @given(st.binary(max_size=300), st.booleans())
        def run(body, legacy):
            if legacy:
                _check_reader(load_torch_state_dict, head + b"\x80\x02" + body, [("cut", 10 ** 9)])
            else:
                import io
                import zipfile
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as zf:
                    zf.writestr("archive/data.pkl", b"\x80\x02" + body)
                    zf.writestr("archive/data/0", struct.pack("<4f", 1, 2, 3, 4))
                _check_reader(load_torch_state_dict, buf.getvalue(), [("cut", 10 ** 9)])
        run()

    return safetensors_case, bin_case, pickle_case


@pytest.fixture(scope="module")
def tf_checkpoint():
    pytest.importorskip("tensorflow")
    from test_conversion_tf import released_layout, write_checkpoints
    from paddle_electra.conversion.tf_checkpoint import TFCheckpoint
    d = tempfile.mkdtemp(prefix="fuzz-tf-")
    prefix = write_checkpoints(d, released_layout(20, 8, 8, 1, 16, 8, max_position_embeddings=8))["full"]
    with TFCheckpoint(prefix) as c:
        want = c.read_all()
    return prefix, want


def _tf_case(n, tf_checkpoint, which):
    from paddle_electra.conversion.tf_checkpoint import TFCheckpoint
    prefix, want = tf_checkpoint
    src = prefix + (".index" if which == "index" else ".data-00000-of-00001")
    data = open(src, "rb").read()
    work = tempfile.mkdtemp(prefix="fuzz-tfw-")
    other = prefix + (".data-00000-of-00001" if which == "index" else ".index")
    target = os.path.join(work, "ckpt")
    open(target + other[len(prefix):], "wb").write(open(other, "rb").read())

    @settings(max_examples=n, deadline=None, derandomize=n == FAST,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(_mutations(len(data)))
    def run(edits):
        open(target + src[len(prefix):], "wb").write(_apply(data, edits))
        try:
            with TFCheckpoint(target) as c:
                got = c.read_all()
        except CheckpointError as e:
            assert work in str(e)
            return
        _same(got, want)  # every block and tensor is CRC-32C checked: a success is the intact content
    run()


safetensors_fast, bin_fast, pickle_fast = _cases(FAST)
safetensors_long, bin_long, pickle_long = _cases(LONG)


def test_fuzz_safetensors(files):
    safetensors_fast(files)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_fuzz_torch_bin(files, layout):
    bin_fast(files, layout)


def test_fuzz_arbitrary_pickles(files):
    pickle_fast(files)


@pytest.mark.parametrize("which", ["index", "data"])
def test_fuzz_tf_checkpoint(tf_checkpoint, which):
    _tf_case(FAST, tf_checkpoint, which)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_fuzz_long(files, tf_checkpoint, layout):
    safetensors_long(files)
    bin_long(files, layout)
    pickle_long(files)
    _tf_case(LONG, tf_checkpoint, "index" if layout == "zip" else "data")
