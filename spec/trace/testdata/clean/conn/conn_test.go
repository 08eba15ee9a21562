package conn

// [v5 MQTT-3.1.0-1] [v5 MQTT-3.1.0-2] [v5 MQTT-4.6.0-2]
// [v3.1.1 MQTT-3.1.0-1] [v3.1.1 MQTT-1.5.3-1]
