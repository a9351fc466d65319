"""Live conversations: microphone audio and typed text in, the avatar's answers out.

See :class:`Conversation`.
"""

from talkface.conversation._conversation import Conversation, ConversationOptions
from talkface.conversation._turns import TurnRecord

__all__ = ["Conversation", "ConversationOptions", "TurnRecord"]
