// What the page's two transports share: the protocol version, the errors, and what a refusal
// tells the user. Protocol: talkface/api/schemas.py and docs/realtime.md.
//
// A transport carries one live session (webrtc.js first, websocket.js when WebRTC cannot
// connect). Both have the same small interface:
//
//   const t = new Transport({ video, microphone, audioContext, options, token, onEvent, onClose });
//   await t.connect()    resolves once messages can be sent; rejects with NoConnection when
//                        this transport cannot reach the server (the page tries the next one),
//                        or with UserError (a refusal the user must read: token, busy...)
//   t.send(message)      a client message ({type, ...}; the version is added); false if closed
//   t.firstFrame(event)  for a `speaking` event: a promise of a test telling which frame shown
//                        ({received, shown, mediaTime}) is the turn's first
//   t.close()            ends it, on the server too (a promise of that); onClose is called
//                        only when the server or the network ends it
//   t.name, t.sessionId

export const PROTOCOL_VERSION = 1;

/** A problem the user can act on; its message is shown as it is. */
export class UserError extends Error {}

/** This transport cannot reach the server from here; another one may. */
export class NoConnection extends Error {}

export function encodeMessage(message) {
  return JSON.stringify({ v: PROTOCOL_VERSION, ...message });
}

/** What to tell the user about a refusal: an HTTP status (or the WebSocket close code's). */
export function refusal(status, message, retryAfterS = null) {
  if (status === 401) {
    return new UserError(/expired/.test(message)
      ? "This page's session token has expired. Open a fresh link: `talkface serve` prints " +
        "one, and POST /v1/tokens mints new tokens."
      : `This page's session token was refused (${message}). Open the link that ` +
        "`talkface serve` prints.");
  }
  if (status === 503) {
    return new UserError(`The server is busy: ${message}` +
                         (retryAfterS ? ` Try again in ${retryAfterS} s.` : ""));
  }
  if (status === 429) return new UserError(`Too many requests: ${message}`);
  return new UserError(message);
}

export async function httpError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).error?.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  return refusal(response.status, message, response.headers.get("Retry-After"));
}
