"""Priority formulas: pure functions of pool statistics, registered by name.

Importing this package registers the built-in formulas.
"""

from priojax.priority import formulas as _formulas  # noqa: F401  (registers)
from priojax.priority.registry import Formula, SelectionContext, get, names, register

__all__ = ['Formula', 'SelectionContext', 'get', 'names', 'register']
