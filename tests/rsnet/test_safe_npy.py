"""Object-array .npy/.npz files are unpickled through an allow-list: a file that names other code is
refused before that code runs, and every real W-TALC file loads as np.load(allow_pickle=True) loads it."""
import codecs
import pickle
import pickletools
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from rsnet import train
from rsnet.data import DataError, load_annotations
from rsnet.data.dataset import WTALCDataset
from rsnet.data.safe_npy import load_npy, load_npz
from rsnet.evaluate.command import main as evaluate_main
from rsnet.synthetic import FEATURES_FILE, SyntheticSpec, generate

TINY = SyntheticSpec(n_train=4, n_test=3, length_scale=0.15)


class _CreatesFile:
    """Unpickling it calls open(path, 'w'): the file's existence afterwards proves the code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _object_array(*items) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def _save_with_protocol(path, array, protocol: int) -> None:
    """np.save's layout with the pickle at ``protocol`` (np.save always uses one fixed protocol)."""
    with open(path, "wb") as file:
        npy_format.write_array_header_1_0(file, npy_format.header_data_from_array_1_0(array))
        pickle.dump(array, file, protocol=protocol)


def _same(a, b) -> bool:
    """Equal values of the same types, recursing into object arrays and lists (dtype-wise for arrays)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.hasobject:
            return all(_same(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))
        return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN


def test_a_pickle_that_would_create_a_file_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "created-by-unpickling"
    path = tmp_path / "evil.npy"
    np.save(path, _object_array(np.zeros((2, 3), np.float32), _CreatesFile(marker)), allow_pickle=True)
    with pytest.raises(DataError, match=r"evil\.npy: refuses to unpickle io\.open: only numpy arrays"):
        load_npy(path)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # the file is live: np.load runs its code
    assert marker.exists()


def test_a_codec_other_than_latin1_is_refused(tmp_path):
    class Rot13:
        def __reduce__(self):
            return codecs.encode, ("text", "rot13")

    path = tmp_path / "codec.npy"
    _save_with_protocol(path, _object_array(Rot13()), protocol=2)
    assert np.load(path, allow_pickle=True)[0] == "grkg"
    with pytest.raises(DataError, match=r"codec\.npy.*only as encode\(str, 'latin1'\)"):
        load_npy(path)


def test_a_payload_that_is_not_the_announced_array_is_refused(tmp_path):
    path = tmp_path / "list.npy"
    with open(path, "wb") as file:
        npy_format.write_array_header_1_0(file, npy_format.header_data_from_array_1_0(_object_array(1, 2)))
        pickle.dump([1, 2], file)
    assert np.load(path, allow_pickle=True) == [1, 2]  # np.load hands back whatever was pickled
    with pytest.raises(DataError, match=r"list\.npy: the header announces a object array of shape \(2,\)"):
        load_npy(path)


def _spelled_as_numpy_1(payload: bytes) -> bytes:
    """The pickle as numpy 1.x writes it: numpy.core.* where numpy 2.x writes numpy._core.*."""
    for numpy_2 in (b"numpy._core.multiarray", b"numpy._core.numeric"):
        numpy_1 = numpy_2.replace(b"._core.", b".core.")
        payload = payload.replace(b"c" + numpy_2 + b"\n", b"c" + numpy_1 + b"\n")  # protocol 2's GLOBAL
        payload = payload.replace(b"\x8c" + bytes([len(numpy_2)]) + numpy_2,  # protocol 4+'s SHORT_BINUNICODE
                                  b"\x8c" + bytes([len(numpy_1)]) + numpy_1)
    return pickletools.optimize(payload)  # protocol 4+: frames of the new lengths


@pytest.mark.parametrize("numpy_1", [False, True])
@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.filterwarnings("ignore:numpy.core.numeric is deprecated:DeprecationWarning")  # np.load's, not ours
def test_arrays_strings_and_scalars_load_as_np_load_loads_them(tmp_path, protocol, numpy_1):
    """Protocol 2 (Python 2 and W-TALC's files) writes bytes through _codecs.encode and empty bytes as
    bytes(); np.save writes protocol 4; protocol 5 rebuilds arrays with _frombuffer; numpy 1.x names
    its functions numpy.core.*, numpy 2.x numpy._core.*."""
    array = _object_array(np.arange(6, dtype=np.float32).reshape(2, 3), [[1.5, 2.0]], ["text", b"bytes", b""],
                          np.float64(2.5), np.bytes_(b"abc"), np.str_("xyz"), np.array([b"a", b"bc"]),
                          np.array([[1, 2]], dtype=np.int64).T, None, 3, float("nan"))
    payload = pickle.dumps(array, protocol=protocol)
    if numpy_1:
        payload = _spelled_as_numpy_1(payload)
        assert b"numpy.core." in payload and b"numpy._core." not in payload
    path = tmp_path / "mixed.npy"
    with open(path, "wb") as file:
        npy_format.write_array_header_1_0(file, npy_format.header_data_from_array_1_0(array))
        file.write(payload)
    assert _same(load_npy(path), np.load(path, allow_pickle=True))


def test_python_3_bytes_at_protocol_2_without_python_2_names_load(tmp_path):
    path = tmp_path / "bytes.npy"
    with open(path, "wb") as file:
        array = _object_array(b"", b"abc")
        npy_format.write_array_header_1_0(file, npy_format.header_data_from_array_1_0(array))
        pickle.dump(array, file, protocol=2, fix_imports=False)  # empty bytes as builtins.bytes()
    assert _same(load_npy(path), np.load(path, allow_pickle=True))


def test_the_dataset_refuses_a_features_file_that_would_create_a_file(tmp_path, capsys):
    root = generate(tmp_path / "root", TINY, seed=3)
    features = root / "Thumos14reduced" / FEATURES_FILE
    marker = tmp_path / "created-by-unpickling"
    videos = np.load(features, allow_pickle=True)
    videos[-1] = _CreatesFile(marker)
    np.save(features, videos, allow_pickle=True)
    with pytest.raises(DataError, match="refuses to unpickle io.open"):
        WTALCDataset(root)
    assert train.main(["--data-root", str(root), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: {features}: refuses to unpickle io.open")
    assert not marker.exists() and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_annotations_refuse_a_labels_file_that_would_create_a_file(tmp_path):
    root = generate(tmp_path / "root", TINY, seed=3)
    labels = root / "Thumos14reduced" / "labels.npy"
    marker = tmp_path / "created-by-unpickling"
    np.save(labels, _object_array(*np.load(labels, allow_pickle=True)[:-1], _CreatesFile(marker)), allow_pickle=True)
    with pytest.raises(DataError, match=r"labels\.npy: refuses to unpickle io\.open"):
        load_annotations(root / "Thumos14reduced")
    assert not marker.exists()


def test_the_evaluator_refuses_a_predictions_file_that_would_create_a_file(tmp_path, capsys):
    root = generate(tmp_path / "root", TINY, seed=3)
    marker = tmp_path / "created-by-unpickling"
    predictions = tmp_path / "p.npz"
    np.savez(predictions, vid_preds=np.zeros((3, 21), np.float32), frm_preds=_object_array(_CreatesFile(marker)))
    code = evaluate_main(["--predictions", str(predictions), "--annotations", str(root / "Thumos14reduced")])
    assert code == 2 and "p.npz/frm_preds.npy: refuses to unpickle io.open" in capsys.readouterr().err
    assert not marker.exists()


def test_an_npz_loads_as_np_load_loads_it(tmp_path):
    path = tmp_path / "p.npz"
    arrays = {"vid_preds": np.random.default_rng(0).random((3, 5), dtype=np.float32),
              "frm_preds": _object_array(np.ones((4, 5), np.float32), np.zeros((1, 5), np.float32))}
    np.savez(path, **arrays)
    with np.load(path, allow_pickle=True) as expected:
        loaded = load_npz(path)
        assert sorted(loaded) == sorted(expected.files)
        assert all(_same(loaded[name], expected[name]) for name in expected.files)


def test_a_file_that_is_not_an_archive_is_named(tmp_path):
    path = tmp_path / "p.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"cannot read .*p\.npz"):
        load_npz(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", b"\x93NUMPY truncated")
    with pytest.raises(DataError, match=r"cannot read .*p\.npz"):
        load_npz(path)


@pytest.mark.parametrize("dataset", ["Thumos14reduced", "ActivityNet1.2"])
def test_every_real_annotation_file_loads_as_np_load_loads_it(shared_data, dataset):
    paths = sorted((shared_data / f"{dataset}-Annotations").glob("*.npy"))
    assert len(paths) >= 7
    for path in paths:
        assert _same(load_npy(path), np.load(path, allow_pickle=True)), path.name


def test_the_synthetic_features_load_bit_identical(tmp_path):
    features = generate(tmp_path / "root", TINY, seed=2) / "Thumos14reduced" / FEATURES_FILE
    loaded, expected = load_npy(features), np.load(features, allow_pickle=True)
    assert loaded.dtype == expected.dtype == object and loaded.shape == expected.shape
    for got, want in zip(loaded, expected, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
