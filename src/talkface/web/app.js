// talkface browser client: one live session with the avatar. Plain ES modules, no build step.
//
// Flow: the page's URL carries a short-lived session token (?token=...). "Start" opens the
// microphone and connects over WebRTC (webrtc.js); where WebRTC cannot connect (blocked, no
// UDP path) the page says so and uses the WebSocket stream instead (websocket.js, played
// through Media Source Extensions by mse.js). Either way the avatar plays in the same
// <video>, and the same JSON events (transcripts, reply text, turn events, latency, errors)
// drive this page, which sends typed text and interrupts back. Protocol:
// talkface/api/schemas.py and docs/realtime.md.

import { NoConnection, UserError, httpError } from "./transport.js";
import { WebRTCTransport } from "./webrtc.js";
import { WebSocketTransport } from "./websocket.js";

const CLOCK_SYNC_INTERVAL_MS = 10000;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), notice: $("notice"), frame: $("video-frame"), video: $("avatar"),
  placeholder: $("placeholder"), start: $("start"), mic: $("mic"), micLabel: $("mic-label"),
  micLevel: $("mic-level"), interrupt: $("interrupt"), hangup: $("hangup"), log: $("log"),
  transport: $("transport-note"),
  composer: $("composer"), text: $("text"), send: $("send"), latency: $("latency"),
  voice: $("opt-voice"), language: $("opt-language"), avatar: $("opt-avatar"),
  persona: $("opt-persona"),
};

const token = new URLSearchParams(location.search).get("token");

// Everything the page knows, exposed for tests and the browser benchmark.
const state = {
  status: "idle",
  sessionId: null,
  transport: null, // the live session's WebRTCTransport or WebSocketTransport
  transportName: null, // "webrtc" or "websocket", kept after the session ends
  fallbackReason: null, // why WebRTC could not connect, when the page fell back
  microphone: null,
  audioContext: null,
  micStartedAtClientMs: null,
  clockOffsetMs: 0, // server clock minus this page's clock
  bestRttMs: Infinity,
  events: [],
  errors: [],
  turns: {}, // turn id -> {transcript, reply, speakingAt, shownAt, latency, interrupted}
  framesShown: 0,
  pendingFirstFrames: [], // turns whose first frame is on its way: {turnId, isFirst(frame)}
  recentFrames: [], // {received, shown} in server ms, mediaTime in s
  get pc() { return state.transport?.pc ?? null; },
  get channel() { return state.transport?.channel ?? null; },
  selectedCandidates: async () => (await state.transport?.selectedCandidates?.()) ?? null,
  micStartedAtServerMs: () =>
    state.micStartedAtClientMs === null ? null : state.micStartedAtClientMs + state.clockOffsetMs,
};
window.talkface = state;

const clientNowMs = () => performance.timeOrigin + performance.now();

// --- status and notices ---------------------------------------------------------------------

function setStatus(name, label) {
  state.status = name;
  ui.status.dataset.state = name;
  ui.status.textContent = label;
  ui.frame.dataset.speaking = String(name === "speaking");
  ui.interrupt.disabled = name !== "speaking";
}

function notice(message, kind = "error") {
  ui.notice.textContent = message;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = false;
}

function clearNotice() {
  ui.notice.hidden = true;
}

function logLine(kind, text, extraClass = "") {
  const item = document.createElement("li");
  item.className = `bubble ${kind} ${extraClass}`.trim();
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = { user: "you", avatar: "avatar", system: "" }[kind] ?? "";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  ui.log.append(item);
  ui.log.scrollTop = ui.log.scrollHeight;
  return item;
}

function turn(turnId) {
  if (!state.turns[turnId]) {
    state.turns[turnId] = { transcript: "", reply: "", speakingAt: null, shownAt: null,
                            latency: null, interrupted: false, userEl: null, avatarEl: null };
  }
  return state.turns[turnId];
}

// --- the server's events --------------------------------------------------------------------

