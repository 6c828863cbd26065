"""Benchmarks and soaks (`scripts/bench`, `scripts/soak`): the load generator and its light
chargers, the servers under test (the gateway and the baseline central system), the scenarios
and their figures. Never imported by the product."""
