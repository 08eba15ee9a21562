package hidden

// Skipped: hidden directory. [v5 MQTT-3.12.4-1] [MQTT-1.1.1-1]
