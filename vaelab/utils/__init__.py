"""Plumbing with no mathematics in it: ``messages`` (errors and notices for Python and command-line
users), ``devices`` (``device="auto"``), ``progress`` (progress bars). It imports nothing from vaelab."""
