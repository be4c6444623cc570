"""What every launcher shares: quiet third-party logs, and user errors as one
line (``error: ...``, exit status 2) instead of a traceback."""

from __future__ import annotations

import logging as std_logging
import sys
from typing import Callable

from absl import logging

from priojax.errors import PriojaxError


class _OwnInfoOnly(std_logging.Filter):
  """Orbax, TFDS and JAX log through absl too; their INFO lines would bury
  the per-round progress. Keep our INFO and everyone's warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    path = record.pathname.replace('\\', '/')
    return '/priojax/' in path or '/experiments/' in path


def quiet_third_party() -> None:
  import tensorflow_datasets as tfds  # noqa: PLC0415  (only launchers want this)

  tfds.disable_progress_bar()
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_OwnInfoOnly())


def main_with_clean_errors(fn: Callable[[], object]) -> None:
  try:
    fn()
  except PriojaxError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
