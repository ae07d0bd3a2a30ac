"""A run's life: ``manager`` (what the routes call), ``worker`` (claims, leases, cancels, the registry
of the runs this process executes), ``executor`` (drives the graph and records the outcome)."""
