"""User-facing errors: one line saying which file or field, and what was expected.

Launchers print ``error: <message>`` for these and exit non-zero without a
traceback; anything else is a bug and keeps its traceback.
"""


class PriojaxError(Exception):
  """Base class of errors caused by input (configs, data, workdirs), not bugs."""


class ConfigError(PriojaxError):
  """A config field has a wrong type, range or value."""


class DataError(PriojaxError):
  """A dataset, tile id or file does not hold what was expected."""


class SelectionError(PriojaxError):
  """Pool statistics or a selection request cannot give a valid selection."""


class TrainingError(PriojaxError):
  """Training diverged (non-finite loss or gradients)."""


class WorkdirError(PriojaxError):
  """The workdir cannot be used (missing parent, foreign contents)."""
