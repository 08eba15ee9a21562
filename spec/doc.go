// Package spec is Skybridge's catalogue of the normative statements of MQTT
// 3.1.1 and MQTT 5.0.
//
// Each version's catalogue is a tab-separated file embedded in the package
// (mqtt-3.1.1.tsv and mqtt-5.0.tsv). One line describes one numbered
// statement of the specification: its ID as the specification prints it
// (corrected where the 3.1.1 document misprints it), its section, its level
// (MUST, MUST NOT, ...), whom it binds (Server, Client or Both), how this
// project can check it (codec, broker, client-only or unobservable) and a
// one-line summary in our own words. See README.md in this directory for the
// column definitions.
//
// Tests cite statements with the version inside the brackets, for example
// "[v5 MQTT-3.3.1-5]" or "[v3.1.1 MQTT-3.1.2-4]". The same ID means different
// things in the two versions, so a citation without a version is an error.
// Package spec/trace finds these citations and reports coverage; the command
// spec/cmd/trace prints it.
package spec
