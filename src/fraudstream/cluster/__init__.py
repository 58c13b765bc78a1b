"""Flink clusters beside the embedded mini-cluster: the local standalone cluster `fraudstream cluster start` runs."""
