#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from real client traffic.

Usage: seed_corpus.py MOLDAU_BINARY CORPUS_DIR

Starts the broker in a temporary directory behind a recording TCP proxy (advertised as
the broker's address, so every client connection goes through it), drives it with kcat
(produce in every codec, consume, metadata) and kafka-python (admin, a consumer group,
an idempotent-style producer with keys and headers), stops it, and writes:
  CORPUS_DIR/request/       every request frame a client sent (size prefix included)
  CORPUS_DIR/record_batch/  each partition's segment files (batches end to end)
  CORPUS_DIR/log_files/     each partition directory packed as the log_files target
                            reads it: a flags byte, then [kind u8][length u16][bytes]
  CORPUS_DIR/metadata_log/  the metadata log directory, packed the same way (no flags
                            byte), with and without its quorum-state file
Files are named by the SHA-1 of their content, so reruns add no duplicates.
"""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# Must match FILES in fuzz/src/lib.rs: the kind byte is the index.
FILES = [
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "00000000000000000000.txnindex",
    "00000000000000000000.snapshot",
    "leader-epoch-checkpoint",
    "00000000000000000100.log",
    "00000000000000000100.index",
    "00000000000000000100.timeindex",
    "00000000000000000100.snapshot",
    "recovery-point-offset-checkpoint",
    "log-start-offset-checkpoint",
]


def save(directory, data):
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pump(src, dst, frames=None):
    """Copies src to dst; with `frames`, also cuts the stream into request frames."""
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if frames is not None:
                buf += data
                while len(buf) >= 4:
                    size = int.from_bytes(buf[:4], "big")
                    if len(buf) < 4 + size:
                        break
                    frames.append(buf[: 4 + size])
                    buf = buf[4 + size :]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen_port, broker_port, frames):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)

    def serve():
        while True:
            client, _ = server.accept()
            try:
                upstream = socket.create_connection(("127.0.0.1", broker_port))
            except OSError as e:
                print(f"proxy: broker refused a connection: {e}", file=sys.stderr)
                client.close()
                continue
            threading.Thread(target=pump, args=(client, upstream, frames), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def wait_port(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"broker did not listen on {port}")


def clients(bootstrap):
    run = lambda *a, **k: subprocess.run(a, check=True, timeout=60, **k)
    lines = "".join(f"key{i % 5}:value {i} " + "x" * (i % 50) + "\n" for i in range(200))
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        run("kcat", "-b", bootstrap, "-P", "-t", f"seed-{codec}", "-z", codec, "-K", ":",
            input=lines.encode())
    run("kcat", "-b", bootstrap, "-C", "-t", "seed-gzip", "-e", "-o", "beginning",
        stdout=subprocess.DEVNULL)
    run("kcat", "-b", bootstrap, "-L", stdout=subprocess.DEVNULL)

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("seed-compacted", 2, 1, topic_configs={"cleanup.policy": "compact"})])
    admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "seed-compacted")])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
    for i in range(100):
        producer.send("seed-compacted", key=f"k{i % 7}".encode(), value=f"v{i}".encode(),
                      headers=[("h", b"1")])
    producer.flush()
    consumer = KafkaConsumer("seed-compacted", bootstrap_servers=bootstrap, group_id="seed-group",
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    for _ in consumer:
        pass
    consumer.commit()
    consumer.close()
    admin.delete_topics(["seed-none"])
    admin.close()


# Must match METADATA_FILES in fuzz/src/lib.rs.
METADATA_FILES = [
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "leader-epoch-checkpoint",
    "quorum-state",
]


def pack(partition_dir, names=FILES, flags=b"\x00"):
    out = bytearray(flags)
    for kind, name in enumerate(names):
        # The broker keeps its offset checkpoints in the data directory, beside the
        # partition directories.
        where = os.path.dirname(partition_dir) if name.endswith("offset-checkpoint") else partition_dir
        path = os.path.join(where, name)
        if not os.path.exists(path):
            continue
        data = open(path, "rb").read()[:65535]
        out += bytes([kind]) + len(data).to_bytes(2, "big") + data
    return bytes(out)


def main():
    binary, corpus = sys.argv[1], sys.argv[2]
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        broker_port, proxy_port = free_port(), free_port()
        broker = subprocess.Popen(
            [binary, "serve", "-o", f"listeners=PLAINTEXT://127.0.0.1:{broker_port}",
             "-o", f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy_port}",
             "-o", f"log.dirs={data}", "-o", "http.enable=false"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "broker.log"), "w"))
        try:
            wait_port(broker_port)
            proxy(proxy_port, broker_port, frames)
            clients(f"127.0.0.1:{proxy_port}")
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(timeout=60)
            if broker.returncode != 0:
                sys.stderr.write(open(os.path.join(tmp, "broker.log")).read()[-3000:])
        for frame in frames:
            save(os.path.join(corpus, "request"), frame)
        partitions = 0
        for entry in sorted(os.listdir(data)):
            path = os.path.join(data, entry)
            if not os.path.isdir(path) or "-" not in entry:
                continue
            if entry == "__cluster_metadata-0":
                save(os.path.join(corpus, "metadata_log"), pack(path, METADATA_FILES, b""))
                without_vote = METADATA_FILES[:-1]
                save(os.path.join(corpus, "metadata_log"), pack(path, without_vote, b""))
                continue
            partitions += 1
            for name in os.listdir(path):
                if name.endswith(".log"):
                    save(os.path.join(corpus, "record_batch"), open(os.path.join(path, name), "rb").read())
            save(os.path.join(corpus, "log_files"), pack(path))
    print(f"seed corpus: {len(frames)} request frames, {partitions} partition directories")


if __name__ == "__main__":
    main()
