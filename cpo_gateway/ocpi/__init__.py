"""OCPI 2.2.1, the CPO role: a second EMP adapter beside oioi/."""
