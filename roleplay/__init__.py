"""roleplay: practise hard conversations against an AI persona; grade, review and certify.

The public API, by the order data flows through it.
"""

from __future__ import annotations

from roleplay.catalog import Catalog, load_catalog
from roleplay.errors import (
    ConfigError,
    ExemplarError,
    GradingError,
    NotFoundError,
    PermissionDenied,
    ProviderError,
    ReviewError,
    RoleplayError,
    ScenarioError,
    StoreError,
    ValidationErrors,
)
from roleplay.grader import Grade, LLMJudge, OfflineJudge, grade_session, make_judge
from roleplay.persona import Conversation, LLMVoice, OfflineVoice, PersonaState
from roleplay.practice import PracticeRun, resume_practice, start_practice
from roleplay.review import ApprovedResult, CriterionEdit, ReviewService, approved_results
from roleplay.rubric import Rubric, load_rubric
from roleplay.scenario import Scenario, load_scenario
from roleplay.store import Store
from roleplay.transcript import Transcript, Turn, load_transcript

__all__ = [
    "ApprovedResult", "Catalog", "ConfigError", "Conversation", "CriterionEdit", "ExemplarError", "Grade",
    "GradingError", "LLMJudge", "LLMVoice", "NotFoundError", "OfflineJudge", "OfflineVoice", "PermissionDenied",
    "PersonaState", "PracticeRun", "ProviderError", "ReviewError", "ReviewService", "RoleplayError", "Rubric",
    "Scenario", "ScenarioError", "Store", "StoreError", "Transcript", "Turn", "ValidationErrors", "approved_results",
    "grade_session", "load_catalog", "load_rubric", "load_scenario", "load_transcript", "make_judge", "resume_practice",
    "start_practice",
]
