"""Multi-process runs: starting ``jax.distributed``, making the processes
agree, and the few host-side collectives a run needs.

The same command runs on every host (or as several processes of one machine
in the tests). ``initialize`` first meets the other processes on a plain TCP
socket at the coordinator's address: every process sends its fingerprint
(the flattened config), process 0 compares them and answers all at once,
and only then does ``jax.distributed.initialize`` start JAX's coordination
service on that same port. Why the handshake: when the coordinator cannot
be reached in time, JAX aborts the process with a C++ fatal error and a
stack trace; here a process that cannot reach it, or processes that were
started with different configs, stop with one line before anything is
written. On CPU the processes talk through gloo collectives.

After start-up every process runs the same program on its share of the
data; ``agree`` compares what each process read (the data's fingerprint),
``is_main`` says which one writes files, ``barrier`` orders the writes.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import socket
import struct
import time
from typing import Any, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

from priojax.errors import PriojaxError

class DistributedError(PriojaxError):
  """Processes cannot start together, or disagree on config or data."""


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
  """How this process joins a run: ``num_processes`` 1 is a plain run;
  ``auto`` lets ``jax.distributed.initialize()`` read the cluster (Cloud
  TPU, SLURM) instead of the coordinator fields."""
  coordinator: str = ''
  num_processes: int = 1
  process_id: int = 0
  timeout_s: int = 120
  auto: bool = False
  # Seconds without a heartbeat after which JAX's coordination service
  # stops the surviving processes: a run whose peer died ends within this
  # time instead of waiting in a collective for ever.
  heartbeat_s: int = 20

  @property
  def multi(self) -> bool:
    return self.auto or self.num_processes > 1

  def check(self) -> None:
    if self.auto:
      return
    if self.num_processes < 1:
      raise DistributedError(f'--num_processes={self.num_processes}: expected 1 or more')
    if not 0 <= self.process_id < self.num_processes:
      raise DistributedError(f'--process_id={self.process_id}: expected 0 to {self.num_processes - 1} '
                             f'(--num_processes={self.num_processes})')
    if self.num_processes > 1:
      host, _, port = self.coordinator.rpartition(':')
      if not host or not port.isdigit():
        raise DistributedError(f'--coordinator_address={self.coordinator!r}: expected host:port '
                               f'(e.g. 127.0.0.1:12345) when --num_processes > 1')
    if self.timeout_s <= 0:
      raise DistributedError(f'--distributed_timeout={self.timeout_s}: expected seconds > 0')
    if self.heartbeat_s <= 0:
      raise DistributedError(f'--distributed_heartbeat={self.heartbeat_s}: expected seconds > 0')


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, str]:
  """``{'a': {'b': 1}}`` -> ``{'a.b': '1'}``: fields named as on the command line."""
  out = {}
  for key in sorted(tree):
    value, name = tree[key], f'{prefix}{key}'
    if isinstance(value, Mapping):
      out.update(flatten(value, name + '.'))
    else:
      out[name] = json.dumps(value, sort_keys=True, default=str)
  return out


def first_difference(what: str, fingerprints: list[dict[str, str]]) -> str | None:
  """One line naming the first field (sorted) where a process differs from
  process 0, or None when all agree (``what``: 'a different config')."""
  base = fingerprints[0]
  for pid, other in enumerate(fingerprints[1:], start=1):
    for field in sorted(set(base) | set(other)):
      if base.get(field) != other.get(field):
        mine, theirs = (d.get(field, '(absent)') for d in (base, other))
        return (f'process {pid} was started with {what} than process 0: '
                f'{field} is {theirs} there and {mine} on process 0')
  return None


# --- start-up ----------------------------------------------------------------


def _send(conn: socket.socket, obj: Any) -> None:
  data = json.dumps(obj).encode()
  conn.sendall(struct.pack('!I', len(data)) + data)


def _recv(conn: socket.socket) -> Any:
  def exactly(n):
    buf = b''
    while len(buf) < n:
      chunk = conn.recv(n - len(buf))
      if not chunk:
        raise ConnectionError('connection closed')
      buf += chunk
    return buf
  return json.loads(exactly(struct.unpack('!I', exactly(4))[0]))


def _serve_handshake(spec: ProcessSpec, fingerprint: dict[str, str]) -> None:
  """Process 0: waits for the others, compares, answers all."""
  port = int(spec.coordinator.rpartition(':')[2])
  deadline = time.monotonic() + spec.timeout_s
  joined: dict[int, tuple[socket.socket, dict]] = {}
  refused: list[socket.socket] = []
  problem = None
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      server.bind(('', port))
    except OSError as e:
      raise DistributedError(f'--coordinator_address={spec.coordinator}: cannot listen on port {port} '
                             f'({e.strerror})') from None
    server.listen(spec.num_processes)
    try:
      while problem is None and len(joined) < spec.num_processes - 1:
        server.settimeout(max(0.01, deadline - time.monotonic()))
        try:
          conn, _ = server.accept()
        except OSError:  # the deadline passed
          missing = sorted(set(range(1, spec.num_processes)) - set(joined))
          raise DistributedError(
              f'processes {missing} did not join the coordinator at {spec.coordinator} within '
              f'{spec.timeout_s} s (--distributed_timeout)') from None
        try:
          conn.settimeout(max(0.01, deadline - time.monotonic()))
          hello = _recv(conn)
        except (OSError, ConnectionError, ValueError):
          conn.close()  # a connection that said nothing: not one of ours
          continue
        pid = int(hello['process_id'])
        if hello['num_processes'] != spec.num_processes:
          problem = (f'process {pid} was started with --num_processes={hello["num_processes"]}, '
                     f'process 0 with {spec.num_processes}')
        elif pid in joined or not 0 < pid < spec.num_processes:
          problem = f'two processes were started with --process_id={pid}'
        if problem:
          refused.append(conn)
        else:
          joined[pid] = (conn, hello['fingerprint'])
      problem = problem or first_difference(
          'a different config', [fingerprint] + [joined[p][1] for p in sorted(joined)])
      for conn in [c for c, _ in joined.values()] + refused:
        try:
          _send(conn, {'error': problem})
        except OSError:
          pass  # that process is gone; the others still hear the verdict
    finally:
      for conn in [c for c, _ in joined.values()] + refused:
        conn.close()
  if problem:
    raise DistributedError(problem)


def _join_handshake(spec: ProcessSpec, fingerprint: dict[str, str]) -> None:
  """Any other process: reaches the coordinator (retrying until the
  timeout), sends its fingerprint, and waits for the verdict."""
  host, _, port = spec.coordinator.rpartition(':')
  deadline = time.monotonic() + spec.timeout_s
  while True:
    try:
      conn = socket.create_connection((host.strip('[]'), int(port)), timeout=1.0)
      break
    except OSError:
      if time.monotonic() > deadline:
        raise DistributedError(f'process {spec.process_id} cannot reach the coordinator at {spec.coordinator} '
                               f'within {spec.timeout_s} s (--distributed_timeout); is process 0 '
                               'running?') from None
      time.sleep(0.2)
  with conn:
    conn.settimeout(max(0.01, deadline - time.monotonic()) + 5)
    try:
      _send(conn, {'process_id': spec.process_id, 'num_processes': spec.num_processes,
                   'fingerprint': fingerprint})
      answer = _recv(conn)
    except (OSError, ConnectionError, ValueError):
      raise DistributedError(f'process {spec.process_id}: the coordinator at {spec.coordinator} dropped '
                             'the connection during start-up (see process 0\'s error)') from None
  if answer.get('error'):
    raise DistributedError(answer['error'])


def initialize(spec: ProcessSpec, fingerprint: dict[str, str]) -> None:
  """Joins the run described by ``spec`` (nothing to do for one process).
  Call before anything starts JAX's backends."""
  spec.check()
  if not spec.multi:
    return
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if spec.auto:  # the cluster says who is who
    jax.distributed.initialize(initialization_timeout=spec.timeout_s, heartbeat_timeout_seconds=spec.heartbeat_s)
  else:
    (_serve_handshake if spec.process_id == 0 else _join_handshake)(spec, fingerprint)
    jax.distributed.initialize(spec.coordinator, spec.num_processes, spec.process_id,
                               initialization_timeout=spec.timeout_s, heartbeat_timeout_seconds=spec.heartbeat_s)
  # The first collective sets up gloo's connections between the processes,
  # and gives up if they do not all arrive within 30 s; later ones wait as
  # long as needed (the main process preparing data, a slow compile). Set
  # it up now, while the processes are in step.
  multihost_utils.process_allgather(np.zeros(1, np.int32))


