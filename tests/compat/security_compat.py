#!/usr/bin/env python3
"""Drives a real `moldau` binary over TLS and SASL with kcat, confluent-kafka and
kafka-python, configured exactly as they are configured for Apache Kafka.

Usage: security_compat.py PATH_TO_MOLDAU_BINARY

Makes a throwaway CA with the openssl command (server certificate for 127.0.0.1, a client
certificate), starts one broker with PLAINTEXT, SSL (client
certificates requested), SASL_PLAINTEXT and SASL_SSL listeners and
connections.max.reauth.ms, creates SCRAM users through confluent-kafka's
alter_user_scram_credentials, and runs each check; then a broker with an ACL authorizer,
and one serving OAUTHBEARER with a key set the script makes (tokens are ES256 JWTs it
signs with the cryptography package). Prints one line per check and a
closing 'N passed, N failed' line; exits non-zero if any failed.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Broker, check, free_port, summary  # noqa: E402

BINARY = sys.argv[1]
PKI = tempfile.mkdtemp(prefix="moldau-pki-")
PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" user_admin="admin-secret" '
              'user_alice="alice-secret";')


def pki_path(name):
    return os.path.join(PKI, name)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(name, cn):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", pki_path(f"{name}.key"), "-out", pki_path(f"{name}.pem"),
            "-subj", f"/CN={cn}")


def make_leaf(name, ca, subject, ext):
    ext_file = pki_path(f"{name}.ext")
    with open(ext_file, "w") as f:
        f.write(ext + "\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", pki_path(f"{name}.key"),
            "-out", pki_path(f"{name}.csr"), "-subj", subject)
    openssl("x509", "-req", "-in", pki_path(f"{name}.csr"), "-CA", pki_path(f"{ca}.pem"),
            "-CAkey", pki_path(f"{ca}.key"), "-CAcreateserial", "-days", "2",
            "-out", pki_path(f"{name}.pem"), "-extfile", ext_file)


def topic(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def confluent_settings(broker, kind, user=None, password=None, mechanism=None):
    ca = pki_path("ca.pem")
    if kind == "SSL":
        return {"bootstrap.servers": broker.addr("SSL"), "security.protocol": "SSL",
                "ssl.ca.location": ca}
    if kind == "MTLS":
        return {"bootstrap.servers": broker.addr("SSL"), "security.protocol": "SSL",
                "ssl.ca.location": ca, "ssl.certificate.location": pki_path("alice.pem"),
                "ssl.key.location": pki_path("alice.key")}
    listener = "SASL_SSL" if kind == "SASL_SSL" else "SASL_PLAINTEXT"
    conf = {"bootstrap.servers": broker.addr(listener), "security.protocol": listener,
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    if kind == "SASL_SSL":
        conf["ssl.ca.location"] = ca
    return conf


def kafka_python_settings(broker, kind, user=None, password=None, mechanism=None):
    ca = pki_path("ca.pem")
    if kind == "SSL":
        return dict(bootstrap_servers=broker.addr("SSL"), security_protocol="SSL",
                    ssl_cafile=ca)
    if kind == "MTLS":
        return dict(bootstrap_servers=broker.addr("SSL"), security_protocol="SSL",
                    ssl_cafile=ca, ssl_certfile=pki_path("alice.pem"),
                    ssl_keyfile=pki_path("alice.key"))
    listener = "SASL_SSL" if kind == "SASL_SSL" else "SASL_PLAINTEXT"
    conf = dict(bootstrap_servers=broker.addr(listener), security_protocol=listener,
                sasl_mechanism=mechanism, sasl_plain_username=user,
                sasl_plain_password=password)
    if kind == "SASL_SSL":
        conf["ssl_cafile"] = ca
    return conf


CASES = [
    ("SSL", None, None, None),
    ("MTLS", None, None, None),
    ("SASL_PLAINTEXT", "alice", "alice-secret", "PLAIN"),
    ("SASL_SSL", "admin", "admin-secret", "PLAIN"),
    ("SASL_SSL", "carol", "carol-pw", "SCRAM-SHA-256"),
    ("SASL_SSL", "carol", "carol-pw", "SCRAM-SHA-512"),
]


def confluent_round_trip(conf, name, label):
    """Produces 20 records to `name` with acks=all and reads them back in a group, with
    confluent-kafka settings `conf`; `label` names the case in assertion messages."""
    from confluent_kafka import Consumer, Producer
    producer = Producer({**conf, "acks": "all"})
    delivered = []
    for i in range(20):
        producer.produce(name, f"v{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    assert producer.flush(30) == 0, label
    assert delivered == [None] * 20, (label, delivered[:3])
    consumer = Consumer({**conf, "group.id": name, "auto.offset.reset": "earliest"})
    consumer.subscribe([name])
    got = []
    deadline = time.time() + 60
    while len(got) < 20 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    consumer.close()
    assert got == [f"v{i}" for i in range(20)], (label, got)


@check("confluent-kafka: SCRAM users through alter/describe_user_scram_credentials")
def confluent_scram_users(broker):
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    admin = AdminClient({"bootstrap.servers": broker.addr()})
    ups = [UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"carol-pw"),
           UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"carol-pw")]
    for _, f in admin.alter_user_scram_credentials(ups).items():
        assert f.result(timeout=30) is None
    described = admin.describe_user_scram_credentials(["carol"])["carol"].result(timeout=30)
    infos = sorted((str(i.mechanism), i.iterations) for i in described.scram_credential_infos)
    assert infos == [("ScramMechanism.SCRAM_SHA_256", 8192), ("ScramMechanism.SCRAM_SHA_512", 4096)], infos


@check("confluent-kafka: produce and consume over SSL, mTLS, SASL PLAIN, SCRAM-SHA-256/512")
def confluent_every_protocol(broker):
    for kind, user, password, mechanism in CASES:
        conf = confluent_settings(broker, kind, user, password, mechanism)
        name = topic(f"ck-{kind}-{mechanism or 'tls'}".lower())
        confluent_round_trip(conf, name, (kind, mechanism))


@check("kafka-python: produce and consume over SSL, mTLS, SASL PLAIN, SCRAM-SHA-256/512")
def kafka_python_every_protocol(broker):
    from kafka import KafkaConsumer, KafkaProducer
    for kind, user, password, mechanism in CASES:
        conf = kafka_python_settings(broker, kind, user, password, mechanism)
        name = topic(f"kp-{kind}-{mechanism or 'tls'}".lower())
        producer = KafkaProducer(acks="all", **conf)
        for i in range(20):
            producer.send(name, f"v{i}".encode()).get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(name, group_id=name, auto_offset_reset="earliest",
                                 consumer_timeout_ms=15000, **conf)
        got = []
        for m in consumer:
            got.append(m.value.decode())
            if len(got) == 20:
                break
        consumer.close()
        assert got == [f"v{i}" for i in range(20)], (kind, mechanism, got)


def kcat(args, stdin=None):
    out = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=60)
    return out.returncode, out.stdout.decode(), out.stderr.decode()


@check("kcat: SCRAM-SHA-512 over SASL_SSL and mTLS, produce and consume")
def kcat_secure(broker):
    scram = ["-b", broker.addr("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
             "-X", f"ssl.ca.location={pki_path('ca.pem')}", "-X", "sasl.mechanism=SCRAM-SHA-512",
             "-X", "sasl.username=carol", "-X", "sasl.password=carol-pw"]
    mtls = ["-b", broker.addr("SSL"), "-X", "security.protocol=SSL",
            "-X", f"ssl.ca.location={pki_path('ca.pem')}",
            "-X", f"ssl.certificate.location={pki_path('alice.pem')}",
            "-X", f"ssl.key.location={pki_path('alice.key')}"]
    for settings in (scram, mtls):
        name = topic("kcat-sec")
        code, _, err = kcat([*settings, "-P", "-t", name], stdin=b"one\ntwo\nthree\n")
        assert code == 0, err
        code, out, err = kcat([*settings, "-C", "-t", name, "-e", "-o", "beginning"])
        assert code == 0, err
        assert out.split() == ["one", "two", "three"], out


@check("refused: wrong passwords, unknown users, plaintext on the TLS port")
def refusals(broker):
    from confluent_kafka import KafkaError, Producer
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as PyKafkaError

    def confluent_auth_error(conf):
        errors = []
        p = Producer({**conf, "error_cb": lambda e: errors.append(e), "log_level": 0})
        p.produce(topic("refused"), b"x")
        deadline = time.time() + 20
        while not errors and time.time() < deadline:
            p.poll(0.2)
        p.purge()
        return errors

    for kind, user, password, mechanism in [
        ("SASL_PLAINTEXT", "alice", "wrong", "PLAIN"),
        ("SASL_PLAINTEXT", "mallory", "alice-secret", "PLAIN"),
        ("SASL_SSL", "carol", "wrong", "SCRAM-SHA-256"),
        ("SASL_SSL", "nobody", "carol-pw", "SCRAM-SHA-512"),
    ]:
        errors = confluent_auth_error(confluent_settings(broker, kind, user, password, mechanism))
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), (user, mechanism, errors)
    # kafka-python with a wrong SCRAM password: authentication fails, as with Kafka.
    try:
        KafkaProducer(**kafka_python_settings(broker, "SASL_SSL", "carol", "nope", "SCRAM-SHA-256"),
                      max_block_ms=5000, bootstrap_timeout_ms=5000).send(topic("refused"), b"x").get(timeout=15)
        raise AssertionError("kafka-python authenticated with a wrong password")
    except PyKafkaError:
        pass
    # A plaintext client on the TLS port gets nowhere.
    try:
        KafkaProducer(bootstrap_servers=broker.addr("SSL"), max_block_ms=5000,
                      bootstrap_timeout_ms=5000).send(topic("refused"), b"x").get(timeout=10)
        raise AssertionError("a plaintext client was served on the TLS port")
    except PyKafkaError:
        pass
    log = broker.log_text()
    assert "SASL authentication failed" in log and "TLS handshake failed" in log, log[-2000:]


@check("re-authentication (KIP-368): clients keep producing across several session lifetimes")
def reauthentication(broker):
    from confluent_kafka import Producer
    from kafka import KafkaProducer
    ck = Producer({**confluent_settings(broker, "SASL_SSL", "carol", "carol-pw", "SCRAM-SHA-256"), "acks": "all"})
    kp = KafkaProducer(acks="all", **kafka_python_settings(broker, "SASL_PLAINTEXT", "alice", "alice-secret", "PLAIN"))
    name = topic("reauth")
    delivered = []
    started = time.time()
    while time.time() - started < 5:
        ck.produce(name, b"ck", on_delivery=lambda e, m: delivered.append(e))
        assert ck.flush(10) == 0
        kp.send(name, b"kp").get(timeout=10)
        time.sleep(0.25)
    kp.close()
    assert delivered and all(e is None for e in delivered), delivered[:3]
    log = broker.log_text()
    for user in ("carol", "alice"):
        assert any("re-authenticated" in line and f"user={user}" in line for line in log.splitlines()), \
            f"{user} never re-authenticated"


ACL_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            'user_admin="admin-pw" user_alice="alice-pw";')


def acl_settings(broker, user):
    return {"bootstrap.servers": broker.addr("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": f"{user}-pw"}


@check("ACLs: confluent-kafka create/describe/delete_acls as a super user; kafka-python and kcat refused, then allowed")
def acls(broker):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                       AdminClient, NewTopic, ResourcePatternType, ResourceType)
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    admin = AdminClient(acl_settings(broker, "admin"))
    admin.create_topics([NewTopic("audited", 1, 1)])["audited"].result(timeout=30)
    # alice has no ACL: kafka-python and kcat are refused with Kafka's error.
    alice = {"bootstrap_servers": broker.addr("SASL_PLAINTEXT"), "security_protocol": "SASL_PLAINTEXT",
             "sasl_mechanism": "PLAIN", "sasl_plain_username": "alice",
             "sasl_plain_password": "alice-pw", "max_block_ms": 10000}
    # Not idempotent: an idempotent producer would already be refused its producer id
    # (CLUSTER_AUTHORIZATION_FAILED: no WRITE on any topic, KIP-679).
    kp = KafkaProducer(enable_idempotence=False, **alice)
    try:
        kp.send("audited", b"x").get(timeout=15)
        raise AssertionError("alice wrote without an ACL")
    except TopicAuthorizationFailedError:
        pass
    code, _, err = kcat(["-b", broker.addr("SASL_PLAINTEXT"), "-X", "security.protocol=SASL_PLAINTEXT",
                         "-X", "sasl.mechanism=PLAIN", "-X", "sasl.username=alice", "-X", "sasl.password=alice-pw",
                         "-P", "-t", "audited"], stdin=b"x\n")
    assert code != 0 and "authorization failed" in err.lower(), (code, err)
    # A prefixed WRITE ACL lets her in.
    binding = AclBinding(ResourceType.TOPIC, "aud", ResourcePatternType.PREFIXED, "User:alice", "*",
                         AclOperation.WRITE, AclPermissionType.ALLOW)
    for _, f in admin.create_acls([binding]).items():
        assert f.result(timeout=30) is None
    listed = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                                  AclOperation.ANY, AclPermissionType.ANY)).result(timeout=30)
    assert [b.name for b in listed] == ["aud"], listed
    kp.close()
    # Now idempotent: WRITE on some topic is enough for a producer id (KIP-679).
    kp = KafkaProducer(enable_idempotence=True, **alice)
    kp.send("audited", b"y").get(timeout=15)
    kp.close()
    # alice may not administer ACLs. (librdkafka turns DescribeAcls' top-level error,
    # CLUSTER_AUTHORIZATION_FAILED here, into an empty list; the Rust test checks the code.)
    alice_admin = AdminClient(acl_settings(broker, "alice"))
    try:
        seen = alice_admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                                          AclOperation.ANY, AclPermissionType.ANY)).result(timeout=30)
        assert seen == [], f"alice listed ACLs: {seen}"
    except KafkaException as e:
        assert "CLUSTER_AUTHORIZATION_FAILED" in str(e), e
    refused = alice_admin.create_acls([AclBinding(ResourceType.TOPIC, "x", ResourcePatternType.LITERAL,
                                                  "User:alice", "*", AclOperation.ALL, AclPermissionType.ALLOW)])
    for _, f in refused.items():
        try:
            f.result(timeout=30)
            raise AssertionError("alice created an ACL")
        except KafkaException as e:
            assert "CLUSTER_AUTHORIZATION_FAILED" in str(e), e
    deleted = admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, "aud", ResourcePatternType.PREFIXED, None,
                                                  None, AclOperation.ANY, AclPermissionType.ANY)])
    for _, f in deleted.items():
        assert len(f.result(timeout=30)) == 1
    p = Producer({**acl_settings(broker, "alice"), "message.timeout.ms": 10000})
    errors = []
    p.produce("audited", b"z", on_delivery=lambda e, m: errors.append(e))
    p.flush(20)
    assert errors and errors[0] is not None and "authorization" in str(errors[0]).lower(), errors
    assert "authorization denied" in broker.log_text()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwtSigner:
    """An ES256 key: its JWK for the broker's key set, and tokens signed with it."""

    def __init__(self, kid):
        from cryptography.hazmat.primitives.asymmetric import ec
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())
        nums = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                    "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}

    def token(self, sub, exp, aud="moldau-compat"):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        header = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": self.kid}).encode())
        claims = b64url(json.dumps({"sub": sub, "exp": exp, "iat": int(time.time()), "aud": aud}).encode())
        r, s = decode_dss_signature(self.key.sign(f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256())))
        return f"{header}.{claims}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def kafka_python_token_provider(token):
    try:
        from kafka.net.sasl.oauth import AbstractTokenProvider  # kafka-python 3
    except ImportError:
        from kafka.sasl.oauth import AbstractTokenProvider  # kafka-python 2.1+

    class Provider(AbstractTokenProvider):
        def token(self):
            return token

    return Provider()


