"""The sandbox backends, one module each, side by side: what each does for every method of the protocol.

``bubblewrap`` (registered as ``local``) and ``gvisor`` run on this host's kernel, with the plumbing of
:mod:`sandbox.host`; backends that run elsewhere (Kata pods, Unikraft instances) go beside them.
They are reached by name through :mod:`sandbox.registry`, never imported by callers directly.
"""
