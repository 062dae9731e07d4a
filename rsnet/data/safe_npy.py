"""Reading .npy and .npz files without running code that a downloaded file may carry.

W-TALC stores features and annotations as object arrays, which numpy writes as a pickle, and
``np.load(allow_pickle=True)`` unpickles with the whole pickle machinery: a file may name any
importable callable (``os.system``, ...) and have it called with arguments of its choice. Here a
plain array is read with pickling off, and an object array's payload is unpickled by an
Unpickler that resolves only the globals that arrays of arrays, lists, numbers and strings need
(``ALLOWED_GLOBALS``); any other global refuses the file before anything is called.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ..errors import DataError


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """What ``_codecs.encode`` does for the only call pickle makes of it: bytes at protocol 2 are
    written as ``encode(str(b, 'latin1'), 'latin1')``. Other codecs are not needed and refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only as encode(str, 'latin1'), "
                                     f"not encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


# Taken from numpy's own reductions, so that they are the running numpy's objects, whichever
# module (numpy.core in 1.x, numpy._core in 2.x) it keeps them in.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(0).__reduce_ex__(5)[0]

# (module, name) as the pickle names it -> the object it resolves to. Both numpy module spellings
# are listed because files written by numpy 1.x name numpy.core and by 2.x numpy._core.
ALLOWED_GLOBALS = {
    # ndarray.__reduce__: _reconstruct(ndarray, shape, typecode) then __setstate__(its data)
    **{(module, "_reconstruct"): _RECONSTRUCT for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    # ndarray.__reduce_ex__ at protocol 5: _frombuffer(data, dtype, shape, order)
    **{(module, "_frombuffer"): _FROMBUFFER for module in ("numpy.core.numeric", "numpy._core.numeric")},
    # an array's dtype, and a numpy scalar's
    ("numpy", "dtype"): np.dtype,
    # numpy scalars (np.float64, np.bytes_, ...) held by an object array: scalar(dtype, raw bytes)
    **{(module, "scalar"): _SCALAR for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    # bytes at pickle protocol 2 (ActivityNet1.2's labels_all.npy): non-empty ones via
    # _codecs.encode, the empty one as bytes() (builtins, or __builtin__ in a Python 2 naming)
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "bytes"): bytes,
    ("__builtin__", "bytes"): bytes,
}


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path):
        # np.load's default: a Python 2 str is read as ASCII text. Python 2 module names are not
        # mapped to Python 3's (that happens in the find_class replaced here): the allow-list has both.
        super().__init__(file, encoding="ASCII")
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise DataError(f"{self.path}: refuses to unpickle {module}.{name}: only numpy arrays, dtypes and "
                            f"strings are allowed (a file naming other code may run it when loaded)") from None


def _read_array(file: BinaryIO, path: Path) -> np.ndarray:
    version = npy_format.read_magic(file)
    read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, _, dtype = read_header(file)
    if not dtype.hasobject:
        file.seek(0)
        return npy_format.read_array(file, allow_pickle=False)
    array = _AllowListUnpickler(file, path).load()
    if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
        raise DataError(f"{path}: the header announces a {dtype} array of shape {shape} but the data is "
                        f"{type(array).__name__} {getattr(array, 'dtype', '')} {getattr(array, 'shape', '')}")
    return array


def load_npy(path: str | Path) -> np.ndarray:
    """The array in a .npy file; an object array's pickle may hold only ALLOWED_GLOBALS."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        with open(path, "rb") as file:
            return _read_array(file, path)
    except DataError:
        raise
    except Exception as exc:  # a truncated or foreign file: say which one
        raise DataError(f"cannot read {path}: {exc}") from exc


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive by name, each read as load_npy reads a file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for member in archive.namelist():
                with archive.open(member) as file:
                    arrays[member.removesuffix(".npy")] = _read_array(file, path / member)
            return arrays
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
