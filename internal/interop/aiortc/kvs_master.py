#!/usr/bin/python3
"""A KVS WebRTC signaling master built on aiortc, for kvsrtc's interop tests.

aiortc never trickles: setLocalDescription gathers every candidate before it
returns, so each SDP_ANSWER carries all candidates and is sent only once
gathering has ended. That makes this a real non-trickle master.

The script takes a presigned master WSS URL (signing is the caller's job),
connects to it, answers every SDP_OFFER with its own peer connection sending
a generated video track (and silence when audio is offered), adds the
viewers' trickled ICE_CANDIDATEs and sends none itself.

Inputs (environment, so the signature stays out of the process list):
  KVSRTC_MASTER_URL   presigned wss:// (or ws://) URL of the channel, role MASTER
  KVSRTC_ICE_SERVERS  JSON list of {"urls": [...], "username": ..., "credential": ...}
                      (default []; never aiortc's built-in public STUN server)

With --two-way it also decodes each viewer's talk-back audio ("talk"
events count the frames) and answers each data channel message with
"echo:" + message ("datachannel", "message" events).

Output: one JSON object per line on stdout for each event (ready, offer,
candidate, answer, state, error, and the two-way ones); logs on stderr. The process ends on
SIGTERM, SIGINT or when stdin reaches EOF.
"""

import argparse
import asyncio
import base64
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time

import aioice.ice
import av
import numpy
import websockets
import websockets.exceptions
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import candidate_from_sdp

log = logging.getLogger("kvs_master")


def emit(event, **fields):
    """Writes one event as a JSON line on stdout."""
    fields["event"] = event
    fields["t"] = round(time.monotonic(), 3)
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def restrict_to_loopback():
    """Makes aioice gather host candidates on 127.0.0.1 only.

    aioice lists every interface address except loopback; a test must send
    traffic to loopback only, so the list is replaced by 127.0.0.1 alone.
    """

    def loopback_addresses(use_ipv4, use_ipv6):
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_addresses


def ice_server_host(url):
    """Returns the host of a stun:/turn:/turns: URL."""
    rest = url.split(":", 1)[1].split("?", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


def parse_ice_servers(text, loopback):
    """Parses KVSRTC_ICE_SERVERS into RTCIceServers, refusing bad input."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"KVSRTC_ICE_SERVERS is not JSON ({exc}); give a list like "
                         '[{"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u", "credential": "p"}]')
    if not isinstance(raw, list):
        raise SystemExit("KVSRTC_ICE_SERVERS must be a JSON list of ICE server objects")
    servers = []
    for s in raw:
        urls = s.get("urls") if isinstance(s, dict) else None
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise SystemExit(f"KVSRTC_ICE_SERVERS: entry {s!r} has no urls")
        for u in urls:
            if loopback and not is_loopback_host(ice_server_host(u)):
                raise SystemExit(f"ICE server {u} is not on loopback; with --loopback-only every "
                                 "STUN/TURN server must be 127.0.0.1, ::1 or localhost")
        servers.append(RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential")))
    return servers


def is_loopback_host(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PatternTrack(VideoStreamTrack):
    """A moving colour pattern at aiortc's 30 frames per second."""

    def __init__(self, width=320, height=240):
        super().__init__()
        self.width = width
        self.height = height
        self.n = 0
        x = numpy.arange(width, dtype=numpy.uint16)
        y = numpy.arange(height, dtype=numpy.uint16)
        self.base = (x[None, :] + y[:, None]).astype(numpy.uint8)

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.n += 1
        img = numpy.empty((self.height, self.width, 3), dtype=numpy.uint8)
        img[:, :, 0] = self.base + numpy.uint8(self.n * 3 % 256)
        img[:, :, 1] = self.base[::-1, :] + numpy.uint8(self.n % 256)
        img[:, :, 2] = 128
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


def encode_payload(obj):
    return base64.b64encode(json.dumps(obj).encode()).decode()


def decode_payload(text):
    text = text + "=" * (-len(text) % 4)
    return json.loads(base64.b64decode(text))


class Master:
    """Answers the offers arriving on one signaling connection."""

    def __init__(self, ws, args, ice_servers):
        self.ws = ws
        self.args = args
        self.ice_servers = ice_servers
        self.send_lock = asyncio.Lock()
        self.peers = {}  # viewer client id -> Peer
        self.tasks = set()
        self.offers = 0

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, action, payload, recipient):
        msg = {"action": action, "messagePayload": encode_payload(payload), "recipientClientId": recipient}
        async with self.send_lock:
            await self.ws.send(json.dumps(msg))

    async def run(self):
        async for frame in self.ws:
            try:
                msg = json.loads(frame)
            except ValueError:
                log.warning("ignoring a frame that is not JSON: %.200r", frame)
                continue
            if not isinstance(msg, dict):
                continue
            kind = msg.get("messageType")
            sender = msg.get("senderClientId") or ""
            if kind == "SDP_OFFER":
                self.offers += 1
                emit("offer", viewer=sender, n=self.offers)
                old = self.peers.pop(sender, None)
                if old:
                    self.spawn(old.close("replaced by a new offer"))
                peer = Peer(self, sender)
                self.peers[sender] = peer
                self.spawn(peer.answer(msg.get("messagePayload", "")))
            elif kind == "ICE_CANDIDATE":
                peer = self.peers.get(sender)
                if peer is None:
                    log.info("candidate from %s, which has no offer: ignored", sender)
                    continue
                self.spawn(peer.add_candidate(msg.get("messagePayload", "")))
            elif kind == "STATUS_RESPONSE":
                emit("status", status=msg.get("statusResponse"))
            elif kind == "GO_AWAY":
                emit("go_away")
                return
            else:
                log.info("ignoring message type %r", kind)

    async def close(self):
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(p.close("master stopping") for p in list(self.peers.values())),
                             return_exceptions=True)
        self.peers.clear()


