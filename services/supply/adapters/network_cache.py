"""The one in-memory SupplyNetwork of a service process, kept in step with the database.

Building the network from a million rows takes seconds, so a process builds it once (at the first
analytics query) and then applies its own committed changes to it incrementally. Several replicas
share one database: every transaction that changes network data also bumps the one-row counter
`supply_network_version` (NetworkRepository.bump_version). Each analytics query reads that counter
(one primary-key read); when it is not the version this process's network reflects, another
replica (or a change this process could not apply in order) got there first, and the network is
rebuilt from the database before the query runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from services.shared.db import read_only
from services.supply.adapters.repository import NetworkRepository
from services.supply.domain.network import SupplyNetwork
from services.supply.domain.records import FacilityOutage

log = logging.getLogger(__name__)

Apply = Callable[[SupplyNetwork], None]


class NetworkCache:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # networkx graphs are not thread-safe: updates and queries take turns.
        self._lock = threading.Lock()
        self._network: SupplyNetwork | None = None
        self._version = -1

    @contextmanager
    def network(self) -> Iterator[SupplyNetwork]:
        """The current network, rebuilt first when the database holds a newer version; held
        exclusively for the duration of the `with` block."""
        with self._lock:
            with read_only(self._engine) as conn:
                repo = NetworkRepository(conn)
                version = repo.version()
                if self._network is None or version != self._version:
                    self._network = self._load(repo)
                    self._version = version
            yield self._network

    def _load(self, repo: NetworkRepository) -> SupplyNetwork:
        network = SupplyNetwork.build(*repo.load_records())
        for disruption in repo.active_disruptions():
            network.upsert_outage(
                FacilityOutage(
                    disruption.facility_id,
                    disruption.expected_duration_days,
                    disruption.capacity_factor,
                )
            )
        return network

    def committed(self, version: int, apply: Apply | None) -> None:
        """Applies a change committed as `version` when the network is exactly one version
        behind; otherwise (or when `apply` is None) the next query rebuilds it."""
        with self._lock:
            if self._network is None or apply is None or self._version != version - 1:
                return
            try:
                apply(self._network)
            except Exception:
                # The change is committed; a change the incremental path cannot take only
                # costs a rebuild at the next query.
                log.warning(
                    "network update of version %d failed; rebuilding", version, exc_info=True
                )
                self._network = None
                return
            self._version = version
