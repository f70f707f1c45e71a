"""The node's declared topics: deploy/topics.yaml, partner templates expanded.

Which partners a node writes ``partner.<code>.*`` topics for is policy: the
partners the city files' sharing sections name, and those the federation file
shares energy aggregates with. Every service start-up (and ``citeplus topics
apply``) hands this list to :mod:`services.runtime.provisioning`, which knows
topics, not sharing.
"""

from __future__ import annotations

from services.policy.federation import load_federation
from services.policy.sharing import partners_of, sharing_policies
from services.runtime.cities import load_cities
from services.runtime.config import NodeConfig
from services.runtime.paths import CITIES_DIR
from services.runtime.topics import TopicSpec, load_topics


def node_partners(node: NodeConfig | None = None) -> list[str]:
    """Partners named by the city files' sharing sections and (given the node) by
    its federation file's ``energy_aggregates``."""
    partners = set(partners_of(sharing_policies(load_cities(CITIES_DIR))))
    if node is not None:
        partners.update(load_federation(node).energy_aggregates.partners)
    return sorted(partners)


def declared_topics(node: NodeConfig | None = None) -> list[TopicSpec]:
    """Every topic of deploy/topics.yaml, partner templates expanded for
    :func:`node_partners`."""
    return list(load_topics(partners=node_partners(node)).values())
