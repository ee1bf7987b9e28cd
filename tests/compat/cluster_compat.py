#!/usr/bin/env python3
"""Drives a 3-node Moldau cluster (real `moldau` processes on loopback, every node broker
and controller) with kafka-python, confluent-kafka (librdkafka) and kcat, while nodes
are killed with SIGKILL and restarted.

Usage: cluster_compat.py PATH_TO_MOLDAU_BINARY

Prints one line per check and a closing 'N passed, N failed' line; exits non-zero if
any check failed. Every check asserts on what the clients saw: acknowledged records
are read back at their offsets, a transactional loop's output holds every input exactly
once, a consumer group goes on after its coordinator's broker died.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import RESULTS  # noqa: E402
from harness import check as record_check  # noqa: E402

BINARY = sys.argv[1]
DEADLINE = 120  # seconds for anything the cluster must get done


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_until(what, fn, deadline=DEADLINE):
    end = time.time() + deadline
    last = None
    while time.time() < end:
        try:
            got = fn()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - the cluster may be between states
            last = e
            if os.environ.get("MOLDAU_TEST_VERBOSE"):
                print(f"      waiting for {what}: {e!r}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else ""))


class Cluster:
    def __init__(self, nodes=3):
        self.dir = tempfile.mkdtemp(prefix="moldau-cluster-compat-")
        ports = free_ports(2 * nodes)
        self.kafka = [ports[2 * i] for i in range(nodes)]
        self.controller = [ports[2 * i + 1] for i in range(nodes)]
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{self.controller[i]}" for i in range(nodes))
        self.procs = [None] * nodes
        for i in range(nodes):
            self.start(i)
        for i in range(nodes):
            self.wait_serving(i)

    def addr(self, i):
        return f"127.0.0.1:{self.kafka[i]}"

    def bootstrap(self):
        return ",".join(self.addr(i) for i in range(len(self.procs)) if self.procs[i] is not None)

    def start(self, i):
        log = open(os.path.join(self.dir, f"node-{i + 1}.log"), "a")
        self.procs[i] = subprocess.Popen(
            [BINARY, "serve",
             "-o", "process.roles=broker,controller",
             "-o", f"node.id={i + 1}",
             "-o", f"controller.quorum.voters={self.voters}",
             "-o", f"listeners=PLAINTEXT://{self.addr(i)},CONTROLLER://127.0.0.1:{self.controller[i]}",
             "-o", "controller.listener.names=CONTROLLER",
             "-o", f"log.dirs={self.dir}/node-{i + 1}",
             "-o", "http.listener=127.0.0.1:0",
             "-o", "group.initial.rebalance.delay.ms=0",
             "-o", "offsets.topic.num.partitions=4",
             "-o", "transaction.state.log.num.partitions=4"],
            stdout=subprocess.DEVNULL, stderr=log,
            env=dict(os.environ, MOLDAU_LOG="info,openraft=warn"))

    def wait_serving(self, i):
        def answered():
            # A broker serves Kafka requests once the controller unfenced it.
            out = subprocess.run(["kcat", "-b", self.addr(i), "-L", "-m", "2"],
                                 capture_output=True, timeout=10)
            return out.returncode == 0 and b"brokers" in out.stdout
        wait_until(f"node {i + 1} serving", answered)

    def kill9(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.procs[i] = None

    def restart(self, i):
        self.start(i)
        self.wait_serving(i)

    def ensure_running(self):
        """Restarts nodes an earlier (failed) check left dead, so checks stay independent."""
        for i, p in enumerate(self.procs):
            if p is None:
                self.restart(i)

    def stop_all(self):
        codes = []
        for p in self.procs:
            if p is not None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p is not None:
                codes.append(p.wait(timeout=60))
        return codes

    def dump_logs(self):
        for i in range(len(self.procs)):
            path = os.path.join(self.dir, f"node-{i + 1}.log")
            with open(path) as f:
                print(f"---- node {i + 1} ----\n" + f.read()[-3000:])


def check(name):
    """A check that first restarts any node a previous check left stopped."""
    return record_check(name, prepare=lambda cluster: cluster.ensure_running())


def java_hash(s):
    """Java's String.hashCode, as Kafka places groups and transactional ids."""
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def leader_of(bootstrap, topic, partition):
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    leader = md.topics[topic].partitions[partition].leader
    assert leader >= 0, f"{topic}-{partition} has no leader"
    return leader


def coordinator_node(bootstrap, internal_topic, key):
    partitions = 4
    p = (java_hash(key) & 0x7FFFFFFF) % partitions
    return wait_until(f"a leader of {internal_topic}-{p}",
                      lambda: leader_of(bootstrap, internal_topic, p))


