"""What the server offers, without the HTTP around it: render jobs and their durable
store, speech for the OpenAI endpoint, chat completions.

These run wherever the engines are reachable — in ``talkface serve``, and on a render
worker of the Ray host (:mod:`talkface.serving.renderer`), which has no FastAPI. The
``api`` package only turns HTTP and WebSocket traffic into calls to them.
"""
