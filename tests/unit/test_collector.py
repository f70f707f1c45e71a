"""Every service process widens the collector's thresholds and freezes what its
start-up built (services/runtime/collector.py, called by run_service)."""

from __future__ import annotations

import gc
import inspect

from services.runtime import collector, service_main


def test_tuning_widens_the_thresholds_and_freezes_start_up() -> None:
    before = gc.get_threshold()
    try:
        collector.tune_garbage_collector()
        assert gc.get_threshold() == (collector.YOUNG, collector.MIDDLE, collector.OLD)
        assert collector.YOUNG > 700 * 10  # far above Python's default
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_every_service_start_tunes_it_once_built() -> None:
    """run_service (every service's start, stages included) calls it after building
    the service: what the build made is frozen with the rest."""
    source = inspect.getsource(service_main.run_service)
    assert source.index("build(") < source.index("tune_garbage_collector()")
