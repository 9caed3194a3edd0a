#!/usr/bin/env python3
"""peer_uws.py: the uWebSockets peer of natter's benchmarks (uWS through socketify).

It speaks the subset of natter's native protocol (man/natter-protocol.7) the pub/sub scenarios
use, with the same JSON shapes, so one load generator drives both servers:

  on open      -> {"type":"Status","data":{"status":"connected","details":{...}}}
  Subscribe    -> Status subscribed (with the request id), the topics subscribed in uWS
  Broadcast    -> the Broadcast event (topic, payload, metadata) published to the topic's
                  subscribers (the sender skipped, as
                  natter does), then an Ack with the recipient count to the sender
  Ping         -> Pong

Every frame is parsed and every event serialized, as natter does, so the peer does the same
work per message; fan-out (one serialized frame to N sockets) is uWS's C++ pub/sub.
No authentication: a ?token= in the URL is ignored.

How it runs (the peer at its best, issue #16): socketify's App.run() drives libuv from asyncio,
calling uv_run(NOWAIT) from a call_soon loop that never sleeps while traffic flows, so the peer
takes a whole core even when uWS has nothing to do; on a 2-core machine that starves the load
generator and slows the peer itself. The peer therefore drives libuv directly: app.loop.started =
True, then app.loop.uv_loop.run(), i.e. uv_run(DEFAULT), which sleeps in epoll_wait when idle.
Nothing here needs asyncio: every handler is synchronous, and uWS's own timers and the listen
callback are libuv's (the listen callback runs inside listen()). There is no other mode: a
handicapped peer would only flatter natter.

Backpressure: uWS's default max_backpressure, 64 KiB per socket (`--max-backpressure` to try
others). natter's bound is ws.outbound_queue, 256 frames per connection: at the fanout's
~250-byte Broadcast frames that is about the same 64 KiB. Both disconnect a subscriber that
passes its bound (natter: close 4008; here close_on_backpressure_limit), so a lost delivery
means the same thing on both sides.

Usage: peer_uws.py PORT [--max-backpressure BYTES]
       (listens on 127.0.0.1:PORT, prints "ready PORT" once listening)
"""

import argparse
import json
import signal
import time

from socketify import App, CompressOptions, OpCode
from socketify.native import lib


def dumps(value):
    """Compact JSON, as natter writes it."""
    return json.dumps(value, separators=(",", ":"))


WELCOME = dumps(
    {
        "type": "Status",
        "data": {
            "status": "connected",
            "details": {
                "protocol_version": "1.0",
                "features": ["broadcast"],
                "user": {"username": "bench", "role": "user"},
            },
        },
    }
)


class Counter:
    """Delivery ids, like natter's broadcast_HEX."""

    value = 0


def publish_skipping_sender(ws, topic, event):
    # socketify's WebSocket.publish is App.publish (to every subscriber, the sender included);
    # uWS's own WebSocket::publish skips the sender, as natter does, so call it directly. It
    # publishes nothing for a socket subscribed to no topic: such a sender has nothing to skip.
    if not ws.is_subscribed(topic):
        app.publish(topic, event, OpCode.TEXT)
        return
    topic_bytes = topic.encode("utf-8")
    data = event.encode("utf-8")
    lib.uws_ws_publish_with_options(
        app.SSL, ws.ws, topic_bytes, len(topic_bytes), data, len(data), int(OpCode.TEXT), False
    )


def reply(ws, frame_type, data, request_id):
    frame = {"type": frame_type, "data": data}
    if request_id is not None:
        frame["id"] = str(request_id)
    ws.send(dumps(frame), OpCode.TEXT)


def on_open(ws):
    ws.send(WELCOME, OpCode.TEXT)


def on_message(ws, message, opcode):
    try:
        frame = json.loads(message)
        kind = frame["type"]
        data = frame.get("data") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        reply(ws, "Error", {"code": 400, "message": "malformed frame"}, None)
        return
    request_id = frame.get("id")
    if kind == "Broadcast":
        topic = data.get("topic")
        if not isinstance(topic, str) or not topic:
            reply(ws, "Error", {"code": 400, "message": "missing field data.topic"}, request_id)
            return
        Counter.value += 1
        message_id = "broadcast_%032x" % Counter.value
        event = dumps(
            {
                "type": "Broadcast",
                "data": {
                    "topic": topic,
                    "payload": data.get("payload"),
                    "metadata": {
                        "sent_at": int(time.time()),
                        "message_id": message_id,
                        "sender": "bench",
                    },
                },
            }
        )
        publish_skipping_sender(ws, topic, event)
        # Like natter's count, leaving out the sender.
        recipients = app.num_subscribers(topic) - (1 if ws.is_subscribed(topic) else 0)
        reply(
            ws,
            "Ack",
            {
                "message_id": request_id if request_id is not None else message_id,
                "status": "delivered",
                "recipients": recipients,
            },
            request_id,
        )
    elif kind == "Subscribe":
        topics = data.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            reply(ws, "Error", {"code": 400, "message": "data.topics must be an array of strings"}, request_id)
            return
        for topic in topics:
            ws.subscribe(topic)
        reply(
            ws,
            "Status",
            {"status": "subscribed", "details": {"topics": topics, "active_subscriptions": len(topics)}},
            request_id,
        )
    elif kind == "Ping":
        reply(ws, "Pong", {"timestamp": data.get("timestamp", int(time.time()))}, request_id)
    elif kind == "Pong":
        pass
    else:
        reply(ws, "Error", {"code": 400, "message": "unknown message type %r" % kind}, request_id)


def parse_args():
    parser = argparse.ArgumentParser(
        description="natter's uWebSockets peer", epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("port", type=int)
    parser.add_argument(
        "--max-backpressure", type=int, default=64 * 1024,
        help="bytes buffered per socket before it is closed (uWS's default, 65536)",
    )
    return parser.parse_args()


def serve_forever():
    # What App.run() does before its asyncio loop, then libuv itself: uv_run(UV_RUN_DEFAULT)
    # blocks in epoll_wait while no socket or timer is ready. `started` is only read by the
    # asyncio glue (its keep-alive and stop()); set it as run() does.
    if getattr(app, "_factory", None) is not None:
        app._factory.populate()
    if getattr(app, "_ws_factory", None) is not None:
        app._ws_factory.populate()
    # Python's SIGINT handler would only run between callbacks; let Ctrl-C end the process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    app.loop.started = True
    app.loop.uv_loop.run()


def main():
    args = parse_args()
    port = args.port

    def listening(config):
        print("ready %d" % config.port, flush=True)

    app.ws(
        "/*",
        {
            "compression": CompressOptions.DISABLED,
            "max_payload_length": 1024 * 1024,
            "idle_timeout": 0,
            # uWS's default (64 KiB); natter's 256-frame queue is about as much (see above).
            "max_backpressure": args.max_backpressure,
            "close_on_backpressure_limit": True,
            "open": on_open,
            "message": on_message,
        },
    )
    app.listen({"port": port, "host": "127.0.0.1"}, listening)
    serve_forever()


app = App()

if __name__ == "__main__":
    main()
