"""initlab: a lab for how weight initialization and activation functions shape learning.

``from initlab import api`` (or ``initlab.load``, ``initlab.compare``) is the Python and
notebook API (:mod:`initlab.api`); ``initlab.run`` is the module of one run, so training
from Python is ``api.run(...)``. Nothing heavy is imported until one is used.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("api", "load", "compare"):
        import initlab.api as api

        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'initlab' has no attribute {name!r}")
