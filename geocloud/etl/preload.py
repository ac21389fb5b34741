"""What the fork server of the ETL's worker processes imports before it forks them
(``parallel.PRELOAD``): the ETL's modules, once, so that each worker starts at once; then the
objects they made are frozen (``gc.freeze``). The fork server ends when the loader does, and a
process's exit would otherwise free those objects collection by collection (0.2-0.4 s), while the
fork server still holds the loader's stdout: a caller reading the loader's output to its end (a
pipe, the bench) waited for it. Frozen, they are left to the operating system."""

import gc

import geocloud.etl.prepare  # noqa: F401 - what every worker process needs

gc.freeze()