def read_kcat(cluster, topic, isolation=None):
    args = ["kcat", "-C", "-b", cluster.bootstrap(), "-t", topic, "-o", "beginning", "-e",
            "-q", "-f", "%p %o %s\n"]
    if isolation:
        args += ["-X", f"isolation.level={isolation}"]
    out = subprocess.run(args, capture_output=True, timeout=60, check=True).stdout.decode()
    rows = {}
    for line in out.splitlines():
        p, o, v = line.split(" ", 2)
        rows[(int(p), int(o))] = v
    return rows


@check("kafka-python: acks=all to an RF=3 topic across a leader's kill -9; kcat reads every acknowledged record at its offset")
def kafka_python_failover(cluster):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    admin.create_topics([NewTopic("py-rf3", 3, 3, topic_configs={"min.insync.replicas": "2"})])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all", retries=20,
                             max_in_flight_requests_per_connection=1, request_timeout_ms=15000,
                             retry_backoff_ms=200, metadata_max_age_ms=1000)
    acked = {}
    victim = wait_until("a leader", lambda: leader_of(cluster.bootstrap(), "py-rf3", 0))
    for i in range(3000):
        if i == 1000:
            producer.flush()
            cluster.kill9(victim - 1)
        fut = producer.send("py-rf3", value=f"v{i}".encode(), partition=i % 3)
        fut.add_callback(lambda md, i=i: acked.__setitem__(i, (md.partition, md.offset)))
    producer.flush(timeout=DEADLINE)
    producer.close()
    assert len(acked) == 3000, f"{3000 - len(acked)} records not acknowledged"
    cluster.restart(victim - 1)
    rows = read_kcat(cluster, "py-rf3")
    for i, (p, o) in acked.items():
        assert rows.get((p, o)) == f"v{i}", f"acknowledged v{i} at {p}/{o} not read back: {rows.get((p, o))}"


@check("kafka-python: a consumer group commits, loses its coordinator's broker (kill -9), and resumes with nothing lost")
def kafka_python_group_failover(cluster):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    admin.create_topics([NewTopic("py-group", 2, 3)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all")
    for i in range(400):
        producer.send("py-group", value=f"g{i}".encode(), partition=i % 2)
    producer.flush()
    producer.close()
    group = "py-failover-group"

    def consumer():
        return KafkaConsumer("py-group", bootstrap_servers=cluster.bootstrap(), group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=60000, metadata_max_age_ms=1000,
                             session_timeout_ms=10000, heartbeat_interval_ms=1000)
    seen = []
    c = consumer()
    for msg in c:
        seen.append(msg.value.decode())
        if len(seen) == 150:
            c.commit()
            break
    c.close()
    victim = coordinator_node(cluster.bootstrap(), "__consumer_offsets", group)
    cluster.kill9(victim - 1)
    killed_at = time.time()
    committed = list(seen)
    # kafka-python raises connection errors out of the iteration while its coordinator
    # is unreachable; an application retries, resuming from the committed offsets.
    for attempt in range(10):
        seen = list(committed)
        try:
            c = wait_until("a consumer after the coordinator died", consumer)
            for msg in c:
                if len(seen) == len(committed):
                    print(f"      first record {time.time() - killed_at:.1f}s after the coordinator's kill -9")
                seen.append(msg.value.decode())
                if len(seen) >= 400:
                    break
            c.commit()
            c.close()
            break
        except Exception as e:  # noqa: BLE001 - retried as an application would
            print(f"      consumer attempt {attempt + 1} failed: {e!r}")
            time.sleep(1)
    cluster.restart(victim - 1)
    assert set(seen) == {f"g{i}" for i in range(400)}, f"missing {len({f'g{i}' for i in range(400)} - set(seen))}"
    assert len(seen) == 400, f"{len(seen) - 400} records read twice after the committed offsets"


@check("confluent-kafka: a transactional consume-transform-produce loop survives its transaction coordinator's kill -9; read_committed output holds every input once")
def confluent_txn_failover(cluster):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    for f in admin.create_topics([NewTopic("txn-in", 2, 3), NewTopic("txn-out", 2, 3)]).values():
        f.result()
    p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
    for i in range(300):
        p.produce("txn-in", value=f"in{i}".encode(), partition=i % 2)
    p.flush(30)
    txn_id = "moldau-cluster-txn"
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "transactional.id": txn_id,
                         "transaction.timeout.ms": 60000})
    producer.init_transactions(60)
    # The kill below takes the transaction coordinator. The group is chosen so that its
    # coordinator is another broker: when both die at once, librdkafka 2.16's
    # send_offsets_to_transaction waits on the dead group coordinator for good (its
    # timeout not honoured, no new FindCoordinator sent, while every broker answers
    # FindCoordinator with the new one); seen here, and a client matter.
    txn_coordinator = coordinator_node(cluster.bootstrap(), "__transaction_state", txn_id)

    def offsets_topic():
        # A FindCoordinator (which describing a group sends) creates the topic.
        for f in admin.describe_consumer_groups(["txn-loop-0"]).values():
            try:
                f.result(10)
            except KafkaException:
                pass
        return leader_of(cluster.bootstrap(), "__consumer_offsets", 0)
    wait_until("__consumer_offsets", offsets_topic)
    group = next(g for g in (f"txn-loop-{i}" for i in range(64))
                 if coordinator_node(cluster.bootstrap(), "__consumer_offsets", g) != txn_coordinator)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe(["txn-in"])
    done = 0
    killed = None
    transactions = 0
    idle = time.time()
    while done < 300 and time.time() - idle < 60:
        msgs = consumer.consume(20, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        idle = time.time()
        try:
            producer.begin_transaction()
            for m in msgs:
                producer.produce("txn-out", value=b"out-" + m.value(), partition=m.partition())
            offsets = [TopicPartition(m.topic(), m.partition(), m.offset() + 1) for m in msgs]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 60)
            producer.commit_transaction(60)
            done += len(msgs)
            transactions += 1
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                producer.abort_transaction(60)
            elif not err.retriable():
                raise
            # Rewind to the committed offsets and redo the batch.
            committed = consumer.committed([TopicPartition("txn-in", 0), TopicPartition("txn-in", 1)], 30)
            for tp in committed:
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
        if transactions == 3 and killed is None:
            killed = coordinator_node(cluster.bootstrap(), "__transaction_state", txn_id)
            cluster.kill9(killed - 1)
    consumer.close()
    assert done == 300, f"the loop transformed {done} of 300 inputs"
    assert killed is not None
    cluster.restart(killed - 1)
    rows = read_kcat(cluster, "txn-out", isolation="read_committed")
    values = sorted(rows.values())
    assert len(values) == len(set(values)) == 300, f"{len(values)} outputs, {len(set(values))} distinct"
    assert set(values) == {f"out-in{i}" for i in range(300)}