# --- after start-up ----------------------------------------------------------


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def is_main() -> bool:
  """Whether this process writes the run's files (metrics, ledger, exports)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op alone)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def allgather_bytes(data: bytes) -> list[bytes]:
  """Every process's ``data``, in process order, on every process."""
  if jax.process_count() == 1:
    return [data]
  size = np.asarray([len(data)], np.int32)
  sizes = np.asarray(multihost_utils.process_allgather(size)).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:len(data)] = np.frombuffer(data, np.uint8)
  rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
  return [row[:n].tobytes() for row, n in zip(rows, sizes)]


def gather_objects(obj: Any) -> list[Any]:
  """Every process's (picklable) ``obj``, in process order, on every process."""
  if jax.process_count() == 1:
    return [obj]
  return [pickle.loads(b) for b in allgather_bytes(pickle.dumps(obj))]


def agree(what: str, fingerprint: Mapping[str, Any]) -> None:
  """Raises the same one-line ``DistributedError`` on every process when
  their ``fingerprint``s differ (``what``: e.g. 'different data')."""
  if jax.process_count() == 1:
    return
  mine = flatten(fingerprint)
  everyone = [json.loads(b) for b in allgather_bytes(json.dumps(mine, sort_keys=True).encode())]
  problem = first_difference(what, everyone)
  if problem:
    raise DistributedError(problem)