class Peer:
    """One viewer's peer connection."""

    def __init__(self, master, viewer):
        self.master = master
        self.viewer = viewer
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=master.ice_servers))
        self.remote_set = asyncio.Event()
        self.closed = False
        self.bundle_mid = None

        @self.pc.on("connectionstatechange")
        async def on_state():
            emit("state", viewer=viewer, state=self.pc.connectionState)
            if self.pc.connectionState == "failed":
                await self.close("ICE or DTLS failed")

        if master.args.two_way:
            @self.pc.on("track")
            def on_track(track):
                if track.kind == "audio":
                    master.spawn(self.read_talk(track))

            @self.pc.on("datachannel")
            def on_datachannel(channel):
                emit("datachannel", viewer=viewer, label=channel.label)

                @channel.on("message")
                def on_message(message):
                    text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                    emit("message", viewer=viewer, message=text)
                    channel.send("echo:" + text)

    async def read_talk(self, track):
        """Decodes the viewer's talk-back audio and reports how much came."""
        frames = 0
        try:
            while True:
                await track.recv()
                frames += 1
                if frames == 1 or frames % 50 == 0:
                    emit("talk", viewer=self.viewer, n=frames)
        except Exception:  # MediaStreamError when the track ends
            emit("talk-ended", viewer=self.viewer, n=frames)

    async def answer(self, payload):
        t0 = time.monotonic()
        try:
            offer = decode_payload(payload)
            if self.master.args.codec != "any":
                # aiortc applies codec preferences when the offer is set, to
                # a transceiver that exists by then: the offer's video
                # m-line takes this one.
                prefer_codec(self.pc.addTransceiver("video", direction="sendonly"), self.master.args.codec)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            self.bundle_mid = bundle_owner(offer["sdp"])
            kinds = {tr.kind for tr in self.pc.getTransceivers()}
            if "video" in kinds:
                self.pc.addTrack(PatternTrack())  # takes the offered transceiver
            if "audio" in kinds:
                self.pc.addTrack(AudioStreamTrack())  # silence
            self.remote_set.set()
            answer = await self.pc.createAnswer()
            g0 = time.monotonic()
            await self.pc.setLocalDescription(answer)  # gathers every candidate
            gathered = time.monotonic()
            if self.master.args.answer_delay > 0:
                await asyncio.sleep(self.master.args.answer_delay)
            if self.closed:
                return
            sdp = self.pc.localDescription.sdp
            await self.master.send("SDP_ANSWER", {"type": "answer", "sdp": sdp}, self.viewer)
            emit("answer", viewer=self.viewer,
                 gather_ms=round((gathered - g0) * 1000),
                 answer_ms=round((time.monotonic() - t0) * 1000),
                 candidates=sdp.count("a=candidate:"),
                 codecs=video_codecs(sdp), bytes=len(sdp))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one viewer's bad offer must not stop the master
            log.exception("answering %s", self.viewer)
            emit("error", viewer=self.viewer, error=f"{type(exc).__name__}: {exc}")
            await self.close("answer failed")

    async def add_candidate(self, payload):
        try:
            c = decode_payload(payload)
            text = c.get("candidate") or ""
            await self.remote_set.wait()
            if not text or self.closed:
                return
            cand = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
            cand.sdpMid = c.get("sdpMid")
            cand.sdpMLineIndex = c.get("sdpMLineIndex")
            if self.bundle_mid is not None:
                # aiortc adds a candidate only to the m-line owning the
                # bundled transport; every m-line of the bundle shares it.
                cand.sdpMid = self.bundle_mid
            await self.pc.addIceCandidate(cand)
            emit("candidate", viewer=self.viewer, candidate=text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            emit("error", viewer=self.viewer, error=f"candidate: {type(exc).__name__}: {exc}")

    async def close(self, why):
        if self.closed:
            return
        self.closed = True
        self.remote_set.set()  # releases candidates waiting for the offer
        if self.master.peers.get(self.viewer) is self:
            del self.master.peers[self.viewer]
        emit("closed", viewer=self.viewer, why=why)
        await self.pc.close()


def prefer_codec(transceiver, codec):
    """Restricts the video codecs of the answer to codec (vp8, h264)."""
    mime = {"vp8": "video/VP8", "h264": "video/H264"}[codec]
    caps = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in caps if c.mimeType == mime]
    transceiver.setCodecPreferences(chosen)


