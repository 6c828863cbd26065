"""Simulated peers of the gateway, real on the network: chargers (`charger/`) and a sandbox
EMP (`emp/`), plus the demo that plays them against a gateway. Nothing in the product imports
this package except the `demo` command."""
