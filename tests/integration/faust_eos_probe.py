"""A faust-streaming worker with ``processing_guarantee="exactly_once"`` and a
``group_by`` repartition, as energy-analytics would have used it.

Run by tests/integration/test_energy_faust_eos.py: every record is written to
partition 1 of the source topic; half of them re-key to partition 0 of the
repartition topic. Usage: python faust_eos_probe.py BOOTSTRAP SOURCE APP_ID
"""

from __future__ import annotations

import sys

import faust
from faust.worker import Worker

bootstrap, source, app_id = sys.argv[1:4]
app = faust.App(
    app_id,
    broker=f"kafka://{bootstrap}",
    processing_guarantee="exactly_once",
    store="memory://",
    web_enabled=False,
    topic_partitions=2,
    key_serializer="raw",
    value_serializer="raw",
)
table = app.Table("counts", default=int, partitions=2, key_type=str, value_type=int)


@app.agent(app.topic(source, key_type=bytes, value_type=bytes))
async def aggregate(stream):
    async for value in stream.group_by(lambda v: v, name="byvalue"):
        table[value.decode()] += 1


if __name__ == "__main__":
    Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
