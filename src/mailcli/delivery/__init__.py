"""Delivery: the gateway client, the retry policy and the claim-send-record engine."""
