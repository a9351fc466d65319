// The WebRTC transport: the page's first choice (lowest latency). See transport.js for the
// interface.
//
// connect() opens a peer connection (no STUN: iceServers is empty, the server answers with
// the addresses it has), gathers its candidates (no trickle) and posts the offer to
// /v1/sessions/webrtc, which creates the session and answers. The microphone goes up as the
// offer's audio track; the avatar comes down as one audio and one video track; messages
// travel on a data channel the page opens.
//
// It gives up with NoConnection when WebRTC is missing or blocked here, when ICE fails, or
// when the connection does not come up within WEBRTC_CONNECT_TIMEOUT_MS (where UDP is
// blocked the offer has no candidate at all); the page then falls back to the WebSocket.
// An offer without candidates is still posted: a browser hides its addresses from a page
// that may not use the microphone, yet connects through them.

import { NoConnection, encodeMessage, httpError } from "./transport.js";

const ICE_GATHER_TIMEOUT_MS = 3000;
const WEBRTC_CONNECT_TIMEOUT_MS = 6000;

export class WebRTCTransport {
  name = "webrtc";

  constructor({ video, microphone, options, token, onEvent, onClose }) {
    Object.assign(this, { video, microphone, options, token, onEvent, onClose });
    this.pc = null;
    this.channel = null;
    this.sessionId = null;
    this.closed = false;
    this.serverEnded = false; // the server closed the session: nothing to delete
  }

  async connect() {
    if (typeof RTCPeerConnection !== "function") {
      throw new NoConnection("not in this browser");
    }
    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers: [] });
    } catch (err) {
      throw new NoConnection(`blocked: ${err.name}`);
    }
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    if (this.microphone) {
      pc.addTransceiver(this.microphone.getAudioTracks()[0],
                        { direction: "sendrecv", streams: [this.microphone] });
    } else {
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    const channel = pc.createDataChannel("talkface", { ordered: true });
    this.channel = channel;
    channel.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        console.warn("bad event from the server", err);
        return;
      }
      if (event.type === "closed") this.serverEnded = true;
      this.onEvent(event);
    };
    const remote = new MediaStream();
    this.video.removeAttribute("src");
    this.video.srcObject = remote;
    pc.ontrack = (event) => {
      remote.addTrack(event.track);
      this.video.play().catch(() => {}); // Start was a click: playback with sound is allowed
    };

    try {
      await pc.setLocalDescription(await pc.createOffer());
    } catch (err) {
      throw new NoConnection(`blocked: ${err.name}`);
    }
    await waitForIceGathering(pc);
    const noCandidates = !/^a=candidate:/m.test(pc.localDescription.sdp);
    const response = await fetch("/v1/sessions/webrtc", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.token}` },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp,
                             options: this.options }),
    });
    if (!response.ok) throw await httpError(response);
    const answer = await response.json();
    this.sessionId = answer.session_id;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await this.channelOpen(noCandidates);
    channel.onclose = () => this.lost("The connection to the server closed.", false);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") {
        this.lost("The media connection failed: the browser could not reach the server " +
                  "over UDP (a firewall or VPN may block it).", true);
      }
    };
  }

  channelOpen(noCandidates) {
    const { pc, channel } = this;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new NoConnection(noCandidates
        ? "UDP seems blocked" : `no connection in ${WEBRTC_CONNECT_TIMEOUT_MS / 1000} s`)),
        WEBRTC_CONNECT_TIMEOUT_MS);
      channel.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed") {
          clearTimeout(timer);
          reject(new NoConnection(noCandidates ? "UDP seems blocked" : "ICE failed"));
        }
      };
    });
  }

  send(message) {
    if (this.channel?.readyState !== "open") return false;
    this.channel.send(encodeMessage(message));
    return true;
  }

  firstFrame(event) {
    // A turn's first frame is the first one received after the server sent it (frames come
    // one per 1/fps, so the one before was received well before).
    return Promise.resolve((frame) => frame.received >= event.server_time_ms - 1);
  }

  lost(message, alert) {
    if (this.closed) return;
    this.serverEnded = true;
    this.close();
    this.onClose(message, alert);
  }

  close() {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    if (!this.sessionId || this.serverEnded) {
      this.pc?.close();
      return Promise.resolve();
    }
    // A peer that never connected, or whose goodbye is lost, would hold its session on the
    // server until ICE gives up: end it now, then say goodbye (which would end it too).
    return fetch(`/v1/sessions/${encodeURIComponent(this.sessionId)}`, {
      method: "DELETE", headers: { Authorization: `Bearer ${this.token}` }, keepalive: true,
    }).catch(() => {}).finally(() => this.pc.close());
  }

  async selectedCandidates() {
    // The addresses the media actually flows between (tests check they are loopback).
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    for (const report of stats.values()) {
      if (report.type === "transport" && report.selectedCandidatePairId) {
        const pair = stats.get(report.selectedCandidatePairId);
        return { local: stats.get(pair.localCandidateId)?.address,
                 remote: stats.get(pair.remoteCandidateId)?.address };
      }
    }
    return null;
  }
}

function waitForIceGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ICE_GATHER_TIMEOUT_MS); // send what has been gathered so far
  });
}
