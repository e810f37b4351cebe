"""The one error root of roleplay and its structured subclasses."""

from __future__ import annotations


class RoleplayError(Exception):
    """Root of every error roleplay raises on purpose; its message says how to fix the problem."""


class ScenarioError(RoleplayError):
    """A YAML file (scenario, rubric or program) is invalid.

    Attributes:
        path: The file the problem is in.
        line: 1-based line of the problem, or None when the file cannot be read at all.
        field: Dotted path of the offending field ("" for the whole document).
        problem: What is wrong and how to fix it.
    """

    def __init__(self, path: str, line: int | None, field: str, problem: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(self.format())

    def format(self) -> str:
        """Return the canonical `file:line: field: problem` form."""
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.field or '(document)'}: {self.problem}"


class ValidationErrors(RoleplayError):
    """Several files or fields failed validation at once."""

    def __init__(self, errors: list[ScenarioError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.format() for e in errors))


class ConfigError(RoleplayError):
    """Configuration is missing or inconsistent."""


class StoreError(RoleplayError):
    """The database cannot be reached or holds something unexpected."""


class NotFoundError(RoleplayError):
    """A scenario, rubric, session or person that was asked for does not exist."""


class ProviderError(RoleplayError):
    """A model call failed for good (after any retries); the message says what to check.

    Attributes:
        attempts: How many requests were made before giving up.
        status: The last HTTP status from the endpoint, or None (timeout, connection or content problem).
        last_reply: The last reply text when the reply itself was unusable (structured output), else None.
    """

    def __init__(self, message: str, *, attempts: int = 1, status: int | None = None,
                 last_reply: str | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status
        self.last_reply = last_reply


class ContextTooLong(ProviderError):
    """The endpoint refused a request as longer than the model's context window; refit the prompt and retry once.

    Attributes:
        window: The model's context window in tokens as the server stated it (or the client's estimate when the
            server gave no number), or None.
        prompt_tokens: The prompt's size in tokens as the server counted it, or None when it did not say.
    """

    def __init__(self, message: str, *, window: int | None = None, prompt_tokens: int | None = None,
                 attempts: int = 1, status: int | None = None) -> None:
        super().__init__(message, attempts=attempts, status=status)
        self.window = window
        self.prompt_tokens = prompt_tokens


class GradingError(RoleplayError):
    """A transcript could not be graded.

    Attributes:
        attempts: Model calls made.
        last_reply: The last raw reply, if any.
    """

    def __init__(self, message: str, attempts: int = 0, last_reply: str | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_reply = last_reply


class ExemplarError(RoleplayError):
    """The exemplar store or its embedder cannot be used; the message says what to check."""


class ReviewError(RoleplayError):
    """A review action is not allowed or lost a race; the message says why and what to do."""


class PermissionDenied(RoleplayError):
    """The person asking is not allowed to do this."""


class CertificationError(RoleplayError):
    """A certification step is not possible yet or was given invalid input; the message says what to do."""


class BuddyError(RoleplayError):
    """A learning-buddy step is not possible (no buddy named, naming oneself, an empty reflection)."""


class StandardsError(RoleplayError):
    """A credential or key cannot be made, read or checked."""


class LRSError(RoleplayError):
    """The LRS refused statements or could not be reached.

    Attributes:
        attempts: Requests made before giving up.
        status: The last HTTP status, or None (timeout or connection failure).
    """

    def __init__(self, message: str, *, attempts: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status
