#!/usr/bin/python3
"""Fill a running edgegw with the state that session/store/testdata/store-78ac58e.db
holds (see session/store/testdata/README.md). mkstore.sh runs it in three steps:

  fill.py HOST PORT bridge MQPORT   a message goes up through the bridge to the
                                    mosquitto on MQPORT (then mkstore.sh stops it)
  fill.py HOST PORT clients         sessions, queued and retained messages, the
                                    bridge outbox
  fill.py HOST PORT meters          commands for the meters on meterpty.py's ports

Uses Debian's paho-mqtt (1.6), so run it with /usr/bin/python3."""
import json
import socket
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

host, port, step = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def connect(cid, v5, clean, expiry=None, to=None):
    if v5:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, clean_session=clean)
    done = []
    c.on_connect = lambda *a: done.append(a)
    c.on_subscribe = lambda *a: done.append(a)
    if v5:
        props = Properties(PacketTypes.CONNECT)
        if expiry is not None:
            props.SessionExpiryInterval = expiry
        c.connect(host, to or port, clean_start=clean, properties=props)
    else:
        c.connect(host, to or port)
    c.loop_start()
    wait(lambda: done, "CONNACK " + cid)
    c._acks = done
    return c


def wait(cond, what):
    for _ in range(1500):
        if cond():
            return
        time.sleep(0.01)
    sys.exit("timed out waiting for " + what)


def subscribe(c, topics):
    n = len(c._acks)
    c.subscribe(topics)
    wait(lambda: len(c._acks) > n, "SUBACK")


def stop(c):
    c.disconnect()
    c.loop_stop()


def clients():
    # Persistent v3.1.1 session: two subscriptions, goes offline.
    c = connect("v311-persist", False, False)
    subscribe(c, [("fleet/+/temp", 1), ("alarm/#", 2)])
    stop(c)

    # Persistent v5 session (expiry 1 day): a plain subscription with options and a
    # shared subscription, goes offline.
    c = connect("v5-persist", True, True, expiry=0xFFFFFFFF)
    opts = mqtt.SubscribeOptions(qos=2, noLocal=True, retainAsPublished=True, retainHandling=1)
    subscribe(c, [("fleet/+/temp", opts)])
    sid = Properties(PacketTypes.SUBSCRIBE)
    sid.SubscriptionIdentifier = 7
    n = len(c._acks)
    c.subscribe([("$share/workers/jobs/#", mqtt.SubscribeOptions(qos=1))], properties=sid)
    wait(lambda: len(c._acks) > n, "SUBACK")
    stop(c)

    # A second persistent v5 session with no subscriptions and an expiry of 1 hour.
    c = connect("v5-idle", True, True, expiry=3600)
    stop(c)

    # A persistent v3.1.1 session that sent a QoS 2 PUBLISH (packet id 4242) and
    # went away after the PUBREC, before its PUBREL: the id awaits PUBREL
    # [MQTT-4.3.3-9]. Raw bytes: paho always completes the flow.
    r = socket.create_connection((host, port))
    cid = b"v311-qos2"
    body = b"\x00\x04MQTT\x04\x00\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    r.sendall(bytes([0x10, len(body)]) + body)
    assert r.recv(4) == b"\x20\x02\x00\x00", "CONNACK"
    topic = b"qos2/pending"
    body = len(topic).to_bytes(2, "big") + topic + (4242).to_bytes(2, "big") + b"once"
    r.sendall(bytes([0x34, len(body)]) + body)
    assert r.recv(4) == b"\x50\x02\x10\x92", "PUBREC"
    r.sendall(b"\xe0\x00")  # DISCONNECT
    r.close()

    # Publisher: QoS 1 and 2 messages queued for the offline sessions (and the
    # shared group, which has no member online), retained messages, and messages the
    # bridge forward rule takes into its outbox.
    p = connect("publisher", True, True)
    msgs = [
        ("fleet/a/temp", b"21.5", 1, False),
        ("fleet/b/temp", b"22.0", 2, False),
        ("alarm/door", b"open", 2, False),
        ("jobs/build/1", b"job one", 1, False),
        ("jobs/build/2", b"job two", 2, False),
        ("status/gw", b"online", 1, True),
        ("status/meter/7", b"ok", 0, True),
        ("up/meters/7", b"uplink 1", 1, False),
        ("up/meters/8", b"uplink 2", 1, False),
    ]
    for topic, payload, qos, retain in msgs:
        info = p.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
    stop(p)


def bridge(mqport):
    """One message goes through the bridge "cloud" to the mosquitto on mqport:
    the bridge has been connected before its upstream goes away."""
    got = []
    up = connect("cloud-reader", True, True, to=mqport)
    up.on_message = lambda c, u, m: got.append(m.payload)
    subscribe(up, [("site/up/#", 1)])
    p = connect("uplinker", True, True)
    p.publish("up/meters/0", b"uplink 0", qos=1).wait_for_publish(5)
    wait(lambda: got == [b"uplink 0"], "uplink 0 at mosquitto")
    stop(p)
    stop(up)


def command(c, topic, payload, **props):
    """Publish a QoS 1 command with a Message Expiry Interval of 2^32-1 s (so
    it is still due whenever a test reads the file) and props."""
    pp = Properties(PacketTypes.PUBLISH)
    pp.MessageExpiryInterval = 0xFFFFFFFF
    for k, v in props.items():
        setattr(pp, k, v)
    c.publish(topic, payload, qos=1, properties=pp).wait_for_publish(5)


def meters():
    """Commands for the line meter water-17 (silent: they wait for its next
    uplink) and the Modbus meter mains-1 (meterpty.py answers its polls until
    the first write, which then times out: one attempt used, still queued; the
    second command comes once the meter is offline: no attempt)."""
    states = []
    c = connect("commander", True, True)

    def on_message(cl, u, m):
        states.append(json.loads(m.payload)["state"])

    c.on_message = on_message
    subscribe(c, [("meters/mains-1/status", 1)])
    wait(lambda: "online" in states, "mains-1 online")
    command(c, "meters/mains-1/cmd", b'{"write":{"register":100,"value":7}}')
    wait(lambda: states[-1] == "offline", "mains-1 offline after its write timed out")
    command(c, "meters/mains-1/cmd", b'{"write":{"register":101,"value":8}}')
    command(c, "meters/water-17/cmd", b'{"interval":3600}',
            ResponseTopic="app/replies", CorrelationData=b"c-1")
    command(c, "meters/water-17/cmd", b'{"interval":60}')
    stop(c)


if step == "bridge":
    bridge(int(sys.argv[4]))
elif step == "clients":
    clients()
elif step == "meters":
    meters()
else:
    sys.exit("unknown step " + step)
print(step, "done")
