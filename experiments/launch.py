"""What every launcher shares: quiet third-party logs, and user errors as one
line (``error: ...``, exit status 2) instead of a traceback."""

from __future__ import annotations

import importlib.util
import logging as std_logging
import os
import sys
import warnings
from typing import Callable, Sequence

from absl import flags, logging

from priojax import distributed
from priojax.errors import PriojaxError

_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 0, 'On CPU, split the host into this many XLA devices for data parallelism '
    '(0: one per core; batches are rounded up to a multiple of the device count).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', '', 'Multi-process runs: host:port of process 0, the same on every process.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 1, 'Multi-process runs: how many processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', 0, 'Multi-process runs: this process, 0 to num_processes-1.')
_DISTRIBUTED_AUTO = flags.DEFINE_bool(
    'distributed_auto', False, 'Multi-process runs: let jax.distributed.initialize() read the '
    'cluster (Cloud TPU, SLURM) instead of --coordinator_address/--num_processes/--process_id.')
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', 120, 'Multi-process runs: seconds to wait for every process at start-up.')
_DISTRIBUTED_HEARTBEAT = flags.DEFINE_integer(
    'distributed_heartbeat', 20, 'Multi-process runs: seconds without news from a process after which '
    'the others stop (a killed process ends the run instead of hanging it).')


# After a failed orbax save (a full disk), tensorstore's callbacks still fire
# into the save's event loop, already closed, its unawaited writes are
# reported as never retrieved, and it is all printed from background threads
# while the failure itself becomes our one error line: hush only those.


def _quiet_closed_loop(unraisable) -> None:
  exc = unraisable.exc_value
  if isinstance(exc, RuntimeError) and str(exc) == 'Event loop is closed':
    return
  sys.__unraisablehook__(unraisable)


def _orbax_leftover(record: std_logging.LogRecord) -> bool:
  # A failed save's sibling writes (tasks, or the future gathering them)
  # fail too, and asyncio logs each one when it is collected.
  return (record.name == 'asyncio'
          and str(record.msg).startswith(('Task exception was never retrieved',
                                          'Future exception was never retrieved'))
          and 'orbax' in record.getMessage())


def _orbax_thread_error(record: std_logging.LogRecord, path: str) -> bool:
  """An error orbax logs from one of its worker threads (a failed save's
  traceback): the main thread raises the same failure, which we report."""
  return ('/orbax/checkpoint/' in path and record.levelno >= std_logging.ERROR
          and record.threadName != 'MainThread')


class _OwnInfoOnly(std_logging.Filter):
  """Orbax, TFDS and JAX log through absl too; their INFO lines would bury
  the per-round progress. Keep our INFO and everyone's warnings."""

  # Warnings that say nothing to a user: TFDS announcing a builder config it
  # was given, orbax noting that the shared pretrained checkpoint is read-only.
  _NOISE = ('Using custom data configuration', 'Given directory is read only',
            'CheckpointManagerOptions.read_only=True')

  def filter(self, record: std_logging.LogRecord) -> bool:
    path = record.pathname.replace('\\', '/')
    if _orbax_thread_error(record, path) or _orbax_leftover(record):
      return False  # a failed save's traceback from orbax's thread; we report the error itself
    if record.levelno >= std_logging.WARNING:
      return not str(record.msg).startswith(self._NOISE)
    return '/priojax/' in path or '/experiments/' in path


def deterministic_xla_flags(flags_now: str) -> str:
  """``XLA_FLAGS`` with XLA:GPU's deterministic reductions asked for (exact
  resumes on GPUs too, docs/reliability.md; ignored on CPU and TPU), unless
  the user's flags already say either way."""
  if '--xla_gpu_deterministic_ops' in flags_now:
    return flags_now
  return f'{flags_now} --xla_gpu_deterministic_ops=true'.strip()


def setup_runtime() -> None:
  """One XLA device per CPU core, quiet logs, and a persistent XLA
  compilation cache so that a resumed or repeated run does not recompile
  (``JAX_COMPILATION_CACHE_DIR`` overrides)."""
  import jax  # noqa: PLC0415
  import tensorflow_datasets as tfds  # noqa: PLC0415  (only launchers want this)

  from priojax import faults, mesh  # noqa: PLC0415

  os.environ['XLA_FLAGS'] = deterministic_xla_flags(os.environ.get('XLA_FLAGS', ''))
  mesh.use_cpu_devices(_CPU_DEVICES.value)  # before anything starts JAX's backends
  faults.install()  # PRIOJAX_CRASH_AT, for the kill tests
  if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser('~/.cache/priojax/xla'))
  if not os.environ.get('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'):  # the user's (or the tests') own
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  tfds.disable_progress_bar()
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_OwnInfoOnly())
  sys.unraisablehook = _quiet_closed_loop
  warnings.filterwarnings('ignore', message=r"coroutine '.*' was never awaited", category=RuntimeWarning)


def main_with_clean_errors(fn: Callable[[], object]):
  """``fn()``'s result; a PriojaxError is one line and exit status 2."""
  try:
    return fn()
  except PriojaxError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def config_or_exit(holder):
  """The parsed config; a config file that cannot be found is one line."""
  try:
    config = holder.value
    config.keys()  # a placeholder that failed to load raises only when touched
    return config
  except OSError as e:  # ml_collections defers loading errors to first access
    spec = flags.FLAGS['config'].serialize()
    lines = [l.strip() for l in str(e).splitlines() if l.strip().startswith('[Errno')]
    print(f'error: {spec}: cannot load the config file ({lines[-1] if lines else e})', file=sys.stderr)
    sys.exit(2)


def _load_config_file(spec: str):
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_priojax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def _explain_override(argv: Sequence[str]) -> str | None:
  """Names the ``--config.*`` override whose field does not exist."""
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    return None
  try:
    config = _load_config_file(spec)
  except Exception:  # noqa: BLE001  (the file itself is broken: let absl say so)
    return None
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.'):].split('=', 1)[0].split('.')
    node = config
    for depth, name in enumerate(path):
      if not hasattr(node, 'keys') or name not in node.keys():
        known = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else 'none'
        where = '.'.join(path[:depth]) or 'the config'
        return (f'{arg}: config has no field {".".join(path)!r} '
                f'(fields of {where}: {known})')
      node = node[name]
  return None


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's parser, with config-override mistakes as one ``error:`` line.

  ml_collections raises AttributeError/KeyError/TypeError (not a flags
  error) for an unknown field, which absl would show as a traceback.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    message = _explain_override(argv) or f'bad --config override: {e}'
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def run_main(argv: Sequence[str], config_holder, workdir: str, fn: Callable):
  """The body of every launcher's ``main``: ``fn(config, workdir)``, whose
  result it returns."""
  if len(argv) > 1:
    print(f'error: unexpected arguments: {" ".join(argv[1:])}', file=sys.stderr)
    sys.exit(2)
  setup_runtime()
  config = config_or_exit(config_holder)

  def start_and_run():
    spec = distributed.ProcessSpec(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                   _DISTRIBUTED_TIMEOUT.value, _DISTRIBUTED_AUTO.value,
                                   _DISTRIBUTED_HEARTBEAT.value)
    # Before anything is read or written: processes that disagree stop here.
    distributed.initialize(spec, {'workdir': os.path.abspath(workdir), **distributed.flatten(config.to_dict())})
    return fn(config, workdir)

  return main_with_clean_errors(start_and_run)
