"""The sandbox EMP (`sandbox.SandboxEmp`): a real OIOI v4 peer with a ledger of what it was
sent, injectable faults, and a client for the calls an EMP makes to the gateway."""
