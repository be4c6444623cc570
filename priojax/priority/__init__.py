"""Priority formulas: pure functions of pool statistics, registered by name.

Importing this package registers the built-in formulas.
"""

from priojax.priority import budget as _budget  # noqa: F401  (registers)
from priojax.priority import error_mass as _error_mass  # noqa: F401  (registers)
from priojax.priority import formulas as _formulas  # noqa: F401  (registers)
from priojax.priority import learnability as _learnability  # noqa: F401  (registers)
from priojax.priority import oracle_ceiling as _oracle_ceiling  # noqa: F401  (registers)
from priojax.priority.registry import (ACQUISITIONS, DEFAULT_HPARAMS, REFERENCE, Formula, Picks,
                                       SelectionContext, get, names, register, register_picker)

# The strategies priojax ships (a comparison runs them all); formulas that
# users register later are not among them.
BUILTIN = tuple(names())

__all__ = ['ACQUISITIONS', 'BUILTIN', 'DEFAULT_HPARAMS', 'Formula', 'Picks', 'REFERENCE', 'SelectionContext',
           'get', 'names', 'register', 'register_picker']
