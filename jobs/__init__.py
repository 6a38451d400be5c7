"""The pipeline's stages (one module each) and their shared core (jobs.core)."""

import os

# implicit parallelises itself; BLAS threads on top would oversubscribe the cores. This must be
# set before numpy loads, and every stage imports this package first.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
