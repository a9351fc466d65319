// The WebSocket transport: the fallback when WebRTC cannot connect (UDP blocked, WebRTC
// disabled). See transport.js for the interface.
//
// /v1/sessions/ws?token=<session token>: the first message is a `hello` asking for `fmp4`;
// the server answers `ready`, then `stream_init` (the MSE type) and the avatar as fragmented
// MP4 in binary frames, which mse.js plays in the same <video>. The microphone goes up as
// binary frames of s16le mono PCM at the hello's rate (16 kHz), in real time; messages and
// events are JSON text frames.

import { MSEPlayer } from "./mse.js";
import { UserError, encodeMessage, refusal } from "./transport.js";

const MIC_RATE_HZ = 16000;
const MIC_CHUNK_MS = 20;
const READY_TIMEOUT_MS = 30000;
// The server's close codes for refusals, as the HTTP statuses they stand for.
const CLOSE_STATUS = { 4401: 401, 4403: 403, 4429: 429, 4503: 503 };

export class WebSocketTransport {
  name = "websocket";

  constructor({ video, microphone, audioContext, options, token, onEvent, onClose }) {
    Object.assign(this, { video, microphone, audioContext, options, token, onEvent, onClose });
    this.ws = null;
    this.player = null;
    this.capture = null;
    this.sessionId = null;
    this.ready = false;
    this.closed = false;
    this.refusalEvent = null; // an error event before ready: why the server refuses
    this.onVideoError = () => this.lost(
      `The avatar's stream could not be played (${this.video.error?.message || "decode error"}).`,
      true);
  }

  async connect() {
    if (typeof MediaSource !== "function") {
      throw new UserError("This browser can use neither WebRTC nor Media Source Extensions, " +
                          "so it cannot show the avatar. Try a recent Chrome, Edge or Firefox.");
    }
    this.player = new MSEPlayer(this.video);
    this.video.addEventListener("error", this.onVideoError);
    const url = new URL("/v1/sessions/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token); // a session token: the server takes it in the URL
    const rateHz = this.audioContext
      ? Math.min(MIC_RATE_HZ, this.audioContext.sampleRate) : MIC_RATE_HZ;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (message) => this.received(message.data);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the server did not answer in time")),
                               READY_TIMEOUT_MS);
      this.onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onopen = () => {
        ws.send(encodeMessage({ type: "hello", sample_rate_hz: rateHz, output: "fmp4",
                                options: this.options }));
        // Audio sent now waits in the socket until the server has made the session.
        this.startMicrophone(rateHz).catch((err) =>
          console.warn("the microphone could not be streamed", err));
      };
      ws.onclose = (event) => {
        clearTimeout(timer);
        reject(this.refused(event));
      };
    });
    ws.onclose = (event) => this.lost(event.code === 1000
      ? "The connection to the server closed."
      : `The connection to the server closed (${event.reason || `code ${event.code}`}).`,
      false);
  }

  received(data) {
    if (data instanceof ArrayBuffer) {
      this.player.append(data);
      return;
    }
    let event;
    try {
      event = JSON.parse(data);
    } catch (err) {
      console.warn("bad event from the server", err);
      return;
    }
    if (event.type === "stream_init") {
      this.player.init(event.mime).catch((err) => this.lost(err.message, true));
      return;
    }
    if (!this.ready) {
      if (event.type === "error") {
        this.refusalEvent = event; // the close that follows says it to the user
        return;
      }
      if (event.type === "ready") {
        this.ready = true;
        this.sessionId = event.session_id;
        this.onReady();
      }
    }
    this.onEvent(event);
  }

  refused(event) {
    const message = this.refusalEvent?.message || event.reason || `code ${event.code}`;
    const status = CLOSE_STATUS[event.code];
    if (status) return refusal(status, message);
    if (this.refusalEvent) return new UserError(message);
    return new Error(event.code === 1006 ? "the WebSocket could not connect" : message);
  }

  async startMicrophone(rateHz) {
    if (!this.microphone || !this.audioContext || this.closed) return;
    const samplesPerChunk = Math.round((rateHz * MIC_CHUNK_MS) / 1000);
    this.capture = new MicrophonePCM(this.audioContext, this.microphone, rateHz, samplesPerChunk,
      (pcm) => {
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send(pcm.buffer);
      });
    await this.capture.start();
  }

  send(message) {
    if (this.ws?.readyState !== WebSocket.OPEN || !this.ready) return false;
    this.ws.send(encodeMessage(message));
    return true;
  }

  firstFrame() {
    // The `speaking` event follows the fragment that holds the turn's first media, so that
    // frame is at or after where the fragment begins (at most one fragment, 0.5 s, early).
    return this.player.latestStart().then((startS) => (frame) =>
      frame.mediaTime !== undefined && frame.mediaTime >= startS - 0.001);
  }

  lost(message, alert) {
    if (this.closed) return;
    this.close();
    this.onClose(message, alert);
  }

  close() {
    // Closing the socket ends the session on the server.
    this.closed = true;
    this.capture?.stop();
    this.video.removeEventListener("error", this.onVideoError);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
    this.player?.close();
  }
}