@check("kcat: the active controller is killed; CreateTopics works again, and kcat then produces with acks=all to a new topic")
def kcat_controller_failover(cluster):
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka.admin import KafkaAdminClient
    kadmin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    controller = kadmin.describe_cluster()["controller_id"]
    kadmin.close()
    cluster.kill9(controller - 1)
    started = time.time()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})

    def created():
        futures = admin.create_topics([NewTopic(f"after-{int(time.time() * 1000)}", 1, 2)],
                                      operation_timeout=10, request_timeout=15)
        for f in futures.values():
            f.result()
        return True
    wait_until("CreateTopics after the controller died", created)
    elapsed = time.time() - started
    lines = "\n".join(f"k{i}" for i in range(500)) + "\n"
    out = subprocess.run(["kcat", "-P", "-b", cluster.bootstrap(), "-t", "kcat-after", "-X", "acks=all",
                          "-X", "topic.metadata.refresh.interval.ms=1000"],
                         input=lines.encode(), capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cluster.restart(controller - 1)
    rows = read_kcat(cluster, "kcat-after")
    assert sorted(rows.values()) == sorted(f"k{i}" for i in range(500))
    print(f"      CreateTopics answered {elapsed:.1f}s after the controller's kill -9")


def main():
    for tool in ("kcat",):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (run .ci/run, which installs it)")
            sys.exit(2)
    cluster = Cluster()
    try:
        only = os.environ.get("MOLDAU_TEST_ONLY")
        for fn in (kafka_python_failover, kafka_python_group_failover, confluent_txn_failover,
                   kcat_controller_failover):
            if only is None or only in fn.__name__:
                fn(cluster)
    finally:
        codes = cluster.stop_all()
        ok = all(c == 0 for c in codes)
        RESULTS.append(("every node exits 0 on SIGTERM", ok))
        print(("ok    " if ok else "FAIL  ") + f"every node exits 0 on SIGTERM (exits {codes})")
        if not all(ok for _, ok in RESULTS):
            cluster.dump_logs()
        if os.environ.get("MOLDAU_TEST_KEEP"):
            print(f"kept {cluster.dir}")
        else:
            shutil.rmtree(cluster.dir, ignore_errors=True)
    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"cluster compat: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
