// Plays the WebSocket's fragmented MP4 (H.264 + AAC) in a <video> through Media Source
// Extensions, live: every binary frame is appended in order to one SourceBuffer (one
// append at a time: a SourceBuffer refuses a second while it is `updating`), the media
// already played is removed so memory stays bounded, and playback jumps to the live edge
// when it falls behind (a busy tab, a stall), so the avatar answers with little delay.

import { UserError } from "./transport.js";

// The server cuts a fragment every 0.5 s, so playback normally trails the newest media by
// about that much. Further behind than MAX_LAG_S, it jumps to LIVE_LAG_S behind.
const MAX_LAG_S = 2.5;
const LIVE_LAG_S = 0.75;
// Keep this much already played (a little rewind room), trim in steps of TRIM_STEP_S.
const KEEP_PLAYED_S = 10;
const TRIM_STEP_S = 5;

export class MSEPlayer {
  constructor(video) {
    this.video = video;
    this.queue = []; // chunks received, not appended yet, in order
    this.latest = null; // the chunk received last
    this.buffer = null;
    this.appending = null;
    this.failed = false;
    this.stats = { chunks: 0, bytes: 0, liveEdgeJumps: 0, trims: 0 };
    this.mediaSource = new MediaSource();
    this.sourceOpen = new Promise((resolve) =>
      this.mediaSource.addEventListener("sourceopen", resolve, { once: true }));
    this.url = URL.createObjectURL(this.mediaSource);
    video.srcObject = null;
    video.src = this.url;
  }

  /** The stream's MSE type (the `stream_init` event); the next chunk is the init segment. */
  async init(mime) {
    if (!MediaSource.isTypeSupported(mime)) {
      throw new UserError(`This browser cannot play the avatar's stream (${mime}).`);
    }
    await this.sourceOpen;
    URL.revokeObjectURL(this.url);
    this.buffer = this.mediaSource.addSourceBuffer(mime);
    this.buffer.addEventListener("updateend", () => this.updated());
    this.pump();
  }

  /** One binary frame of the stream. */
  append(data) {
    const chunk = { data, start: null };
    chunk.appended = new Promise((resolve) => { chunk.resolve = resolve; });
    this.queue.push(chunk);
    this.latest = chunk;
    this.stats.chunks += 1;
    this.stats.bytes += data.byteLength;
    this.pump();
  }

  /** The media time (s) where the chunk received last begins, once it is appended. */
  latestStart() {
    return this.latest ? this.latest.appended : Promise.resolve(0);
  }

  bufferedEnd() {
    const ranges = this.buffer?.buffered;
    return ranges?.length ? ranges.end(ranges.length - 1) : 0;
  }

  bufferedSpanS() {
    const ranges = this.buffer?.buffered;
    return ranges?.length ? ranges.end(ranges.length - 1) - ranges.start(0) : 0;
  }

  pump() {
    const buffer = this.buffer;
    if (!buffer || buffer.updating || this.failed || this.mediaSource.readyState !== "open") {
      return;
    }
    if (this.trim()) return; // remove() is under way: updateend pumps again
    const chunk = this.queue.shift();
    if (!chunk) return;
    chunk.start = this.bufferedEnd();
    try {
      buffer.appendBuffer(chunk.data);
      this.appending = chunk;
    } catch (err) {
      if (err.name !== "QuotaExceededError" || !this.trim(0.5)) {
        // Nothing left to free: this fragment is lost, the next one starts at a keyframe.
        console.warn("a media fragment could not be buffered", err);
        chunk.resolve(chunk.start);
        return this.pump();
      }
      this.queue.unshift(chunk); // retried when the removal is done
    }
  }

  updated() {
    const chunk = this.appending;
    this.appending = null;
    if (chunk) {
      chunk.resolve(chunk.start);
      chunk.data = null;
      this.followLiveEdge();
    }
    this.pump();
  }

  /** Removes what was played more than ``keepS`` ago; true if a removal started. */
  trim(keepS = KEEP_PLAYED_S) {
    const ranges = this.buffer.buffered;
    if (!ranges.length) return false;
    const until = this.video.currentTime - keepS;
    const step = keepS === KEEP_PLAYED_S ? TRIM_STEP_S : 0;
    if (until - ranges.start(0) <= step) return false;
    this.buffer.remove(0, until);
    this.stats.trims += 1;
    return true;
  }

  followLiveEdge() {
    const ranges = this.buffer.buffered;
    if (!ranges.length) return;
    const video = this.video;
    const start = ranges.start(ranges.length - 1);
    const end = ranges.end(ranges.length - 1);
    if (video.currentTime < start || end - video.currentTime > MAX_LAG_S) {
      if (video.currentTime > 0) this.stats.liveEdgeJumps += 1;
      video.currentTime = Math.max(start, end - LIVE_LAG_S);
    }
    if (video.paused) video.play().catch(() => {}); // Start was a click: sound is allowed
  }

  close() {
    this.failed = true;
    this.queue = [];
    if (this.mediaSource.readyState === "open") {
      try {
        this.mediaSource.endOfStream();
      } catch {
        // a SourceBuffer was updating: the element is detached below anyway
      }
    }
    this.video.removeAttribute("src");
    this.video.load();
  }
}
