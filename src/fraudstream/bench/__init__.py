"""Throughput benchmark of the job, reported against ceilings measured on the same machine."""
