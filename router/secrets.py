"""References to secrets: ``${env:NAME}`` and ``${file:/path}``.

The config holds a ``SecretRef``, never the secret itself. The secret is read
only where it is used (inside a backend adapter, or hashed at once for keys),
and a ``SecretRef``'s ``repr`` and ``str`` show the reference, not the value,
so a config object can be logged safely.

    ${env:OPENAI_API_KEY}     the environment variable OPENAI_API_KEY
    ${file:/run/secrets/k}    the file's contents, surrounding whitespace stripped
    anything else             a literal (allowed, but keep secrets out of files)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_REFERENCE = re.compile(r"^\$\{(env|file):([^}]+)\}$")


class SecretError(ValueError):
    """A reference that cannot be resolved; the message names the reference only."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    reference: str

    @property
    def kind(self) -> str:
        match = _REFERENCE.match(self.reference)
        return match.group(1) if match else "literal"

    def problem(self) -> str | None:
        """Why ``resolve`` would fail now, or ``None`` if it would succeed."""
        try:
            self.resolve()
        except SecretError as exc:
            return str(exc)
        return None

    def resolve(self) -> str:
        match = _REFERENCE.match(self.reference)
        if match is None:
            if self.reference.startswith("${"):
                raise SecretError(
                    f"{self.reference!r} is not a secret reference: use ${{env:NAME}} or ${{file:/path}}"
                )
            return self.reference
        kind, name = match.groups()
        if kind == "env":
            value = os.environ.get(name)
            if not value:
                raise SecretError(f"environment variable {name} is not set or empty")
            return value
        try:
            with open(name, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {name}: {exc.strerror}") from None
        if not value:
            raise SecretError(f"secret file {name} is empty")
        return value

    def __repr__(self) -> str:
        if self.kind == "literal":
            return "SecretRef('***')"
        return f"SecretRef({self.reference!r})"

    __str__ = __repr__
