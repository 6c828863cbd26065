"""A sandbox OCPI 2.2.1 eMSP (a real aiohttp peer): registration both ways, receivers."""

from __future__ import annotations

from cpo_gateway.sim.ocpi_emsp.sandbox import Fault, Received, Registration, SandboxEmsp

__all__ = ["Fault", "Received", "Registration", "SandboxEmsp"]
