// Package conformance is a black-box MQTT 3.1.1 and 5.0 test suite. It talks
// to a broker over TCP only, with real clients (paho.golang for 5.0,
// paho.mqtt.golang for 3.1.1) and a raw client built on impl/packet for what
// libraries refuse to send.
//
// Which broker: -broker=HOST:PORT (or SKYBRIDGE_BROKER) tests a running
// broker; otherwise -target picks one to start on a random loopback port:
// "mosquitto" (Debian's mosquitto with a generated configuration, stopped by
// its process id at the end) or "skybridge" (the project's broker,
// in-process) once it exists.
//
// Every test names the normative statements it checks as [v5 MQTT-x.y.z-n]
// or [v3.1.1 MQTT-x.y.z-n] next to the assertion; `make trace` counts them.
// Optional features are discovered from a 5.0 CONNACK and a test that needs
// one the broker does not offer skips with the reason.
package conformance
