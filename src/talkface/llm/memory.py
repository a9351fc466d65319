"""Conversation memory: the persona, the turns so far, within a token budget.

Every prompt is the system prompt, then as many of the most recent turns as fit in the
budget (oldest dropped first), then the user's new message, leaving room for the reply.
The prompt always starts with the same system prompt and grows turn by turn, so an LLM
that keeps its evaluated prefix (llama.cpp) only evaluates the new part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from talkface.errors import BadInput
from talkface.llm.base import (
    MESSAGE_TEMPLATE_TOKENS,
    PROMPT_TEMPLATE_MARGIN_TOKENS,
    ChatMessage,
)

INTERRUPTED_MARK = " [interrupted by the user]"

KEEP_AFTER_CUT = 0.5
"""When the history no longer fits, it is cut to this share of the room (keeping at least
the newest turn), not just to fit: the prompt then starts the same way for many turns,
and an LLM that keeps its evaluated prefix reuses it for many turns. A soak found the
difference: with the window sliding by one turn each time, every turn re-read ~4000 tokens
(seconds on 2 cores) and the LLM's queue grew without end once four sessions' histories
were full. llama.cpp does not even read the kept half again: it moves it up in its KV cache
(:func:`talkface.llm._kv_states.find_cut`); an LLM server elsewhere may."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One exchange: what the user said and what the avatar said back.

    Attributes:
        user: the user's message.
        assistant: what the avatar actually said (only the spoken part if interrupted).
        interrupted: the user cut the avatar off.
    """

    user: str
    assistant: str
    interrupted: bool = False


class ConversationMemory:
    """Turns of one conversation and the prompts built from them.

    Args:
        persona: the system prompt.
        budget_tokens: the model's context the prompt and reply must fit in.
        reply_tokens: room kept for the reply.
        count_tokens: the model's token counter.
    """

    def __init__(
        self,
        persona: str,
        *,
        budget_tokens: int,
        reply_tokens: int,
        count_tokens: Callable[[str], int],
    ) -> None:
        self.persona = persona
        self.budget_tokens = budget_tokens
        self.reply_tokens = reply_tokens
        self._count = count_tokens
        self._turns: list[Turn] = []
        self._costs: list[int] = []  # tokens each turn takes in a prompt
        self._first_kept = 0  # the oldest turn prompts include (moves only forward)
        self._system_tokens = count_tokens(persona) + MESSAGE_TEMPLATE_TOKENS

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The remembered exchanges, oldest first."""
        return tuple(self._turns)

    def record(self, user: str, assistant: str, *, interrupted: bool = False) -> None:
        """Remember a finished (or interrupted) exchange."""
        turn = Turn(user=user, assistant=assistant, interrupted=interrupted)
        self._turns.append(turn)
        self._costs.append(self._cost(turn))

    def amend_last(self, assistant: str, *, interrupted: bool) -> None:
        """Correct the last answer (the user cut it off while it was still playing)."""
        if self._turns:
            last = self._turns[-1]
            self._turns[-1] = Turn(user=last.user, assistant=assistant, interrupted=interrupted)
            self._costs[-1] = self._cost(self._turns[-1])

    def prompt(self, user: str) -> tuple[ChatMessage, ...]:
        """The messages to send for the user's new message.

        Raises:
            BadInput: the message alone does not fit in the model's context.
        """
        available = (self.budget_tokens - self.reply_tokens - self._system_tokens
                     - PROMPT_TEMPLATE_MARGIN_TOKENS)
        needed = self._count(user) + MESSAGE_TEMPLATE_TOKENS
        if needed > available:
            raise BadInput(
                f"the message is about {needed} tokens; the model's context leaves room for "
                f"{max(available, 0)}: shorten it"
            )
        kept = self._turns[self._kept_from(available - needed):]
        messages = [ChatMessage(role="system", content=self.persona)]
        for turn in kept:
            messages.append(ChatMessage(role="user", content=turn.user))
            messages.append(ChatMessage(role="assistant", content=_spoken(turn)))
        messages.append(ChatMessage(role="user", content=user))
        return tuple(messages)

    def _cost(self, turn: Turn) -> int:
        """Tokens ``turn`` takes in a prompt."""
        return (self._count(turn.user) + self._count(_spoken(turn))
                + 2 * MESSAGE_TEMPLATE_TOKENS)

    def _kept_from(self, room: int) -> int:
        """Index of the oldest turn a prompt with ``room`` tokens of history keeps."""
        first, costs = self._first_kept, self._costs
        total = sum(costs[first:])
        if total <= room:
            return first
        target = room * KEEP_AFTER_CUT
        while first < len(costs) and (
            total > room or (total > target and first < len(costs) - 1)
        ):
            total -= costs[first]
            first += 1
        self._first_kept = first
        return first


def _spoken(turn: Turn) -> str:
    """What the avatar said in ``turn``, marked when the user cut it off."""
    return turn.assistant + INTERRUPTED_MARK if turn.interrupted else turn.assistant
