"""The parts of compressai that hific uses, imported without the rest.

hific codes with compressai's entropy models (``compressai.entropy_models``),
its rANS coder (``compressai.ans``) and ``compressai.ops``. A plain
``import compressai`` runs its package ``__init__``, which also imports every
other subpackage: ``datasets`` and ``registry`` bring in torch_geometric
(and with it torch._dynamo, sympy, pandas), torchvision's transforms, and
more; about 4.6 s on a 2-core CPU, twice ``import torch``, and none of it is
needed to code a file. Every hific module imports compressai through this one.

How
---
If compressai is already imported, it is used as it is. Otherwise:

1. Each subpackage that ``compressai/__init__.py`` imports and hific does not
   use (:data:`DEFERRED`) gets a module object made from its real spec, not
   executed, and placed in ``sys.modules``. compressai's ``__init__`` then
   runs unchanged: its ``from compressai import (datasets, ...)`` binds those
   objects, and everything it defines itself (``get_entropy_coder``, ...) is
   real.
2. Right after, the unexecuted objects leave ``sys.modules`` (their code has
   not run, so they are not imported) and a finder at the front of
   ``sys.meta_path`` holds them.
3. The first use of any of them, by hific or by the host program (an
   attribute such as ``compressai.zoo.x``, ``import compressai.models``, or an
   import of any module below one), imports all of them, in compressai's
   order, through the ordinary import system (module locks,
   ``sys.modules``, clean-up on failure), into the same module objects. The
   finder then removes itself. From then on the process is in the state a
   plain ``import compressai`` leaves it in: the same modules, each executed
   once, so every class exists once.
4. ``compressai.entropy_models`` imports ``scipy.stats`` (0.9 s) for one
   quantile in ``GaussianConditional.update``. While compressai is imported,
   ``sys.modules["scipy.stats"]`` holds a placeholder, removed afterwards;
   the one use, ``scipy.stats.norm``, reaches the real module through SciPy's
   own lazy submodule loading (``scipy.__getattr__``).

Why it is safe: no compressai code is copied or patched, and its files run
as they are; the placeholders (steps 1 and 4) exist only during step 1, under
the import system's module locks and marked as initialising, so another
thread importing one of those names waits for the real thing instead of
seeing a placeholder. A later ``import compressai`` in the same process
gets the complete package. One difference remains visible until first use:
the deferred subpackages are attributes of ``compressai`` but not yet in
``sys.modules``, and ``vars()`` of one shows an empty module.
``HIFIC_PLAIN_COMPRESSAI=1`` turns all of this off (a plain import).

:class:`LeanCompressionModel` is the model base class: an ``nn.Module`` whose
``update``, ``aux_loss`` and ``load_state_dict`` are compressai's
``CompressionModel`` methods, fetched on first call (defining a subclass of
``CompressionModel`` itself would import ``compressai.models`` and with it
the whole package). Inference never calls them; training and export do.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence

from torch import Tensor, nn

# compressai/__init__.py's imports that hific never uses to code, in its order.
DEFERRED = ("datasets", "latent_codecs", "layers", "losses", "models", "optimizers", "registry", "transforms",
            "typing", "zoo")
PLAIN_ENV = "HIFIC_PLAIN_COMPRESSAI"

# torch 2.14 deprecates torch.jit.script, which torch_geometric (imported by
# compressai's registry) calls at import time; hific silences it only around
# the imports it makes itself.
_JIT_WARNING = r"`torch\.jit\.script` is deprecated"


class _DeferredModule(types.ModuleType):
    """A compressai subpackage whose code has not run; touching what it lacks runs it."""

    def __getattr__(self, name: str) -> Any:
        importlib.import_module(self.__name__)  # through the finder: loads this one, then the rest
        if isinstance(self, _DeferredModule):
            raise AttributeError(f"module {self.__name__!r} is still being imported")
        return getattr(self, name)

    def __dir__(self) -> List[str]:
        importlib.import_module(self.__name__)
        return dir(self)


class _DeferredFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the deferred subpackages from ``sys.meta_path`` until they are all imported."""

    def __init__(self, modules: Dict[str, types.ModuleType], specs: Dict[str, importlib.machinery.ModuleSpec]):
        self._pending = dict(modules)  # insertion order = compressai's import order
        self._specs = specs
        self._lock = threading.Lock()
        self._local = threading.local()

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in self._pending:
            return None
        real = self._specs[fullname]
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=real.origin, is_package=True)
        spec.submodule_search_locations = real.submodule_search_locations
        spec.has_location = real.has_location
        spec.cached = real.cached
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        with self._lock:
            module = self._pending.pop(spec.name)
            if not self._pending:
                with contextlib.suppress(ValueError):
                    sys.meta_path.remove(self)
        module.__class__ = types.ModuleType
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        real = self._specs[module.__name__]
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            real.loader.exec_module(module)
        finally:
            self._local.depth = depth
            module.__spec__ = real  # the module's own spec from here on, as after a plain import
        if depth == 0:
            self.complete()

    def complete(self) -> None:
        """Import every subpackage still deferred, in compressai's order."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                name = next(iter(self._pending))
            importlib.import_module(name)


def _module_locks(names: Sequence[str]) -> contextlib.ExitStack:
    """Hold the import system's per-module locks of ``names`` (none on a Python without them)."""
    stack = contextlib.ExitStack()
    manager = getattr(importlib.import_module("importlib._bootstrap"), "_ModuleLockManager", None)
    if manager is not None:
        for name in names:
            stack.enter_context(manager(name))
    return stack