@check("OAUTHBEARER: confluent-kafka and kafka-python produce and consume with signed JWTs; "
       "expired, foreign and wrong-audience tokens are refused")
def oauthbearer(broker, signer, stranger):
    from confluent_kafka import KafkaError, Producer
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError as PyKafkaError
    addr = broker.addr("SASL_PLAINTEXT")
    exp = int(time.time()) + 3600

    def confluent_conf(token, expiry):
        return {"bootstrap.servers": addr, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "OAUTHBEARER", "oauth_cb": lambda _config: (token, float(expiry))}

    name = topic("oauth-ck")
    conf = confluent_conf(signer.token("alice", exp), exp)
    confluent_round_trip(conf, name, "OAUTHBEARER")

    name = topic("oauth-kp")
    kp = dict(bootstrap_servers=addr, security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
              sasl_oauth_token_provider=kafka_python_token_provider(signer.token("bob", exp)))
    producer = KafkaProducer(acks="all", **kp)
    for i in range(20):
        producer.send(name, f"v{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(name, group_id=name, auto_offset_reset="earliest", consumer_timeout_ms=15000, **kp)
    got = [m.value.decode() for _, m in zip(range(20), consumer)]
    consumer.close()
    assert got == [f"v{i}" for i in range(20)], got

    for what, token, expiry in [
        ("expired", signer.token("alice", int(time.time()) - 3600), time.time() + 60),
        ("signed by a foreign key", stranger.token("alice", exp), exp),
        ("for another audience", signer.token("alice", exp, aud="elsewhere"), exp),
    ]:
        errors = []
        p = Producer({**confluent_conf(token, expiry), "error_cb": lambda e: errors.append(e), "log_level": 0})
        p.produce(topic("refused"), b"x")
        deadline = time.time() + 20
        while not errors and time.time() < deadline:
            p.poll(0.2)
        p.purge()
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), (what, errors)
    try:
        bad = dict(kp, sasl_oauth_token_provider=kafka_python_token_provider(stranger.token("bob", exp)))
        KafkaProducer(max_block_ms=5000, bootstrap_timeout_ms=5000, **bad).send(topic("refused"), b"x").get(timeout=15)
        raise AssertionError("kafka-python authenticated with a token signed by a foreign key")
    except PyKafkaError:
        pass
    assert "token refused" in broker.log_text()