function onEvent(event) {
  state.events.push(event);
  switch (event.type) {
    case "ready":
      state.sessionId = event.session_id;
      setStatus("listening", state.microphone ? "listening" : "ready (type a message)");
      break;
    case "transcript": {
      const t = turn(event.turn_id);
      t.transcript = event.text;
      if (!t.userEl) t.userEl = logLine("user", "");
      t.userEl.querySelector(".text").textContent = event.text || "…";
      t.userEl.classList.toggle("partial", !event.final);
      if (state.status !== "speaking") {
        setStatus(event.final ? "thinking" : "hearing", event.final ? "thinking…" : "hearing you");
      }
      break;
    }
    case "reply_delta": {
      const t = turn(event.turn_id);
      t.reply += event.text;
      if (!t.avatarEl) t.avatarEl = logLine("avatar", "");
      t.avatarEl.querySelector(".text").textContent = t.reply.trim();
      ui.log.scrollTop = ui.log.scrollHeight;
      break;
    }
    case "speaking":
      turn(event.turn_id).speakingAt = event.server_time_ms;
      state.transport?.firstFrame(event).then((isFirst) => {
        state.pendingFirstFrames.push({ turnId: event.turn_id, isFirst });
        matchFirstFrames();
      });
      setStatus("speaking", "speaking");
      break;
    case "interrupted": {
      const t = turn(event.turn_id);
      t.interrupted = true;
      t.avatarEl?.classList.add("interrupted");
      setStatus("listening", "listening");
      break;
    }
    case "turn_end": {
      const t = turn(event.turn_id);
      if (!t.avatarEl && event.spoken_text) t.avatarEl = logLine("avatar", event.spoken_text);
      if (event.interrupted) t.avatarEl?.classList.add("interrupted");
      if (["speaking", "thinking", "hearing"].includes(state.status)) {
        setStatus("listening", "listening");
      }
      break;
    }
    case "latency":
      turn(event.turn_id).latency = event.stages_ms;
      showLatency(event.turn_id, event.stages_ms);
      break;
    case "error":
      state.errors.push(event);
      logLine("system", event.message, "error");
      break;
    case "pong":
      onPong(event);
      break;
    case "closed":
      ended(event.reason === "ended" ? "The conversation ended." : `Session ended: ${event.reason}`);
      break;
    default:
      break; // newer servers may send more; ignore what this page does not know
  }
}

function send(message) {
  return state.transport?.send(message) ?? false;
}

// --- latency readout ------------------------------------------------------------------------

const LATENCY_COLUMNS = ["asr_final", "llm_first_token", "first_audio", "first_video_frame",
                         "first_byte", "first_frame_shown"];

