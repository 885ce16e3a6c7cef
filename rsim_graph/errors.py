"""Errors the runtime raises at its users. Each message says what went wrong and what to do."""


class RSIMError(Exception):
    """Base class: the CLI, the server and the evals print these as one line, without a traceback."""


class StrategyError(RSIMError, ValueError):
    """A strategy library is malformed or a strategy id is unknown."""


class PlannerError(RSIMError):
    """A planner returned something the graph cannot use."""


class ReasonerError(RSIMError):
    """A reasoner backend failed or returned nothing."""


class UpstreamError(ReasonerError):
    """An OpenAI-compatible reasoner server answered with an error status (`status`)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"the reasoner's server refused the request ({status}): {message}")
        self.status = status


class CheckpointError(RSIMError, FileNotFoundError):
    """A model or checkpoint path is missing or unreadable."""


class InputError(RSIMError, ValueError):
    """A user input (question, option) is invalid."""


class ContextLengthError(InputError):
    """The input does not fit the model's context window (OpenAI's `context_length_exceeded`)."""
