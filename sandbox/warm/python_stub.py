"""A warm sandbox's Python: started and preloaded ahead of time, it becomes the run's program.

Runs *inside* the sandbox, as the sandbox user, behind the seccomp filter and ``no_new_privs``,
before any code of the run; it imports nothing of ours (the protocol is
:mod:`sandbox.warm.protocol`). Started as ``python3 -s -B python_stub.py STATUS_FD MODULE...``
(``STATUS_FD``: where to report the exit status, or ``-``) with the
environment a cold run of the same library set starts with, it imports the modules, says it is
ready, waits for the run on stdin, then makes the interpreter look as a cold ``python3 -s -B
entry args`` would to the program: a fresh ``__main__`` module with ``__file__``, ``sys.argv``,
``sys.orig_argv``, ``sys.path[0]``, the run's environment (``os.environ`` and the C environment),
cwd the scratch dir, and a traceback without the stub's frames (the same text a cold run prints, so
the repair loop reads the same file names and line numbers). It ends as a cold interpreter would,
but without tearing down the preloaded modules (:func:`_exit`). A warm key's fork server
(:mod:`sandbox.warm.zygote`) imports this module and uses :func:`preload` and :func:`run` the same way.
"""

import os
import sys

_READY = b"\0agentic-warm-ready"
_SETUP = "agentic-sandbox: setup failed: "
_SETUP_EXIT = 125
_CHUNK = 1 << 20
_STUB = sys._getframe().f_code.co_filename  # this file's frames (run from source or compiled)
OWN_FILES = {_STUB}  # files whose frames a traceback leaves out (the zygote adds its own)


def _fail(what: str) -> None:
    os.write(2, (_SETUP + what + "\n").encode())
    os._exit(_SETUP_EXIT)


def _read(size: int) -> bytes:
    parts = []
    while size:
        chunk = os.read(0, min(size, _CHUNK))
        if not chunk:
            _fail("the run's request ended early")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _read_line() -> bytes:
    line = b""
    while not line.endswith(b"\n"):  # byte by byte: never read past the header (the rest is stdin)
        chunk = os.read(0, 1)
        if not chunk:
            _fail("the run's request ended early")
        line += chunk
    return line


