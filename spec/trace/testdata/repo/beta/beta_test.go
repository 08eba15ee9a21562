package beta

// Bare citation, ambiguous between versions: [MQTT-3.1.2-4]
// Bare list: [MQTT-3.1.2-4, MQTT-3.1.2-5]
// Unknown statement: [v5 MQTT-9.9.9-9]
// The misprint is a v3.1.1 alias only: [v5 MQTT-3.1.2.7]
// Unknown version: [v5.0 MQTT-3.1.0-1]
// A 3.1.1-only ID cited as v5: [v5 MQTT-7.1.1-1]
// Good one on the same line as a bad one: [v5 MQTT-3.12.4-1] [MQTT-3.12.4-1]
