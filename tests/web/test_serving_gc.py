"""The gunicorn worker takes the application's own objects out of the cyclic collector."""

from __future__ import annotations

import gc

import pytest
from gunicorn.workers.gthread import ThreadWorker

from portal.serving import PortalWorker


def test_the_worker_freezes_the_loaded_application_out_of_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given gunicorn's own loading of the application (here: objects that live as long as it)
    loaded: list[object] = []

    def load_wsgi(worker: PortalWorker) -> None:
        worker.wsgi = lambda environ, start_response: []
        loaded.append([{"route": n} for n in range(1000)])

    monkeypatch.setattr(ThreadWorker, "load_wsgi", load_wsgi)
    gc.unfreeze()
    try:
        # When the portal's worker loads it
        PortalWorker.load_wsgi(object.__new__(PortalWorker))

        # Then the application was loaded, and every object alive then sits in the permanent
        # generation, which full collections (triggered again and again by the allocations of
        # a large upload or download) no longer traverse
        assert loaded
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
