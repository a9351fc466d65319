"""Live sessions on the wire: WebRTC (aiortc) and a WebSocket fallback.

* :mod:`~talkface.api.realtime.media`: a conversation's output as one continuous audio
  and video stream (speech when the avatar talks, idle frames and silence otherwise),
  paced by the wall clock, cut at once by a barge-in;
* :mod:`~talkface.api.realtime.session`: what every transport shares: JSON client
  messages in, JSON events out (formats in :mod:`talkface.api.schemas`);
* :mod:`~talkface.api.realtime.webrtc` and :mod:`~talkface.api.realtime.websocket`: the
  two transports; :mod:`~talkface.api.realtime.outgoing`: the WebSocket's bounded send
  queue and its encoders (fMP4, JPEG);
* :mod:`~talkface.api.realtime.hub`: the WebRTC sessions of this process;
  :mod:`~talkface.api.realtime.ice`: which addresses are offered as ICE candidates.

The endpoints are in :mod:`talkface.api.routes.sessions`.
"""
