"""The pipeline's stages, one module each (`jobs/<stage>.py`), and what they share below them:

- `jobs.infra`: config, lake layout, Spark session, MLflow tracking, S3 storage, alerts, CLI;
- `jobs.feeds`: how a shop's landed files read, the catalog, pseudonymized ids;
- `jobs.recommenders`: the models behind one protocol, their tuning and evaluation;
- `jobs.shop`: the synthetic shop (generator, landing, ground-truth oracle).

`jobs.tools` holds the demo, the local stack and the benchmarks: dev tools, not shipped.
"""

import os

# implicit parallelises itself; BLAS threads on top would oversubscribe the cores. This must be
# set before numpy loads, and every stage imports this package first.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
