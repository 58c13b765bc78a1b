"""Client settings and record keys, without a broker."""

from __future__ import annotations

from pathlib import Path

from fraudstream.config import KafkaSettings, load_settings
from fraudstream.kafka.clients import client_config, java_properties
from fraudstream.kafka.producer import user_key


def test_plaintext_by_default():
    k = KafkaSettings()
    assert java_properties(k) == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "PLAINTEXT"}
    conf = client_config(k)
    assert conf["bootstrap.servers"] == "127.0.0.1:9092" and "sasl.mechanism" not in conf


def test_managed_kafka_settings_map_to_both_clients():
    settings = load_settings(
        flags={
            "kafka.bootstrap_servers": "b1.example:9096,b2.example:9096",
            "kafka.security_protocol": "SASL_SSL",
            "kafka.sasl_mechanism": "SCRAM-SHA-512",
            "kafka.sasl_username": "fraud",
            "kafka.sasl_password": 'p"w',
            "kafka.ssl_ca_location": "/etc/ssl/ca.pem",
        },
        environ={},
    )
    k = settings.kafka
    java = java_properties(k)
    assert java["security.protocol"] == "SASL_SSL"
    assert java["sasl.mechanism"] == "SCRAM-SHA-512"
    assert java["sasl.jaas.config"] == (
        'org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule required username="fraud" password="p\\"w";'
    )
    assert java["ssl.truststore.type"] == "PEM" and java["ssl.truststore.location"] == "/etc/ssl/ca.pem"
    rd = client_config(k)
    assert (rd["sasl.username"], rd["sasl.password"], rd["ssl.ca.location"]) == (
        "fraud",
        'p"w',
        str(Path("/etc/ssl/ca.pem")),
    )
    assert rd["bootstrap.servers"] == "b1.example:9096,b2.example:9096"


def test_settings_come_from_the_environment_too():
    settings = load_settings(environ={"FRAUDSTREAM_KAFKA__BOOTSTRAP_SERVERS": "kafka:29092"})
    assert java_properties(settings.kafka)["bootstrap.servers"] == "kafka:29092"


def test_records_are_keyed_by_user_and_bad_ones_have_no_key():
    assert user_key(b'{"user_id": "u_1", "amount": 5}') == b"u_1"
    assert user_key(b'{"order_id": "o", "user_id": 42}') == b"42"
    assert user_key(b"{broken") is None
    assert user_key(b"[1, 2]") is None
    assert user_key(b'{"user_id": {"nested": 1}}') is None
    assert user_key(b'{"amount": 5}') is None
