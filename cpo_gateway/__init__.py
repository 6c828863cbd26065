"""cpo-gateway: the daemon between OCPP chargers and OIOI e-mobility providers."""

__version__ = "0.1.0"
