#!/usr/bin/env python3
"""Drives a real `moldau` binary with kcat, confluent-kafka and kafka-python.

Usage: compat.py PATH_TO_MOLDAU_BINARY

Starts the broker on a free loopback port with a fresh data directory, runs each check,
and prints one line per check plus a closing 'N passed, N failed' line. Exits non-zero
if any check failed.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import RESULTS, check, free_port  # noqa: E402

BINARY = sys.argv[1]


class Broker:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="moldau-compat-")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.dir, "broker.log"), "w")
        self.proc = subprocess.Popen(
            [BINARY, "serve", "-o", f"listeners=PLAINTEXT://{self.addr}",
             "-o", f"log.dirs={self.dir}/data", "-o", "http.listener=127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code

    def dump_log(self):
        with open(os.path.join(self.dir, "broker.log")) as f:
            sys.stdout.write(f.read()[-4000:])


def kcat(broker, *args, stdin=None):
    out = subprocess.run(["kcat", "-b", broker.addr, *args], input=stdin,
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"kcat {args} failed: {out.stderr.decode()}")
    return out.stdout.decode()


@check("kcat: metadata, produce with keys, consume back, offsets")
def kcat_roundtrip(broker):
    lines = [f"k{i}:value {i} ü" for i in range(500)]
    kcat(broker, "-P", "-t", "kcat-topic", "-K:", "-z", "snappy",
         stdin=("\n".join(lines) + "\n").encode())
    meta = kcat(broker, "-L", "-t", "kcat-topic")
    assert "topic \"kcat-topic\" with 1 partitions" in meta, meta
    assert "leader 1" in meta, meta
    out = kcat(broker, "-C", "-t", "kcat-topic", "-e", "-f", "%k|%s|%o\\n")
    got = out.strip().split("\n")
    assert len(got) == 500, len(got)
    for i, line in enumerate(got):
        assert line == f"k{i}|value {i} ü|{i}", line
    tail = kcat(broker, "-C", "-t", "kcat-topic", "-o", "-3", "-e", "-f", "%o\\n").split()
    assert tail == ["497", "498", "499"], tail


@check("confluent-kafka: admin, produce with headers, consume, watermarks, offsets_for_times")
def confluent_roundtrip(broker):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.addr})
    topic = "ck-" + uuid.uuid4().hex[:8]
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    fs[topic].result(timeout=30)
    assert topic in admin.list_topics(timeout=10).topics

    producer = Producer({"bootstrap.servers": broker.addr, "acks": "all",
                         "compression.type": "zstd", "linger.ms": 5})
    delivered = []
    base_ts = 1_700_000_000_000
    for i in range(3000):
        producer.produce(topic, key=f"key-{i}", value=f"value-{i}".encode(),
                         headers=[("i", str(i).encode())], partition=i % 3,
                         timestamp=base_ts + i,
                         on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
    assert producer.flush(30) == 0
    assert all(err is None for err, _, _ in delivered), delivered[:3]
    assert len(delivered) == 3000

    consumer = Consumer({"bootstrap.servers": broker.addr, "group.id": "unused-no-commit",
                         "enable.auto.commit": False, "check.crcs": True})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=10)
    assert (low, high) == (0, 1000), (low, high)
    found = consumer.offsets_for_times([TopicPartition(topic, 0, base_ts + 300)], timeout=10)
    assert found[0].offset == 100, found[0]
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    seen = {}
    deadline = time.time() + 60
    while len(seen) < 3000 and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        i = int(msg.headers()[0][1])
        assert msg.key() == f"key-{i}".encode()
        assert msg.value() == f"value-{i}".encode()
        assert msg.partition() == i % 3 and msg.offset() == i // 3
        seen[i] = True
    consumer.close()
    assert len(seen) == 3000, len(seen)
    fs = admin.delete_topics([topic])
    fs[topic].result(timeout=30)


@check("kafka-python: produce, consume, beginning/end offsets, offsets_for_times")
def kafka_python_roundtrip(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = "kp-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=broker.addr)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    # kafka-python 3 is idempotent by default (InitProducerId, sequence numbers).
    producer = KafkaProducer(bootstrap_servers=broker.addr, acks="all", compression_type="gzip")
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                             partition=i % 2, timestamp_ms=1_700_000_000_000 + i,
                             headers=[("n", str(i).encode())]) for i in range(1000)]
    producer.flush(30)
    offsets = [f.get(timeout=30).offset for f in futures]
    assert offsets == [i // 2 for i in range(1000)], offsets[:6]
    producer.close()

    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer = KafkaConsumer(bootstrap_servers=broker.addr, group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=10000)
    assert consumer.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
    assert consumer.end_offsets(tps) == {tps[0]: 500, tps[1]: 500}
    by_time = consumer.offsets_for_times({tps[1]: 1_700_000_000_000 + 101})
    assert by_time[tps[1]].offset == 50, by_time  # record i=101 is offset 101 // 2
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = {}
    for msg in consumer:
        i = int(msg.value[1:])
        assert msg.key == f"k{i}".encode()
        assert dict(msg.headers)["n"] == str(i).encode()
        got[i] = msg.offset
        if len(got) == 1000:
            break
    consumer.close()
    assert len(got) == 1000, len(got)
    assert all(got[i] == i // 2 for i in got)


@check("kcat -G: two balanced consumers split a topic, commits leave zero lag")
def kcat_balanced(broker):
    from confluent_kafka import ConsumerGroupTopicPartitions, Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "kg-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": broker.addr})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)
    lines = [f"k{i}:m{i}" for i in range(400)]
    kcat(broker, "-P", "-t", topic, "-K:", stdin=("\n".join(lines) + "\n").encode())
    group = "kcat-group"
    # Both join within group.initial.rebalance.delay.ms (3 s), so one generation holds
    # both; each exits at the end of its partitions and commits on the way out.
    procs = [subprocess.Popen(["kcat", "-b", broker.addr, "-G", group, "-o", "beginning",
                               "-e", "-q", "-f", "%s\n", topic],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=90)[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
    assert all(outs), f"a member got no partitions: {[len(o) for o in outs]}"
    got = outs[0] + outs[1]
    assert sorted(got) == sorted(f"m{i}" for i in range(400)), (len(got), len(set(got)))
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(30)
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": "lag-reader"})
    lag = 0
    for tp in committed.topic_partitions:
        high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
        lag += high - tp.offset
    c.close()
    assert len(committed.topic_partitions) == 4, committed.topic_partitions
    assert lag == 0, lag


@check("confluent-kafka: group consumer, describe/list groups, lag, delete group")
def confluent_group(broker):
    from confluent_kafka import ConsumerGroupTopicPartitions, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "cg-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": broker.addr})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": broker.addr})
    for i in range(300):
        producer.produce(topic, key=f"k{i}", value=f"v{i}")
    assert producer.flush(30) == 0
    group = "ck-group-" + uuid.uuid4().hex[:6]
    consumer = Consumer({"bootstrap.servers": broker.addr, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = set()
    deadline = time.time() + 60
    while len(seen) < 200 and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            seen.add(msg.value())
            consumer.commit(message=msg, asynchronous=False)
    assert len(seen) == 200, len(seen)
    desc = admin.describe_consumer_groups([group])[group].result(30)
    assert desc.state.name == "STABLE", desc.state
    assert len(desc.members) == 1, desc.members
    assigned = {tp.partition for tp in desc.members[0].assignment.topic_partitions}
    assert assigned == {0, 1, 2}, assigned
    listed = admin.list_consumer_groups().result(30)
    assert group in {g.group_id for g in listed.valid}, listed.valid
    # Lag as a user sees it: committed offset vs log end offset, per partition.
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(30)
    done = {tp.partition: max(tp.offset, 0) for tp in committed.topic_partitions}
    lag = sum(consumer.get_watermark_offsets(TopicPartition(topic, p))[1] - done.get(p, 0)
              for p in range(3))
    assert lag == 100, (lag, done)
    consumer.close()
    # Busy groups cannot be deleted; this one is empty now.
    admin.delete_consumer_groups([group])[group].result(30)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(30).valid}


@check("kafka-python: group consumer commits, resumes, admin lists and describes")
def kafka_python_group(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = "kpg-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=broker.addr)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=broker.addr)
    for i in range(100):
        producer.send(topic, value=f"v{i}".encode(), partition=i % 2)
    producer.flush(30)
    group = "kp-group"

    def read(limit):
        consumer = KafkaConsumer(topic, bootstrap_servers=broker.addr, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=8000)
        got = []
        for msg in consumer:
            got.append(msg.value)
            if len(got) == limit:
                break
        consumer.commit()
        consumer.close()
        return got

    first = read(60)
    assert len(first) == 60, len(first)
    rest = read(1000)
    assert len(rest) == 40 and not set(first) & set(rest), (len(rest), set(first) & set(rest))
    offsets = admin.list_group_offsets(group)
    assert sum(o.offset for o in offsets[group].values()) == 100, offsets
    groups = {g["group_id"]: g for g in admin.list_groups()}
    assert groups[group]["group_state"] == "Empty", groups
    described = admin.describe_groups([group])[group]
    assert described["protocol_type"] == "consumer", described


@check("confluent-kafka: idempotent producer, then commit and abort transactions by isolation level")
def confluent_transactions(broker):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "cktx-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": broker.addr})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)

    idem = Producer({"bootstrap.servers": broker.addr, "enable.idempotence": True})
    for i in range(500):
        idem.produce(topic, value=f"idem-{i}".encode(), partition=i % 2)
    assert idem.flush(30) == 0

    tx = Producer({"bootstrap.servers": broker.addr, "transactional.id": "ck-" + topic})
    tx.init_transactions(30)
    committed, aborted = set(), set()
    for round_ in range(6):
        tx.begin_transaction()
        values = [f"tx-{round_}-{i}" for i in range(20)]
        for i, v in enumerate(values):
            tx.produce(topic, value=v.encode(), partition=i % 2)
        tx.flush(30)
        if round_ % 2 == 0:
            tx.commit_transaction(30)
            committed.update(values)
        else:
            tx.abort_transaction(30)
            aborted.update(values)

    def read(isolation):
        c = Consumer({"bootstrap.servers": broker.addr, "group.id": "r-" + uuid.uuid4().hex,
                      "isolation.level": isolation, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
        seen, idle = [], time.time()
        while time.time() - idle < 4:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen.append(m.value().decode())
            idle = time.time()
        c.close()
        return seen

    rc = read("read_committed")
    idem_values = {f"idem-{i}" for i in range(500)}
    assert len(rc) == len(set(rc)) == 500 + len(committed), (len(rc), len(set(rc)))
    assert set(rc) == idem_values | committed, "read_committed must drop aborted records"
    ru = read("read_uncommitted")
    assert set(ru) == idem_values | committed | aborted, len(ru)


@check("confluent-kafka: legacy alter_configs replaces a topic's overrides; errors per resource")
def confluent_alter_configs(broker):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.addr})
    topic = "cfg-" + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "1000000",
                                                        "cleanup.policy": "compact"})])[topic].result(30)

    def described():
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        return admin.describe_configs([res])[res].result(30)

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "60000"})
    admin.alter_configs([res])[res].result(30)
    configs = described()
    assert configs["retention.ms"].value == "60000", configs["retention.ms"]
    assert configs["cleanup.policy"].value == "delete", "an override not named returns to its default"
    assert configs["cleanup.policy"].is_default

    def refused(resource):
        try:
            admin.alter_configs([resource])[resource].result(30)
        except KafkaException as e:
            return e.args[0].name()
        raise AssertionError(f"{resource} was accepted")

    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "soon"})
    assert refused(bad) == "INVALID_CONFIG"
    unknown = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"no.such.config": "1"})
    assert refused(unknown) == "INVALID_CONFIG"
    absent = ConfigResource(ConfigResource.Type.TOPIC, "absent-" + topic, set_config={"retention.ms": "1"})
    assert refused(absent) == "UNKNOWN_TOPIC_OR_PART"
    node = str(next(iter(admin.list_topics(timeout=10).brokers)))
    broker_res = ConfigResource(ConfigResource.Type.BROKER, node, set_config={"log.retention.ms": "1"})
    assert refused(broker_res) == "INVALID_REQUEST"
    dry = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"max.message.bytes": "5000"})
    admin.alter_configs([dry], validate_only=True)[dry].result(30)
    configs = described()
    assert configs["max.message.bytes"].is_default, "validate_only wrote nothing"
    assert configs["retention.ms"].value == "60000", "refused alterations changed nothing"


@check("confluent-kafka, kafka-python: ACL admin calls answer SECURITY_DISABLED (no authorizer), nothing stored")
def confluent_acls_disabled(broker):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                       AclPermissionType, AdminClient, ResourcePatternType,
                                       ResourceType)

    admin = AdminClient({"bootstrap.servers": broker.addr})

    def error_of(future):
        try:
            future.result(30)
        except KafkaException as e:
            return e.args[0].name()
        raise AssertionError("accepted")

    any_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    # librdkafka 2.16 turns DescribeAcls' SECURITY_DISABLED into an empty list;
    # kafka-python (like Kafka's own kafka-acls.sh) reports the error.
    assert admin.describe_acls(any_filter).result(30) == []
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, KafkaAdminClient,
                             ResourcePatternFilter)
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import SecurityDisabledError
    kadmin = KafkaAdminClient(bootstrap_servers=broker.addr)
    try:
        kadmin.describe_acls(ACLFilter(
            principal=None, host="*", operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KResourceType.ANY, None,
                                                   ACLResourcePatternType.ANY)))
        raise AssertionError("kafka-python: DescribeAcls accepted")
    except SecurityDisabledError:
        pass
    finally:
        kadmin.close()
    binding = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    assert error_of(admin.create_acls([binding])[binding]) == "SECURITY_DISABLED"
    assert error_of(admin.delete_acls([any_filter])[any_filter]) == "SECURITY_DISABLED"


def main():
    if shutil.which("kcat") is None:
        print("kcat is not installed (run .ci/run, which installs it)")
        sys.exit(2)
    broker = Broker()
    try:
        for fn in (kcat_roundtrip, confluent_roundtrip, kafka_python_roundtrip, kcat_balanced,
                   confluent_group, kafka_python_group, confluent_transactions,
                   confluent_alter_configs, confluent_acls_disabled):
            fn(broker)
    finally:
        code = broker.stop()
        RESULTS.append(("broker exits 0 on SIGTERM", code == 0))
        print(("ok    " if code == 0 else "FAIL  ") + f"broker exits 0 on SIGTERM (exit {code})")
        if not all(ok for _, ok in RESULTS):
            broker.dump_log()
        shutil.rmtree(broker.dir, ignore_errors=True)
    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"compat: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
