"""Messages per reading on each topic of a node, over one load of ``bench/pipeline.py``.

The broker's work, and much of each stage's, goes with messages rather than readings:
a state changelog that wrote one record per entity made every single reading cost
the broker two more messages. Counting the offsets each topic used during a load
says where messages are spent, and checks a change that should cut them.

Offsets count every record, and the transaction markers too (one per partition a
transaction wrote to): what the broker stored and served, not only the data.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from testkit.local_node import LocalNode


def topic_offsets(node: LocalNode) -> dict[str, int]:
    """The offsets each topic of ``node`` has used so far (its partitions' end
    offsets, summed: compaction and retention move the start, not the end); topics
    that used none are left out."""
    from services.runtime.config import load_node_config
    from services.runtime.kafka import consumer_settings

    config = load_node_config(env=node.env)
    consumer = Consumer(consumer_settings(config, group_id=f"bench.topics.{uuid.uuid4().hex}"))
    try:
        used: dict[str, int] = {}
        for name, topic in consumer.list_topics(timeout=30).topics.items():
            total = 0
            for partition in topic.partitions:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(name, partition), timeout=30
                )
                total += max(0, high)
            if total:
                used[name] = total
        return used
    finally:
        consumer.close()


def per_reading_lines(before: dict[str, int], after: dict[str, int], readings: int) -> list[str]:
    """One line per topic that used offsets between ``before`` and ``after``, most
    first: offsets and offsets per reading; then the total."""
    used = {t: after[t] - before.get(t, 0) for t in after if after[t] > before.get(t, 0)}
    lines = [
        f"    {topic:<34} {count:>9,} offsets  {count / readings:7.3f} per reading"
        for topic, count in sorted(used.items(), key=lambda item: -item[1])
    ]
    total = sum(used.values())
    lines.append(f"    {'all topics':<34} {total:>9,} offsets  {total / readings:7.3f} per reading")
    return lines
