"""Read the in-pod runner's framed log (see :mod:`sandbox.kata.runner`) back into output and facts.

The log is untrusted (the program shares the runner's uid and could write frames itself), so the
caps are held here again: nothing past ``output_bytes`` per stream is kept, whatever the frames say.
Lines that are not frames (the runtime's own messages, a runner traceback) are kept apart as
``diagnostics`` for start errors.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import time
from dataclasses import dataclass, field
from typing import Literal

from sandbox.base import OutputChunk
from sandbox.streaming import ChunkSink

__all__ = ["FrameReader", "RunFacts"]

_DIAGNOSTIC_CHARS = 4000


@dataclass
class RunFacts:
    """What the runner reported besides output."""

    started: bool = False
    started_at: float | None = None  # time.monotonic() when the start frame arrived
    timed_out: bool = False
    oom: bool = False
    exit_code: int | None = None
    peak_memory_bytes: int | None = None
    runner_error: str | None = None
    diagnostics: str = ""
    truncated: dict[str, bool] = field(default_factory=lambda: {"stdout": False, "stderr": False})


class FrameReader:
    """Turns log lines into chunks (onto ``sink``) and :class:`RunFacts`; keeps at most ``cap`` bytes."""

    def __init__(self, cap: int | None, sink: ChunkSink | None = None, *, keep: bool = True) -> None:
        self.cap = cap
        self.sink = sink
        self.keep = keep  # False for services: their output only goes to the sink (a bounded ring)
        self.facts = RunFacts()
        self.lines_seen = 0
        self._kept = {"stdout": 0, "stderr": 0}
        self._text: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")}

    def feed(self, line: bytes) -> None:
        """Take one log line (with or without its newline)."""
        self.lines_seen += 1
        line = line.rstrip(b"\r\n")
        if len(line) < 2 or line[:1] != b"@":
            self._diagnostic(line)
            return
        tag, rest = chr(line[1]), line[3:]
        if tag in ("o", "e"):
            try:
                data = base64.b64decode(rest, validate=True)
            except (binascii.Error, ValueError):
                self._diagnostic(line)
                return
            self._output("stdout" if tag == "o" else "stderr", data)
        elif tag in ("O", "E"):
            self.facts.truncated["stdout" if tag == "O" else "stderr"] = True
        elif tag == "s":
            self.facts.started = True
            self.facts.started_at = time.monotonic()
        elif tag == "t":
            self.facts.timed_out = True
        elif tag == "m":
            self.facts.oom = True
        elif tag in ("x", "p"):
            try:
                number = int(rest)
            except ValueError:
                self._diagnostic(line)
                return
            if tag == "x":
                self.facts.exit_code = number
            else:
                self.facts.peak_memory_bytes = number
        elif tag == "!":
            self.facts.runner_error = rest.decode("utf-8", "replace")[:_DIAGNOSTIC_CHARS]
        else:
            self._diagnostic(line)

    def _diagnostic(self, line: bytes) -> None:
        if len(self.facts.diagnostics) < _DIAGNOSTIC_CHARS:
            text = line.decode("utf-8", "replace")
            self.facts.diagnostics = (self.facts.diagnostics + text + "\n")[:_DIAGNOSTIC_CHARS]

    def _output(self, stream: Literal["stdout", "stderr"], data: bytes) -> None:
        if self.cap is not None:
            room = self.cap - self._kept[stream]
            if len(data) > room:
                data = data[: max(0, room)]
                self.facts.truncated[stream] = True
        if not data:
            return
        self._kept[stream] += len(data)
        text = self._decoders[stream].decode(data)
        if text:
            if self.keep:
                self._text[stream].append(text)
            if self.sink is not None:
                self.sink.put_nowait(OutputChunk(stream=stream, data=text))

    def finish(self) -> tuple[str, str]:
        """The whole stdout and stderr (flushing partial UTF-8 sequences)."""
        names: tuple[Literal["stdout", "stderr"], ...] = ("stdout", "stderr")
        for name in names:
            tail = self._decoders[name].decode(b"", final=True)
            if tail:
                self._text[name].append(tail)
                if self.sink is not None:
                    self.sink.put_nowait(OutputChunk(stream=name, data=tail))
        return "".join(self._text["stdout"]), "".join(self._text["stderr"])