def main():
    make_ca("ca", "Moldau compat CA")
    make_leaf("server", "ca", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    make_leaf("alice", "ca", "/CN=alice/OU=eng/O=Acme", "extendedKeyUsage=clientAuth")
    with open(pki_path("server-keystore.pem"), "w") as f:
        f.write(open(pki_path("server.key")).read() + open(pki_path("server.pem")).read())
    ports = {name: free_port() for name in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
    broker = Broker(BINARY, ports, props=[
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={pki_path('server-keystore.pem')}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={pki_path('ca.pem')}",
        "listener.name.ssl.ssl.client.auth=requested",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={PLAIN_JAAS}",
        f"listener.name.sasl_ssl.plain.sasl.jaas.config={PLAIN_JAAS}",
        "connections.max.reauth.ms=2000",
    ], env={"MOLDAU_LOG": "info,moldau_server::network=debug"})
    try:
        confluent_scram_users(broker)
        confluent_every_protocol(broker)
        kafka_python_every_protocol(broker)
        kcat_secure(broker)
        refusals(broker)
        reauthentication(broker)
    finally:
        code = broker.stop()
        if code != 0:
            print(f"FAIL  broker exited with {code}")
            broker.dump_log()
            sys.exit(1)
    acl_broker = Broker(BINARY, {"SASL_PLAINTEXT": free_port()}, props=[
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={ACL_JAAS}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:admin",
        "http.enable=false",
    ])
    try:
        acls(acl_broker)
    finally:
        if acl_broker.stop() != 0:
            print("FAIL  the ACL broker did not stop cleanly")
            acl_broker.dump_log()
            sys.exit(1)
    signer, stranger = JwtSigner("compat"), JwtSigner("compat")
    with open(pki_path("jwks.json"), "w") as f:
        json.dump({"keys": [signer.jwk]}, f)
    oauth_broker = Broker(BINARY, {"SASL_PLAINTEXT": free_port()}, props=[
        "sasl.enabled.mechanisms=OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        f"sasl.oauthbearer.jwks.endpoint.url=file://{pki_path('jwks.json')}",
        "sasl.oauthbearer.expected.audience=moldau-compat",
        "http.enable=false",
    ])
    try:
        oauthbearer(oauth_broker, signer, stranger)
    finally:
        if oauth_broker.stop() != 0:
            print("FAIL  the OAUTHBEARER broker did not stop cleanly")
            oauth_broker.dump_log()
            sys.exit(1)
    failed = summary()
    if failed:
        broker.dump_log()
        acl_broker.dump_log()
        oauth_broker.dump_log()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