def _scipy_stats_placeholder() -> Optional[types.ModuleType]:
    """A stand-in for ``scipy.stats`` if SciPy can load the real one lazily later, else None."""
    if "scipy.stats" in sys.modules:
        return None
    try:
        import scipy
    except ImportError:
        return None
    if "stats" not in getattr(scipy, "submodules", ()) or "__getattr__" not in vars(scipy):
        return None  # an old SciPy without lazy submodules: import it for real
    module = types.ModuleType("scipy.stats")
    module.__spec__ = importlib.machinery.ModuleSpec("scipy.stats", None)
    return module


@contextlib.contextmanager
def _placeholders(modules: Dict[str, types.ModuleType]) -> Iterator[None]:
    """Put ``modules`` in ``sys.modules`` for the duration, marked as initialising, then take them out."""
    for module in modules.values():
        module.__spec__._initializing = True
    try:
        with _module_locks(list(modules)):
            sys.modules.update(modules)
            try:
                yield
            finally:
                for name, module in modules.items():
                    if sys.modules.get(name) is module:
                        del sys.modules[name]
    finally:
        for module in modules.values():
            module.__spec__._initializing = False


def _import_lean() -> types.ModuleType:
    """Import compressai with :data:`DEFERRED` deferred (see the module docstring)."""
    spec = importlib.util.find_spec("compressai")
    if spec is None or spec.submodule_search_locations is None:
        return importlib.import_module("compressai")  # raises the ordinary ImportError
    deferred: Dict[str, types.ModuleType] = {}
    specs: Dict[str, importlib.machinery.ModuleSpec] = {}
    for short in DEFERRED:
        name = f"compressai.{short}"
        sub = importlib.machinery.PathFinder.find_spec(name, spec.submodule_search_locations)
        if sub is None or sub.loader is None:
            continue
        module = importlib.util.module_from_spec(sub)
        module.__class__ = _DeferredModule
        deferred[name], specs[name] = module, sub
    held = dict(deferred)
    stats = _scipy_stats_placeholder()
    if stats is not None:
        held["scipy.stats"] = stats
    with _module_locks(["compressai"]), _placeholders(held):
        package = importlib.import_module("compressai")
        # Before the placeholders go: a thread waiting on one of them must find the finder.
        sys.meta_path.insert(0, _DeferredFinder(deferred, specs))
    return package


def _import() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
        if "compressai" not in sys.modules and os.environ.get(PLAIN_ENV, "") in ("", "0"):
            _import_lean()
        importlib.import_module("compressai.entropy_models")


_import()

from compressai.ans import BufferedRansEncoder, RansDecoder, RansEncoder  # noqa: E402
from compressai.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402
from compressai.ops import quantize_ste  # noqa: E402


def _compression_model() -> type:
    """compressai's ``CompressionModel`` (the first call imports the deferred subpackages)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
        from compressai.models import CompressionModel
    return CompressionModel


class LeanCompressionModel(nn.Module):
    """An ``nn.Module`` with compressai's ``CompressionModel`` methods, looked up when called.

    ``update`` (compute the CDF tables), ``aux_loss`` (the entropy
    bottleneck's quantile loss) and ``load_state_dict`` (which resizes the
    CDF buffers first) run compressai's own code. ``isinstance(m,
    compressai.models.CompressionModel)`` is False.
    """

    def update(self, scale_table: Optional[Tensor] = None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Recompute the entropy models' CDF tables (``CompressionModel.update``)."""
        return _compression_model().update(self, scale_table, force, update_quantiles)

    def aux_loss(self) -> Tensor:
        """The entropy bottlenecks' auxiliary loss (``CompressionModel.aux_loss``)."""
        return _compression_model().aux_loss(self)

    def load_state_dict(self, state_dict: Dict[str, Tensor], strict: bool = True) -> Any:  # type: ignore[override]
        """Load weights, resizing the CDF buffers first (``CompressionModel.load_state_dict``)."""
        return _compression_model().load_state_dict(self, state_dict, strict=strict)


__all__ = ["BufferedRansEncoder", "EntropyBottleneck", "GaussianConditional", "LeanCompressionModel", "RansDecoder",
           "RansEncoder", "quantize_ste"]
