"""Which run a warm sandbox can serve (no sandbox needed): keys, environments, shadowed modules, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox.base import Limits, RunRequest
from sandbox.config import WarmSettings
from sandbox.warm.demand import KeyState
from sandbox.warm.keys import env_fits, shadows_preload, template_of, warm_key
from sandbox.warm.protocol import encode_run, parse_ready


def py(**kwargs: object) -> RunRequest:
    files = {"main.py": "print(1)", **dict(kwargs.pop("files", {}))}  # type: ignore[call-overload]
    return RunRequest(files=files, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]


def test_runs_differing_only_in_what_is_set_at_hand_over_share_a_key() -> None:
    base = warm_key(py(), "local")
    assert base is not None and base.label == "python/base/64MB"
    same = py(
        files={"x.py": "y"}, stdin=b"in", args=("a",), env={"K": "v"}, limits=Limits(memory_mb=512, pids=9)
    )
    assert warm_key(same, "local") == base
    assert warm_key(py(limits=Limits(disk_mb=8)), "local") != base  # the scratch size is fixed at start
    assert warm_key(py(library_set="datascience"), "local") != base
    assert warm_key(py(), "gvisor") != base


def test_typescript_keys_hold_entry_args_and_fixed_limits() -> None:
    ts = RunRequest(files={"main.ts": ""}, language="typescript", entry="main.ts", args=("a",))
    key = warm_key(ts, "gvisor", fixed_limits=("pids",))
    assert key is not None and key.entry == "main.ts" and key.args == ("a",) and key.fixed == (("pids", 64),)
    other = RunRequest(files={"app.ts": ""}, language="typescript", entry="app.ts", args=("a",))
    assert warm_key(other, "gvisor", fixed_limits=("pids",)) != key
    assert key.label == "typescript/base/64MB/pids=64/main.ts"


@pytest.mark.parametrize(
    "request_",
    [
        RunRequest(command=("/bin/true",)),
        py(network=True),
        py(pipe_fds=(3,)),
        py(library_set="no-such-set"),
        py(env={"PYTHONPATH": "/x"}),
        py(env={"LD_PRELOAD": "/x.so"}),
        py(env={"TZ": "UTC"}),
        py(env={"K": "v"}, library_set="datascience"),  # its preload reads variables of its own
        RunRequest(files={"main.ts": ""}, language="typescript", entry="main.ts", env={"K": "v"}),
    ],
    ids=["command", "network", "pipes", "unknown-set", "pythonpath", "ld", "tz", "set-env", "ts-env"],
)
def test_runs_only_a_cold_start_can_serve_have_no_key(request_: RunRequest) -> None:
    assert warm_key(request_, "local") is None


def test_env_fits() -> None:
    assert env_fits({}, "typescript", "base") and env_fits({"MY_VAR": "1"}, "python", "base")
    assert not env_fits({"PYTHONHASHSEED": "0"}, "python", "base")


def test_files_shadowing_preloaded_modules() -> None:
    preloaded = ("re", "typing", "collections")
    assert shadows_preload(py(files={"re.py": ""}), preloaded)
    assert shadows_preload(py(files={"collections/__init__.py": ""}), preloaded)
    assert not shadows_preload(py(files={"lib/re.py": ""}), preloaded)  # not beside the entry
    assert not shadows_preload(py(files={"regex.py": "", "data/typing.txt": ""}), preloaded)
    nested = RunRequest(
        files={"app/main.py": "", "app/typing.py": ""}, language="python", entry="app/main.py"
    )
    assert shadows_preload(nested, preloaded) and not shadows_preload(nested, ())


def test_a_template_keeps_only_what_the_key_needs() -> None:
    template = template_of(
        py(files={"big.bin": b"x" * 100}, stdin=b"s", env={"K": "v"}, labels={"tenant": "t"})
    )
    assert (
        template.files == {"main.py": ""}
        and template.stdin == b""
        and not template.env
        and not template.labels
    )


def test_the_run_message_frames_files_exactly() -> None:
    pieces = encode_run(
        argv=["main.py", "a b"], env={"K": "v=w"}, files={"d/x.bin": b"\0\1", "m.py": "é"}, nproc=5
    )
    length, header, *data = pieces
    assert int(length) == len(header)
    assert header.split(b"\0") == [
        b"1",
        b"2",
        b"main.py",
        b"a b",
        b"1",
        b"K=v=w",
        b"",
        b"5",
        b"2",
        b"d/x.bin",
        b"2",
        b"m.py",
        b"2",
    ]
    assert data == [b"\0\1", "é".encode()]
    with pytest.raises(Exception, match="relative"):
        encode_run(argv=["main.py"], env=None, files={"../x": ""})
    assert parse_ready(b"\0agentic-warm-ready typing re") == ("typing", "re") and parse_ready(b"1") is None


def test_warm_settings_refuse_a_bad_prewarm_entry() -> None:
    assert WarmSettings(prewarm=["typescript/base/medium"]).prewarm == ["typescript/base/medium"]
    with pytest.raises(ValidationError, match="language/library_set/tier"):
        WarmSettings(prewarm=["python/base"])
    with pytest.raises(ValidationError, match="language/library_set/tier"):
        WarmSettings(prewarm=["python/base/huge"])


def _state() -> KeyState:
    return KeyState(key="k", label="k", template=py())


def test_a_key_wants_its_peak_of_runs_at_once_plus_those_arriving_while_one_starts() -> None:
    warm = WarmSettings(max_idle_per_key=10, demand_window_s=60, idle_ttl_s=300)
    state = _state()
    assert state.target(0.0, warm) == 0  # never asked for
    for t in (0.0, 0.1, 0.2):  # three runs at once
        state.note_take(t)
    state.inflight = 0  # they ended
    state.note_take(5.0)  # one more, alone
    assert state.target(5.0, warm) == 3  # the burst's peak, not the latest run's one
    state.start_s = 4.0  # 3 arrivals after the first in 5 s: 0.6 a second, 2.4 while a start goes on
    assert state.target(5.0, warm) == 3 + 2
    state.start_s = None
    assert state.target(61.0, warm) == 1  # the burst left the window; the lone run is still in it
    assert state.target(66.0, warm) == 1  # no run in the window, but one within idle_ttl_s
    assert state.target(400.0, warm) == 0 and state.forgotten(400.0, warm) is False  # one in flight
    state.inflight = 0
    assert state.forgotten(400.0, warm)


def test_a_key_wants_at_least_min_idle_and_at_most_max_idle() -> None:
    state = _state()
    state.min_idle = 2
    assert state.target(0.0, WarmSettings(max_idle_per_key=4)) == 2
    for t in range(8):
        state.note_take(float(t) / 100)
    assert state.target(0.1, WarmSettings(max_idle_per_key=4)) == 4