def _write_file(path: str, size: int) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        while size:
            view = memoryview(_read(min(size, _CHUNK)))
            size -= len(view)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _set_limits(cpu_seconds: str, nproc: str, keep: set[str]) -> None:
    if not cpu_seconds and not nproc:
        return
    import resource

    if cpu_seconds:  # CPU time counts from hand-over: what the start and preload used is added
        used = sum(os.times()[:2])
        value = int(-(-(used + float(cpu_seconds)) // 1))
        resource.setrlimit(resource.RLIMIT_CPU, (value, value))
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    if "resource" not in keep:
        del sys.modules["resource"]


def _report(exc: BaseException) -> int:
    """Print an uncaught exception as the interpreter would, without this stub's frames; the exit code."""
    if isinstance(exc, SystemExit):  # as the interpreter ends on SystemExit
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        sys.stderr.write(f"{code}\n")
        return 1
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in OWN_FILES:
        tb = tb.tb_next
    exc.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    sys.excepthook(type(exc), exc, tb)
    # An uncaught KeyboardInterrupt ends a cold interpreter by SIGINT, reported as 128 + 2.
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def _flush() -> bool:
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # a closed stdout, or no reader (EPIPE): the interpreter exits with 120
            ok = False
    return ok


def _exit(code: int, main: object, status_fd: int) -> None:
    """End as a cold interpreter would, without tearing down the modules the start imported.

    Why: tearing down the preloaded modules costs a few ms per run a cold run of a small program
    would not pay. What a program can tell apart is kept, in the interpreter's order: non-daemon
    threads joined, ``atexit`` handlers, the program's own objects released (``__del__``, files
    flushed by their close) and their cycles collected (the preload was frozen out of the
    collector's sight), the standard streams flushed, and the exit code (120 when stdout cannot be
    flushed, as the interpreter does).
    """
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    ok = _flush()
    vars(main).clear()
    import gc

    gc.collect()
    ok = _flush() and ok
    code = code if ok or code else 120
    if status_fd >= 0:  # the host learns the end now, not after the sandbox's namespaces are gone
        try:
            os.write(status_fd, b"%d\n" % (code & 0xFF))
        except OSError:  # the program closed it
            pass
    os._exit(code)


def preload(names: list[str]) -> tuple[set[str], list[str]]:
    """Import ``names``; the modules to keep for the program, and the top-level names the preload added."""
    started = set(sys.modules)
    for name in names:
        __import__(name)
    import gc

    keep = set(sys.modules)
    builtin = set(sys.builtin_module_names)  # found before any file: a run's file cannot shadow them
    added = sorted({name.partition(".")[0] for name in keep - started} - builtin)
    gc.freeze()  # what the start made lives until the end: the collector need not look at it again
    return keep, added


def _serve() -> None:
    status_fd = -1 if sys.argv[1] == "-" else int(sys.argv[1])
    if status_fd >= 0:
        os.set_inheritable(status_fd, False)  # the program's children do not get it
    names = sys.argv[2:]
    keep, added = preload(names)
    os.write(1, _READY + b" " + " ".join(added).encode() + b"\n")
    run(status_fd, 2 + len(names), keep)


def run(status_fd: int, own_args: int, keep: set[str]) -> None:
    """Read the run from stdin, become its program, and exit with its status (never returns).

    ``own_args``: how many entries at the end of ``sys.orig_argv`` are ours (script and arguments),
    replaced by the program's. ``keep``: the modules a program may find imported.
    """
    fields = [os.fsdecode(f) for f in _read(int(_read_line())).split(b"\0")]
    if fields[0] != "1":
        _fail(f"unknown request version {fields[0]!r}")
    at = 2 + int(fields[1])
    argv = fields[2:at]
    count = int(fields[at])
    env = fields[at + 1 : at + 1 + max(count, 0)]
    at += 1 + max(count, 0)
    cpu_seconds, nproc = fields[at], fields[at + 1]
    files = fields[at + 3 : at + 3 + 2 * int(fields[at + 2])]
    try:
        for index in range(0, len(files), 2):
            _write_file(files[index], int(files[index + 1]))
    except OSError as exc:
        _fail(f"writing the run's files: {exc}")
    _set_limits(cpu_seconds, nproc, keep)
    if count >= 0:
        pwd = os.environ.get("PWD")  # set by the sandbox's launcher (bwrap), as for a cold run
        os.environ.clear()  # unsetenv / putenv: the C environment (and children) get it too
        if pwd is not None:
            os.environ["PWD"] = pwd
        os.environ.update(item.partition("=")[::2] for item in env)

    import builtins

    path = os.path.abspath(argv[0])
    main = type(sys)("__main__")
    main.__file__ = path
    main.__cached__ = None  # type: ignore[attr-defined]
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    main.__loader__ = type(sys.modules["__main__"].__loader__)("__main__", path)  # type: ignore[misc,call-arg]
    main.__annotations__ = {}
    sys.argv = argv
    sys.orig_argv = [*sys.orig_argv[:-own_args], *argv]  # [python, -s, -B] + the program's
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    sys.modules["__main__"] = main
    # The program runs below our frames and the ``exec`` call: it gets the cold run's recursion
    # depth back (``sys.getrecursionlimit()`` shows that many more than a cold interpreter's).
    depth, frame = 1, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back  # type: ignore[assignment]
    sys.setrecursionlimit(sys.getrecursionlimit() + depth)
    status = 0
    try:
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except BaseException as exc:
        status = _report(exc)
    _exit(status, main, status_fd)


if __name__ == "__main__":
    _serve()
