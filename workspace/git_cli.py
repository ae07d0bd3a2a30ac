"""Run ``git`` in a closed environment: no user or system config, no prompts, one protocol.

Why closed: the server pushes on behalf of tenants. Nothing from the server's own environment
(``~/.gitconfig``, credential helpers, ``GIT_*`` variables, proxies) may change where git connects
or what it sends, and git may speak only the protocol of the remote the operator configured
(``GIT_ALLOW_PROTOCOL``). Secrets (the remote's token) travel as config in the environment
(``GIT_CONFIG_KEY_n``), never on a command line that ``ps`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from workspace.errors import GitTimeoutError, GitUnavailableError

__all__ = ["GitResult", "GitRunner"]

logger = logging.getLogger(__name__)

_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class GitResult:
    """What one git command left: its exit code and output (bytes, as git wrote them)."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        """True when git exited 0."""
        return self.returncode == 0

    def error_text(self, limit: int = 2000) -> str:
        """git's stderr as text, cut to its last ``limit`` characters (for the server log)."""
        return self.stderr.decode("utf-8", "replace").strip()[-limit:]


class GitRunner:
    """Runs git commands against one repository with one environment and one timeout each."""

    def __init__(
        self,
        binary: str,
        *,
        git_dir: Path,
        home: Path,
        allow_protocol: str,
        config: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> None:
        self.binary = binary
        self.git_dir = git_dir
        self.timeout_s = timeout_s
        env = {
            "PATH": _PATH,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": allow_protocol,
            "GIT_DIR": str(git_dir),
        }
        items = {"transfer.fsckObjects": "true", **(config or {})}
        env["GIT_CONFIG_COUNT"] = str(len(items))
        for i, (key, value) in enumerate(items.items()):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        self._env = env

    async def run(self, *args: str, stdin: Iterable[bytes] | None = None) -> GitResult:
        """Run ``git ARGS`` (stdin fed from ``stdin`` chunk by chunk), killed after the timeout.

        Raises:
            GitUnavailableError: git is not installed or cannot be started.
            GitTimeoutError: the command outlived the timeout (it was killed).
        """
        try:
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                cwd=self.git_dir.parent,
            )
        except OSError as exc:
            raise GitUnavailableError(
                f"cannot run {self.binary!r}: {exc.strerror or exc}; fix: apt-get install git"
            ) from exc
        try:
            out, err = await asyncio.wait_for(self._talk(proc, stdin), self.timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise GitTimeoutError(
                f"git {args[0]} did not finish within {self.timeout_s:g} s and was stopped"
            ) from None
        except BaseException:  # cancelled: leave no git behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        result = GitResult(await proc.wait(), out, err)
        if not result.ok:
            logger.debug("git %s exited %d: %s", args[0], result.returncode, result.error_text())
        return result

    @staticmethod
    async def _talk(proc: asyncio.subprocess.Process, stdin: Iterable[bytes] | None) -> tuple[bytes, bytes]:
        assert proc.stdout is not None and proc.stderr is not None

        async def feed() -> None:
            if stdin is None or proc.stdin is None:
                return
            try:
                for chunk in stdin:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # git stopped reading; its exit code and stderr say why
            finally:
                proc.stdin.close()

        out, err, _ = await asyncio.gather(proc.stdout.read(), proc.stderr.read(), feed())
        return out, err
