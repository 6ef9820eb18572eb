"""Training: ``training`` (``fit``, the loop a student reads, and its ``History``), ``runs`` (what
surrounds the loop: resuming and the comparison of runs, RNG state, divergence guards, locking) and
``checkpoint`` (files written atomically, read back with a clear error, models rebuilt from them).
"""
