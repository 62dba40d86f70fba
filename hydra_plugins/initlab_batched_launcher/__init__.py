"""``hydra/launcher=batched``: a Hydra launcher that trains a sweep's small nets stacked.

Shipped inside initlab like hydra-joblib-launcher: Hydra finds it in the ``hydra_plugins``
namespace (which has no ``__init__.py``). :mod:`.config` holds its settings and their
ConfigStore entries, :mod:`.batched_launcher` the Launcher, :mod:`._compose` the cheap
per-job composition and ``.hydra/`` files, :mod:`._core` grouping, training and interrupts,
:mod:`.sweeper` ``hydra/sweeper=initlab`` (Hydra's basic sweep, public API only).
Hydra imports every module here at start-up, so none imports torch at module level.
"""