function showLatency(turnId, stages) {
  const body = ui.latency.tBodies[0];
  let row = body.querySelector(`tr[data-turn="${turnId}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.turn = String(turnId);
    body.prepend(row);
  }
  const cells = [String(turnId), ...LATENCY_COLUMNS.map((stage) =>
    stages[stage] === undefined ? "–" : `${Math.round(stages[stage])} ms`)];
  row.replaceChildren(...cells.map((text, i) => {
    const cell = document.createElement("td");
    cell.textContent = text;
    if (i === cells.length - 1) cell.className = "total";
    return cell;
  }));
  while (body.rows.length > 8) body.deleteRow(-1);
}

// --- clock sync and first frames on screen --------------------------------------------------

function ping() {
  send({ type: "ping", client_time_ms: clientNowMs() });
}

function onPong(event) {
  const now = clientNowMs();
  const rtt = now - event.client_time_ms;
  // The fastest round trip gives the best estimate; old estimates fade so drift is followed.
  state.bestRttMs = Math.min(state.bestRttMs * 1.05, state.bestRttMs + 5);
  if (rtt <= state.bestRttMs) {
    state.bestRttMs = rtt;
    state.clockOffsetMs = event.server_time_ms - (event.client_time_ms + rtt / 2);
  }
}

let watchingFrames = false;

function watchFrames() {
  const video = ui.video;
  if (watchingFrames || !("requestVideoFrameCallback" in video)) return;
  watchingFrames = true;
  const onFrame = (now, meta) => {
    state.framesShown += 1;
    const base = performance.timeOrigin + state.clockOffsetMs;
    state.recentFrames.push({
      received: base + (meta.receiveTime ?? meta.presentationTime ?? now),
      shown: base + (meta.expectedDisplayTime ?? now),
      mediaTime: meta.mediaTime,
    });
    if (state.recentFrames.length > 200) state.recentFrames.shift();
    matchFirstFrames();
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function matchFirstFrames() {
  // Which frame is a turn's first is the transport's to say (see firstFrame in transport.js).
  state.pendingFirstFrames = state.pendingFirstFrames.filter(({ turnId, isFirst }) => {
    const frame = state.recentFrames.find(isFirst);
    if (!frame) return true;
    turn(turnId).shownAt = frame.shown;
    send({ type: "frame_presented", turn_id: turnId, presented_at_ms: frame.shown });
    return false;
  });
}

// --- microphone -----------------------------------------------------------------------------

async function openMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    notice("This page cannot use the microphone here (browsers allow it only on https:// or " +
           "localhost). You can still type.", "warn");
    return null;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true,
               channelCount: 1 },
    });
    state.micStartedAtClientMs = clientNowMs();
    showMicLevel(stream);
    return stream;
  } catch (err) {
    const reasons = {
      NotAllowedError: "Microphone access was denied. Allow it in the address bar and start " +
                       "again to talk, or type below.",
      NotFoundError: "No microphone was found. You can type instead.",
      NotReadableError: "The microphone is busy in another application. You can type instead.",
    };
    notice(reasons[err.name] ?? `The microphone could not be opened (${err.name}). You can ` +
           "type instead.", "warn");
    return null;
  }
}

function showMicLevel(stream) {
  try {
    // One context for the meter and, over the WebSocket, for streaming the microphone.
    const context = new AudioContext();
    state.audioContext = context;
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const draw = () => {
      if (state.status === "ended") return;
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const level = Math.min(1, Math.sqrt(sum / samples.length) * 6);
      ui.micLevel.style.width = `${Math.round(level * 100)}%`;
      requestAnimationFrame(draw);
    };
    draw();
  } catch {
    // The meter is a nicety; without WebAudio WebRTC works the same (the WebSocket cannot
    // stream the microphone, and typing still works).
  }
}

// --- connecting -----------------------------------------------------------------------------

function sessionOptions() {
  const options = {};
  if (ui.voice.value) options.voice = ui.voice.value;
  if (ui.language.value) options.language = ui.language.value;
  if (ui.avatar.value.trim()) options.avatar_id = ui.avatar.value.trim();
  if (ui.persona.value.trim()) options.persona = ui.persona.value.trim();
  return options;
}

async function start() {
  clearNotice();
  ui.start.disabled = true;
  ui.transport.hidden = true;
  setStatus("connecting", "connecting…");
  try {
    state.microphone = await openMicrophone();
    const hooks = {
      video: ui.video, microphone: state.microphone, audioContext: state.audioContext,
      options: sessionOptions(), token, onEvent, onClose: transportClosed,
    };
    state.transport = new WebRTCTransport(hooks);
    try {
      await state.transport.connect();
    } catch (err) {
      if (!(err instanceof NoConnection)) throw err;
      await state.transport.close(); // its server session too, before the next one starts
      state.fallbackReason = err.message;
      showTransport(`WebRTC failed (${err.message}): streaming over WebSocket.`);
      state.transport = new WebSocketTransport(hooks);
      await state.transport.connect();
    }
    state.transportName = state.transport.name;
    state.sessionId = state.transport.sessionId;
    connected();
  } catch (err) {
    notice(err instanceof UserError ? err.message
      : `Could not connect to the server (${err.message ?? err}). Is talkface serve running?`);
    teardown();
    setStatus("error", "not connected");
    ui.start.disabled = false;
  }
}

function showTransport(message) {
  ui.transport.textContent = ui.transport.title = message;
  ui.transport.hidden = false;
}

function transportClosed(message, alert) {
  if (alert) notice(message);
  ended(alert ? null : message);
}

let clockTimer = null;

function connected() {
  ui.placeholder.hidden = true;
  watchFrames();
  ui.text.disabled = ui.send.disabled = false;
  ui.hangup.disabled = false;
  ui.mic.disabled = !state.microphone;
  ui.micLabel.textContent = state.microphone ? "mic on" : "no mic";
  ui.mic.dataset.on = String(Boolean(state.microphone));
  for (let i = 0; i < 5; i += 1) setTimeout(ping, i * 150);
  clockTimer = setInterval(ping, CLOCK_SYNC_INTERVAL_MS);
  ui.text.focus();
}

function teardown() {
  clearInterval(clockTimer);
  state.transport?.close();
  state.transport = null;
  state.microphone?.getTracks().forEach((track) => track.stop());
  state.audioContext?.close().catch(() => {});
  state.audioContext = null;
}

function ended(message) {
  if (state.status === "ended") return;
  teardown();
  setStatus("ended", "ended");
  if (message) logLine("system", message);
  ui.text.disabled = ui.send.disabled = ui.mic.disabled = ui.hangup.disabled = true;
  ui.start.disabled = false;
  ui.start.textContent = "Start again";
  ui.placeholder.hidden = false;
}

// --- controls -------------------------------------------------------------------------------

ui.start.addEventListener("click", start);

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  if (send({ type: "text", text })) {
    logLine("user", text);
    ui.text.value = "";
    setStatus("thinking", "thinking…");
  }
});

ui.interrupt.addEventListener("click", () => send({ type: "interrupt" }));

ui.mic.addEventListener("click", () => {
  const track = state.microphone?.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  ui.mic.dataset.on = String(track.enabled);
  ui.micLabel.textContent = track.enabled ? "mic on" : "muted";
});

ui.hangup.addEventListener("click", () => ended("You ended the conversation."));

window.addEventListener("pagehide", teardown);

async function loadVoices() {
  const response = await fetch("/v1/voices", { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw await httpError(response);
  for (const voice of (await response.json()).data) {
    const option = document.createElement("option");
    option.value = voice.name;
    option.textContent = `${voice.name} (${voice.language}, ${voice.backend})`;
    ui.voice.append(option);
  }
}

if (!token) {
  ui.start.disabled = true;
  notice("This page needs a session token in its address (…/?token=…). Start the server " +
         "with `talkface serve` and open the link it prints.");
} else {
  // Checks the token early, so an expired link says so before anyone clicks.
  loadVoices().catch((err) => {
    if (err instanceof UserError) {
      notice(err.message);
      ui.start.disabled = /token/.test(err.message);
    }
  });
}