// --- the microphone as s16le PCM --------------------------------------------------------------

/**
 * Float samples in, s16le chunks out at a lower rate: each output sample is the mean of the
 * input samples it spans (a box filter: enough for speech recognition, and cheap enough for
 * the audio thread). Runs in the AudioWorklet (its source is copied there) or, without
 * AudioWorklet, on the page.
 */
class PCMChunker {
  constructor(inRateHz, outRateHz, samplesPerChunk) {
    this.step = Math.max(1, inRateHz / outRateHz);
    this.edge = this.step; // input position where the next output sample is complete
    this.at = 0;
    this.sum = 0;
    this.count = 0;
    this.chunk = new Int16Array(samplesPerChunk);
    this.filled = 0;
  }

  push(input) {
    const chunks = [];
    for (let i = 0; i < input.length; i += 1) {
      this.sum += input[i];
      this.count += 1;
      this.at += 1;
      if (this.at < this.edge) continue;
      const value = Math.max(-1, Math.min(1, this.sum / this.count));
      this.chunk[this.filled] = value < 0 ? value * 0x8000 : value * 0x7fff;
      this.filled += 1;
      this.sum = 0;
      this.count = 0;
      this.edge += this.step;
      if (this.filled === this.chunk.length) {
        chunks.push(this.chunk);
        this.chunk = new Int16Array(this.chunk.length);
        this.filled = 0;
      }
    }
    return chunks;
  }
}

const WORKLET_SOURCE = `${PCMChunker.toString()}
registerProcessor("talkface-microphone", class extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { rateHz, samplesPerChunk } = options.processorOptions;
    this.chunker = new PCMChunker(sampleRate, rateHz, samplesPerChunk);
  }
  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    if (samples) {
      for (const chunk of this.chunker.push(samples)) this.port.postMessage(chunk, [chunk.buffer]);
    }
    return true;
  }
});
`;

/** Streams a microphone as s16le PCM chunks: an AudioWorklet, else a ScriptProcessor. */
class MicrophonePCM {
  constructor(context, stream, rateHz, samplesPerChunk, onChunk) {
    Object.assign(this, { context, stream, rateHz, samplesPerChunk, onChunk });
    this.nodes = [];
    this.stopped = false;
  }

  async start() {
    const context = this.context;
    await context.resume();
    const source = context.createMediaStreamSource(this.stream);
    let node;
    if (context.audioWorklet && typeof AudioWorkletNode === "function") {
      const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "text/javascript" }));
      try {
        await context.audioWorklet.addModule(url);
      } finally {
        URL.revokeObjectURL(url);
      }
      node = new AudioWorkletNode(context, "talkface-microphone", {
        processorOptions: { rateHz: this.rateHz, samplesPerChunk: this.samplesPerChunk },
      });
      node.port.onmessage = (message) => this.onChunk(message.data);
    } else {
      const chunker = new PCMChunker(context.sampleRate, this.rateHz, this.samplesPerChunk);
      node = context.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = (event) => {
        for (const chunk of chunker.push(event.inputBuffer.getChannelData(0))) {
          this.onChunk(chunk);
        }
      };
    }
    // Connected to the output (it writes silence) so that the browser runs it.
    if (this.stopped) return; // the session ended while the worklet loaded
    source.connect(node);
    node.connect(context.destination);
    this.nodes = [source, node];
  }

  stop() {
    this.stopped = true;
    for (const node of this.nodes) node.disconnect();
    this.nodes = [];
  }
}
