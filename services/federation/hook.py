"""The federation API beside publish's sink, in publish's process.

With chDB only the publish process may open the warehouse, so the federation server
runs there and answers through publish's warehouse object. Publish does not import
this: services/node/publish_process.py hands it to publish as what runs beside it. Kept free of gRPC
imports: a node without certificates, or with federation turned off, runs publish
as before, and says why the API is off.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from services.policy.federation import load_federation
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.warehouse.port import Warehouse

if TYPE_CHECKING:
    from services.federation.server import FederationServer

log = logging.getLogger(__name__)


def federation_beside_publish(
    node: NodeConfig,
    contracts: Contracts,
    cities: dict[str, CityConfig],
    warehouse: Warehouse,
    registry: CollectorRegistry | None = None,
) -> FederationServer | None:
    """The federation server (not started yet), or None when it is turned off or this
    node has no certificate yet."""
    config = load_federation(node)
    if not config.enabled:
        log.info("federation API off (federation.enabled: false)")
        return None
    missing = config.certificates.missing()
    if missing:
        log.warning(
            "federation API off: no certificate for this node",
            extra={
                "identity": config.identity,
                "missing": [str(p) for p in missing],
                "fix": "citeplus certs (development) or install the federation's certificate",
            },
        )
        return None
    try:
        from services.federation.server import FederationServer
    except ImportError as exc:
        log.error(
            "federation API off: a package is missing (run `make setup`)",
            extra={"missing": exc.name},
        )
        return None
    return FederationServer(node, config, cities, warehouse, contracts, registry=registry)
