"""The one exception family of the agent: configs, planners, campaigns."""

from __future__ import annotations


class AgentError(ValueError):
    """A config, planner call or campaign step was not what was expected.

    The message names what was expected and what was got; the CLI prints it as one line with
    exit code 2.
    """


class PlannerError(AgentError):
    """A planner was built, asked or told something it cannot use."""
