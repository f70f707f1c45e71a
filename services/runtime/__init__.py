"""The runtime every Cité+ service shares: configuration, Avro contracts, Kafka
adapters, the exactly-once processing loop, dead letters, metrics and logs."""
