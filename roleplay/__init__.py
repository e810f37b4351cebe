"""roleplay: practise hard conversations against an AI persona; grade, review and certify.

The public API, by the order data flows through it. Names are imported on first use, so `import roleplay`
(and the `roleplay` command) starts quickly. `roleplay.__version__` is the installed version.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "roleplay.errors": ("ConfigError", "ExemplarError", "GradingError", "NotFoundError", "PermissionDenied",
                        "ProviderError", "ReviewError", "RoleplayError", "ScenarioError", "StoreError",
                        "ValidationErrors"),
    "roleplay.config": ("Settings", "load_settings"),
    "roleplay.context": ("AppContext",),
    "roleplay.catalog": ("Catalog", "load_catalog"),
    "roleplay.scenario": ("Scenario", "load_scenario"),
    "roleplay.rubric": ("Rubric", "load_rubric"),
    "roleplay.transcript": ("Transcript", "Turn", "load_transcript"),
    "roleplay.persona": ("Conversation", "OfflineVoice", "PersonaState"),
    "roleplay.voices": ("LLMVoice",),
    "roleplay.practice": ("PracticeRun", "resume_practice", "start_practice"),
    "roleplay.grader": ("Grade", "LLMJudge", "OfflineJudge", "grade_session"),
    "roleplay.review": ("ApprovedResult", "CriterionEdit", "ReviewService", "approved_results"),
    "roleplay.store": ("Store",),
    "roleplay.people": ("Account", "PeopleService"),
}
_OWNER = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_OWNER)

if TYPE_CHECKING:  # for type checkers; at run time `__getattr__` imports on first use
    from roleplay.catalog import Catalog, load_catalog
    from roleplay.config import Settings, load_settings
    from roleplay.context import AppContext
    from roleplay.errors import (ConfigError, ExemplarError, GradingError, NotFoundError, PermissionDenied,
                                 ProviderError, ReviewError, RoleplayError, ScenarioError, StoreError, ValidationErrors)
    from roleplay.grader import Grade, LLMJudge, OfflineJudge, grade_session
    from roleplay.persona import Conversation, OfflineVoice, PersonaState
    from roleplay.voices import LLMVoice
    from roleplay.practice import PracticeRun, resume_practice, start_practice
    from roleplay.review import ApprovedResult, CriterionEdit, ReviewService, approved_results
    from roleplay.rubric import Rubric, load_rubric
    from roleplay.scenario import Scenario, load_scenario
    from roleplay.people import Account, PeopleService
    from roleplay.store import Store
    from roleplay.transcript import Transcript, Turn, load_transcript


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the installed distribution's version, looked up on first use
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("roleplay")
        except PackageNotFoundError:
            return "0+unknown"
    module = _OWNER.get(name)
    if module is None:
        raise AttributeError(f"module 'roleplay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
