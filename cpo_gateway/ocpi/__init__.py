"""OCPI 2.2.1, the CPO role: a second roaming adapter beside oioi/ (transport, versions,
credentials and the functional modules). Never names OCPP or OIOI."""
