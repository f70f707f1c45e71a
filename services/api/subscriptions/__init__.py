"""NGSI-LD subscriptions of the common API: their definitions and delivery state kept
in Kafka (model, store), the routes that manage them and the check of their targets."""
