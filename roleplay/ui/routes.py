"""HTTP routes served beside the Gradio pages: what other systems call (an LMS launching a tool, a SCORM package
asking for a result) and links people follow from outside the app (an email's link back to a drill).

Each feature module that answers HTTP owns its routes and exposes them as `routes()`; this module lists them.
They are added to the app before Gradio's own routes (`launch_options()`), outside Gradio's sign-in: each route
checks what it is given itself (a signed launch, a signed link).
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from roleplay.context import AppContext


def extra_routes(context: AppContext) -> list[BaseRoute]:
    """Every route served beside the pages, for the app of `context`."""
    found: list[BaseRoute] = []
    from roleplay.nudges import routes as nudge_routes  # emailed drill links and one-click unsubscribe

    found += nudge_routes(context)
    from roleplay.scorm_routes import routes as scorm_routes  # a SCORM package's link and result requests

    found += scorm_routes(context)
    from roleplay.lti import routes as lti_routes  # LMS launch (LTI 1.3): login, launch, keys, deep linking

    found += lti_routes(context)
    return found
