"""What the backends on this host's kernel share: the plumbing under ``local`` and ``gvisor``.

cgroup v1 groups and their pool, pooled network namespaces, the compiled root-side launcher
(``launcher.c``), the seccomp policy and its BPF, the child-process runner, the per-run network
wiring and the in-sandbox forwarder, library sets as built directories, OCI bundles and runsc, the
bubblewrap stage and command line, and the preflight probes. Nothing here is a backend, and nothing
outside :mod:`sandbox.backends` (and the library-set builder's CLI) imports it.
"""