def bundle_owner(sdp):
    """Returns the mid owning the transport of a BUNDLE group (its first), or None."""
    for line in sdp.splitlines():
        if line.startswith("a=group:BUNDLE "):
            mids = line.split()[1:]
            return mids[0] if mids else None
    return None


def video_codecs(sdp):
    names = []
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            name = line.split(" ", 1)[1].split("/", 1)[0]
            if name not in names:
                names.append(name)
    return names


async def wait_for_stop():
    """Returns on SIGTERM, SIGINT or EOF on stdin."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin():
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    # A daemon thread, not the loop's executor: asyncio.run would wait for
    # an executor blocked in read() when the master ends on its own.
    threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
    await stop.wait()


async def main(args):
    url = os.environ.get("KVSRTC_MASTER_URL", "")
    if not url.startswith(("wss://", "ws://")):
        raise SystemExit("KVSRTC_MASTER_URL must be the presigned wss:// URL of the channel's MASTER endpoint")
    ice_servers = parse_ice_servers(os.environ.get("KVSRTC_ICE_SERVERS", "[]"), args.loopback_only)
    if args.loopback_only:
        restrict_to_loopback()
    ctx = None
    if url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else ssl.create_default_context()

    stopper = asyncio.ensure_future(wait_for_stop())
    async with websockets.connect(url, ssl=ctx, max_size=64 << 10, ping_interval=20) as ws:
        master = Master(ws, args, ice_servers)
        emit("ready", answer_delay=args.answer_delay, codec=args.codec,
             ice_servers=[u for s in ice_servers for u in s.urls])
        runner = asyncio.ensure_future(master.run())
        done, _ = await asyncio.wait({stopper, runner}, return_when=asyncio.FIRST_COMPLETED)
        runner.cancel()
        stopper.cancel()
        await asyncio.gather(runner, stopper, return_exceptions=True)
        await master.close()
        emit("stopped", offers=master.offers)
        if runner in done and runner.exception() is not None:
            raise runner.exception()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answer-delay", type=float, default=0.0,
                   help="extra seconds to wait after gathering before sending each answer")
    p.add_argument("--codec", choices=["any", "vp8", "h264"], default="any",
                   help="video codec of the answer (any: the first of the offer that aiortc supports)")
    p.add_argument("--two-way", action="store_true",
                   help="receive the viewers' audio (decoded and counted: 'talk' events) and echo their "
                        "data channel messages ('echo:' + message)")
    p.add_argument("--loopback-only", action="store_true",
                   help="gather host candidates on 127.0.0.1 only and refuse non-loopback ICE servers")
    p.add_argument("--ca-file", help="CA bundle for a wss:// URL with a private certificate")
    p.add_argument("--verbose", action="store_true", help="debug logs of aiortc and aioice on stderr")
    args = p.parse_args(argv)
    if args.answer_delay < 0:
        p.error("--answer-delay must not be negative")
    return args


if __name__ == "__main__":
    a = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(main(a))
    except websockets.exceptions.InvalidStatusCode as e:
        sys.exit(f"kvs_master: the signaling service refused the connection: HTTP {e.status_code}")
    except (OSError, websockets.exceptions.WebSocketException) as e:
        sys.exit(f"kvs_master: signaling connection failed: {e}")
