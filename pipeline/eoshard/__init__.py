"""eoshard: Sentinel-1/2 STAC archives into deep-learning shards.

```python
import eoshard
ds = eoshard.open_dataset("out/demo")  # a built dataset, as a lazy xarray Dataset
```

``eoshard`` is one package made of four portions (catalog, pipeline, flows from the ``eoshard`` distribution,
training from ``eoshard-training``). This file, shipped by the ``eoshard`` distribution only, makes it a
pkgutil-style namespace: ``extend_path`` gathers every ``eoshard`` folder on ``sys.path`` into ``__path__``.
Nothing is imported here: ``open_dataset`` is loaded on first use, so ``import eoshard.training`` loads no geo
stack. Design record 0014 says why, and why ``make contracts`` imports ``eoshard`` before import-linter scans.
"""

from typing import TYPE_CHECKING, Any

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

if TYPE_CHECKING:
    from eoshard.pipeline import open_dataset

__all__ = ["open_dataset"]


def __getattr__(name: str) -> Any:
    if name == "open_dataset":
        from eoshard.pipeline import open_dataset

        return open_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the lazy ``open_dataset``, not this file's typing imports (what Jupyter completes,
    and Python suggests from for a misspelt name)."""
    return sorted(({*globals()} - {"Any", "TYPE_CHECKING"}) | set(__all__))
