"""A stand-in for the model when no OPENAI_API_KEY is set.

The fake server streams the answer word by word when the client asks for a stream
(``request.stream``), the way the real API sends small deltas.
"""

from polos.testing import FakeReply, FakeRequest

STORY = (
    "Every night for forty years, Maren climbed the hundred and twelve steps of the "
    "lighthouse and lit the lamp. Ships never came any more; the harbour had silted up "
    "before she was born. Still she polished the lens and wrote the weather in her log. "
    "One stormy evening a small boat rounded the point, its sail torn, and steered "
    "straight for her light. The girl at the tiller climbed the steps, soaked and "
    "grinning, and said: I saw it from the other side of the bay. Maren handed her the "
    "log and a pencil. The next line was written in a new hand."
)


def answer(request: FakeRequest) -> FakeReply:
    # A small delay before the first word, as a real model takes time to start.
    return FakeReply(text=STORY, delay=0.2 if request.stream else 0.0)
