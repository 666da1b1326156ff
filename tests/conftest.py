"""Settings every test shares, applied before torch or Ray is imported."""

import os

# On a busy 2-core machine OpenMP threads that spin while waiting slow torch down tenfold;
# passive waiting costs nothing measurable when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
