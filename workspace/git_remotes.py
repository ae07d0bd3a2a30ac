"""The git remotes an operator allows workspace exports to (env ``AGENTIC_EXPORT_*``).

Why remotes are named: a client picks a remote by its name and nothing else. The URL, the branch,
the credentials and the tenants that may use a remote come only from these settings, so no client
can make the server push to a URL or a local path of its choosing. URL and branch are templates
that may use ``{tenant}`` and ``{workspace_id}`` (both server-made, never client text), e.g.
``https://git.example.com/agentic/{workspace_id}.git`` or one branch per workspace on one repo.

Example (``AGENTIC_EXPORT_REMOTES``, JSON)::

    {"gitea": {"url": "https://git.example.com/{tenant}/{workspace_id}.git",
               "token": "...", "tenants": ["alpha", "beta"]}}
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workspace.errors import UnknownRemoteError

__all__ = ["PLACEHOLDERS", "GitExportSettings", "GitRemote", "ResolvedRemote", "valid_branch"]

PLACEHOLDERS = frozenset({"tenant", "workspace_id"})
_SCHEMES = frozenset({"https", "http", "file"})
_REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Sample values a template is checked with: the widest a tenant (server.config.TENANT_PATTERN) and
# a workspace id (32 hex characters) can be.
_SAMPLE = {"tenant": "Tenant_1.a-b", "workspace_id": "0123456789abcdef0123456789abcdef"}


def _template_fields(template: str) -> set[str]:
    """The placeholders a template uses; ValueError for any but plain {tenant} and {workspace_id}."""
    found: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValueError(
                f"template {template!r}: only {{tenant}} and {{workspace_id}} may be used, got {{{name}}}"
            )
        found.add(name)
    return found


def valid_branch(branch: str) -> bool:
    """True when ``refs/heads/<branch>`` passes git's ``check-ref-format`` rules (checked here, no git)."""
    if not branch or branch.startswith(("/", "-")) or branch.endswith(("/", ".", ".lock")):
        return False
    if any(ch in branch for ch in " ~^:?*[\\\x7f") or any(ord(ch) < 0x20 for ch in branch):
        return False
    if ".." in branch or "//" in branch or "@{" in branch or branch == "@":
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in branch.split("/"))


@dataclass(frozen=True, kw_only=True)
class ResolvedRemote:
    """One remote's URL and branch for one workspace."""

    name: str
    url: str
    branch: str
    remote: GitRemote

    @property
    def scheme(self) -> str:
        """``https``, ``http`` or ``file`` (what git may speak to it: ``GIT_ALLOW_PROTOCOL``)."""
        return urlsplit(self.url).scheme


class GitRemote(BaseModel):
    """One remote the operator allows: where, which branch, who may use it, how to log in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="https://, http:// or file:// URL; may use {tenant} and {workspace_id}.")
    branch: str = Field(default="main", description="Branch to push; may use {tenant} and {workspace_id}.")
    tenants: list[str] | None = Field(default=None, description="Tenants that may use it (None: all).")
    username: str = Field(default="agentic", description="User name sent with the token (HTTP Basic).")
    token: SecretStr | None = Field(default=None, repr=False, description="Access token (HTTP only).")
    timeout_s: float = Field(default=120.0, gt=0, le=3600, description="Cap on each git command.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        _template_fields(url)
        parts = urlsplit(url.format(**_SAMPLE))
        if parts.scheme not in _SCHEMES:
            raise ValueError(
                f"remote URL {url!r}: use an https://, http:// or file:// URL "
                "(ssh and bare paths are not supported)"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError("remote URL: put credentials in 'token', not in the URL (it would be logged)")
        if parts.scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
            raise ValueError(f"remote URL {url!r}: a file URL is file:///absolute/path")
        if parts.scheme != "file" and not parts.hostname:
            raise ValueError(f"remote URL {url!r} has no host")
        return url

    @field_validator("branch")
    @classmethod
    def _check_branch(cls, branch: str) -> str:
        _template_fields(branch)
        if not valid_branch(branch.format(**_SAMPLE)):
            raise ValueError(f"branch {branch!r} is not a valid git branch name")
        return branch

    @model_validator(mode="after")
    def _check_token(self) -> GitRemote:
        if self.token is not None and urlsplit(self.url).scheme == "file":
            raise ValueError("a token is for http(s) remotes; a file:// remote takes none")
        if ":" in self.username or any(ord(ch) < 0x20 for ch in self.username):
            raise ValueError("username must not contain ':' or control characters")
        return self

    def allows(self, tenant: str) -> bool:
        """True when ``tenant`` may export to this remote."""
        return self.tenants is None or tenant in self.tenants

    def resolve(self, name: str, *, tenant: str, workspace_id: str) -> ResolvedRemote:
        """Fill the templates for one workspace."""
        values = {"tenant": tenant, "workspace_id": workspace_id}
        branch = self.branch.format(**values)
        if not valid_branch(branch):  # a tenant name past the sample's shape; refuse rather than guess
            raise UnknownRemoteError(f"remote {name!r} gives no valid branch name for this workspace")
        return ResolvedRemote(name=name, url=self.url.format(**values), branch=branch, remote=self)


class GitExportSettings(BaseSettings):
    """Remotes for ``POST /v1/workspaces/{id}/export`` and ``agentic export``, and commit identities."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_EXPORT_", extra="ignore")

    remotes: dict[str, GitRemote] = Field(default_factory=dict, description="Allowed remotes by name.")
    committer_name: str = Field(default="Agentic Platform", description="Committer of every commit.")
    committer_email: str = Field(default="agentic@agentic.invalid")
    author_email_domain: str = Field(
        default="agentic.invalid", description="Authors are version authors; their mail is name@this."
    )
    git_binary: str = Field(default="git", description="The git executable (name on PATH or a path).")

    @field_validator("remotes")
    @classmethod
    def _check_names(cls, remotes: dict[str, GitRemote]) -> dict[str, GitRemote]:
        for name in remotes:
            if not _REMOTE_NAME.match(name):
                raise ValueError(f"remote name {name!r}: 1-64 letters, digits, '_', '.' or '-'")
        return remotes

    @field_validator("committer_name", "committer_email", "author_email_domain")
    @classmethod
    def _check_identity(cls, value: str) -> str:
        if not value or any(ch in value for ch in "<>\n\r\x00"):
            raise ValueError("must be non-empty, without '<', '>' or line breaks")
        return value

    def remote_names(self, tenant: str) -> list[str]:
        """The remotes ``tenant`` may pick, sorted."""
        return sorted(name for name, remote in self.remotes.items() if remote.allows(tenant))

    def remote_for(self, name: str, *, tenant: str, workspace_id: str) -> ResolvedRemote:
        """Resolve the remote a client named.

        Raises:
            UnknownRemoteError: no such remote, or not for this tenant (the same answer, so a
                tenant cannot learn which remotes other tenants have); the message lists its own.
        """
        remote = self.remotes.get(name)
        if remote is None or not remote.allows(tenant):
            names = self.remote_names(tenant)
            allowed = ", ".join(repr(n) for n in names) if names else "none (the operator configured none)"
            raise UnknownRemoteError(f"unknown remote {name!r}; remotes you may export to: {allowed}")
        return remote.resolve(name, tenant=tenant, workspace_id=workspace_id)
