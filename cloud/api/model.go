package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes as a Go duration
// string ("30s", "5m") in JSON and YAML documents.
type Duration time.Duration

// D returns the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler: a duration string or a number
// of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return errors.New("a duration is a string such as \"30s\"")
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// NodeState is where a node is in its life.
type NodeState string

// Node states. A node that is merely offline stays Active: it is never
// evicted, and its apps keep running (Node.Online says whether it is
// heard from).
const (
	NodePending NodeState = "pending" // a token exists, no certificate yet
	NodeActive  NodeState = "active"  // it holds a certificate
	NodeRevoked NodeState = "revoked" // its certificates are refused
)

// Node is a managed machine as the cloud sees it.
type Node struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	State  NodeState         `json:"state"`
	// Created is when the node was first registered (its first token).
	Created time.Time `json:"created"`
	// Online: a message came from the node within its lease.
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen,omitempty"`
	// DesiredVersion is the version of the node's desired state; the
	// node's Status.AppliedVersion says how far it got.
	DesiredVersion uint64 `json:"desired_version"`
	// Cert is the node's current certificate.
	CertSerial  string    `json:"cert_serial,omitempty"`
	CertExpires time.Time `json:"cert_expires,omitempty"`
	// Status is the last status report the node sent (through its outbox).
	Status *Status `json:"status,omitempty"`
	// Outbox is the cloud's side of the node's upstream stream.
	Outbox OutboxCursor `json:"outbox"`
}

// OutboxCursor is what the cloud knows of a node's outbox: the store it
// comes from (Epoch, drawn when the node's local store was created), the
// highest sequence number applied, the records the node said it dropped
// (gaps) and the duplicates the cloud ignored.
type OutboxCursor struct {
	Epoch      uint64 `json:"epoch"`
	Applied    uint64 `json:"applied"`
	Gaps       uint64 `json:"gaps"`
	Duplicates uint64 `json:"duplicates"`
}

// Restart says when the edge restarts an app that exited.
type Restart struct {
	// Policy is "always" (the default), "on-failure" (a non-zero exit) or
	// "never".
	Policy string `json:"policy,omitempty"`
	// BackoffMin and BackoffMax bound the delay before a restart; it
	// doubles after each exit and goes back to BackoffMin after a run of
	// StableAfter. Defaults: 1s, 60s, 30s.
	BackoffMin  Duration `json:"backoff_min,omitempty"`
	BackoffMax  Duration `json:"backoff_max,omitempty"`
	StableAfter Duration `json:"stable_after,omitempty"`
}

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// WithDefaults returns r with its zero fields set to the defaults.
func (r Restart) WithDefaults() Restart {
	if r.Policy == "" {
		r.Policy = RestartAlways
	}
	if r.BackoffMin <= 0 {
		r.BackoffMin = Duration(time.Second)
	}
	if r.BackoffMax <= 0 {
		r.BackoffMax = Duration(time.Minute)
	}
	if r.BackoffMax < r.BackoffMin {
		r.BackoffMax = r.BackoffMin
	}
	if r.StableAfter <= 0 {
		r.StableAfter = Duration(30 * time.Second)
	}
	return r
}

// Health is an app's health check: one of Exec (a command, healthy when it
// exits 0), HTTP (a URL, healthy on 2xx/3xx) or TCP (an address that
// accepts connections). After Failures consecutive failures the edge
// restarts the app.
type Health struct {
	Exec     []string `json:"exec,omitempty"`
	HTTP     string   `json:"http,omitempty"`
	TCP      string   `json:"tcp,omitempty"`
	Period   Duration `json:"period,omitempty"`  // default 10s
	Timeout  Duration `json:"timeout,omitempty"` // default 2s
	Failures int      `json:"failures,omitempty"`
	// Grace is how long after a start failures are not counted (default 10s).
	Grace Duration `json:"grace,omitempty"`
}

// Limits are an app's resource limits: rlimits always, cgroup v2 limits
// where the node has a writable cgroup v2 hierarchy.
type Limits struct {
	MemoryBytes int64 `json:"memory_bytes,omitempty"` // cgroup memory.max; RLIMIT_AS without cgroups
	CPUMillis   int64 `json:"cpu_millis,omitempty"`   // cgroup cpu.max (1000 = one core)
	NoFile      int64 `json:"nofile,omitempty"`       // RLIMIT_NOFILE
	Procs       int64 `json:"procs,omitempty"`        // cgroup pids.max; RLIMIT_NPROC without cgroups
}

// Artifact is a native executable, named by its content.
type Artifact struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Name is the file name the process sees as its argv[0].
	Name string `json:"name,omitempty"`
}

// Mount puts the files of a config or a secret (one per key) in a
// directory of the app's working directory.
type Mount struct {
	Config string `json:"config,omitempty"`
	Secret string `json:"secret,omitempty"`
	Dir    string `json:"dir"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// App is an application as the operator defines it.
type App struct {
	Name string `json:"name"`
	// Revision is set by the cloud: +1 at every change.
	Revision uint64 `json:"revision,omitempty"`
	// Selector chooses the nodes the app runs on (see ParseSelector).
	Selector string   `json:"selector"`
	Artifact Artifact `json:"artifact"`
	Args     []string `json:"args,omitempty"`
	Env      []EnvVar `json:"env,omitempty"`
	Mounts   []Mount  `json:"mounts,omitempty"`
	Restart  Restart  `json:"restart,omitzero"`
	Health   *Health  `json:"health,omitempty"`
	Limits   Limits   `json:"limits,omitzero"`
}

// Config is a versioned set of files (key → content).
type Config struct {
	Name    string            `json:"name"`
	Version uint64            `json:"version,omitempty"`
	Data    map[string]string `json:"data"`
}

// Secret is a Config whose content the cloud keeps encrypted at rest and
// never shows back (reads return the keys only).
type Secret = Config

// File is one file an app gets in its working directory.
type File struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
	// Secret files are written readable by the owner only.
	Secret bool `json:"secret,omitempty"`
}

// AppSpec is an app as a node runs it: the App resolved against the
// configs and secrets it mounts.
type AppSpec struct {
	Name     string   `json:"name"`
	Revision uint64   `json:"revision"`
	Artifact Artifact `json:"artifact"`
	Args     []string `json:"args,omitempty"`
	Env      []EnvVar `json:"env,omitempty"`
	Files    []File   `json:"files,omitempty"`
	Restart  Restart  `json:"restart"`
	Health   *Health  `json:"health,omitempty"`
	Limits   Limits   `json:"limits,omitzero"`
}

// Hash identifies an app's spec: a node restarts an app when it changes.
func (s *AppSpec) Hash() string {
	b, _ := json.Marshal(s) // plain data: never fails
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// DeviceSpec is a device bound to a node, with the property values the
// cloud wants it to have.
type DeviceSpec struct {
	Name           string                     `json:"name"`
	Model          string                     `json:"model"`
	Desired        map[string]json.RawMessage `json:"desired,omitempty"`
	DesiredVersion uint64                     `json:"desired_version"`
	// Properties are the model's (the gateway checks reports and maps
	// registers with them); Modbus is the device's endpoint, if it has one.
	Properties []Property      `json:"properties,omitempty"`
	Modbus     *ModbusEndpoint `json:"modbus,omitempty"`
}

// Desired is a node's desired state: the document the cloud sends and
// the node keeps in its local store. Apps and Devices are sorted by name.
type Desired struct {
	Node    string       `json:"node"`
	Version uint64       `json:"version"`
	Apps    []AppSpec    `json:"apps"`
	Devices []DeviceSpec `json:"devices,omitempty"`
}

// App returns the app called name, or nil.
func (d *Desired) App(name string) *AppSpec {
	i, ok := slices.BinarySearchFunc(d.Apps, name, func(a AppSpec, n string) int { return strings.Compare(a.Name, n) })
	if !ok {
		return nil
	}
	return &d.Apps[i]
}

// AppState is where an app is on a node.
type AppState string

// App states on a node.
const (
	AppWaiting  AppState = "waiting"  // its artifact is not on the node yet
	AppStarting AppState = "starting" // asked to start, not started yet
	AppRunning  AppState = "running"
	AppBackoff  AppState = "backoff" // exited; restarts after a delay
	AppExited   AppState = "exited"  // exited; its policy does not restart it
	AppFailed   AppState = "failed"  // could not be started (bad artifact, exec error)
)

// AppStatus is one app's status in a node's report.
type AppStatus struct {
	Name     string   `json:"name"`
	Revision uint64   `json:"revision"`
	State    AppState `json:"state"`
	Restarts uint64   `json:"restarts"`
	LastExit int      `json:"last_exit,omitempty"`
	Healthy  *bool    `json:"healthy,omitempty"`
	PID      int      `json:"pid,omitempty"`
	// Usage of the app's processes (0 where unknown).
	RSSBytes   int64   `json:"rss_bytes,omitempty"`
	CPUPercent float64 `json:"cpu_percent,omitempty"`
}

// NodeInfo describes the machine.
type NodeInfo struct {
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os,omitempty"`
	Arch     string `json:"arch,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
	CPUs     int    `json:"cpus,omitempty"`
	Agent    string `json:"agent,omitempty"` // the agent's version
}

// Usage is the machine's resource usage.
type Usage struct {
	CPUPercent     float64 `json:"cpu_percent"`
	MemTotalBytes  int64   `json:"mem_total_bytes"`
	MemUsedBytes   int64   `json:"mem_used_bytes"`
	DiskTotalBytes int64   `json:"disk_total_bytes"`
	DiskUsedBytes  int64   `json:"disk_used_bytes"`
	Load1          float64 `json:"load1,omitempty"`
}

// OutboxStats are the node's outbox counters (see edge/agent).
type OutboxStats struct {
	Pending        uint64 `json:"pending"`
	PendingBytes   uint64 `json:"pending_bytes"`
	Appended       uint64 `json:"appended"`
	DroppedFull    uint64 `json:"dropped_full"`
	DroppedAge     uint64 `json:"dropped_age"`
	Sent           uint64 `json:"sent"`
	Resent         uint64 `json:"resent"`
	AppendFailures uint64 `json:"append_failures,omitempty"`
}

// Status is a node's report of itself.
type Status struct {
	// AppliedVersion is the desired version the node runs completely (0:
	// none yet); DesiredVersion the newest it holds.
	AppliedVersion uint64      `json:"applied_version"`
	DesiredVersion uint64      `json:"desired_version"`
	Apps           []AppStatus `json:"apps"`
	Info           NodeInfo    `json:"info"`
	Usage          Usage       `json:"usage"`
	Outbox         OutboxStats `json:"outbox"`
	CertExpires    time.Time   `json:"cert_expires,omitzero"`
	Boot           time.Time   `json:"boot,omitzero"` // when the agent started
	// Devices are the gateway's devices (state and reason), Gateway its
	// counters (absent on a node without devices).
	Devices []DeviceState `json:"devices,omitempty"`
	Gateway *GatewayStats `json:"gateway,omitempty"`
}

// DeviceState is a device as its node's gateway sees it: "ok",
// "connecting", "failing" (Reason says why; Failures in a row), "invalid"
// (its model or endpoint cannot be used) or "mqtt" (an MQTT device).
type DeviceState struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	Failures int    `json:"failures,omitempty"`
}

// GatewayStats are a node's device gateway counters since the agent
// started.
type GatewayStats struct {
	Polls          uint64 `json:"polls"`
	PollFailures   uint64 `json:"poll_failures"`
	Timeouts       uint64 `json:"timeouts,omitempty"`
	ReadErrors     uint64 `json:"read_errors,omitempty"`   // blocks a device refused
	DecodeErrors   uint64 `json:"decode_errors,omitempty"` // values that could not be decoded
	Writes         uint64 `json:"writes"`
	WriteFailures  uint64 `json:"write_failures,omitempty"`
	WritesRefused  uint64 `json:"writes_refused,omitempty"` // desired values that cannot be written
	Reports        uint64 `json:"reports"`
	ReportsDropped uint64 `json:"reports_dropped,omitempty"`
	MQTTReports    uint64 `json:"mqtt_reports,omitempty"`
	MQTTRefused    uint64 `json:"mqtt_refused,omitempty"`
	MQTTDropped    uint64 `json:"mqtt_props_dropped,omitempty"`
	QueueDropped   uint64 `json:"queue_dropped,omitempty"` // Modbus operations refused by a full queue
}

// EdgeEvent is something that happened on a node (an app exited, a
// health check failed), sent through the outbox.
type EdgeEvent struct {
	Type    string `json:"type"`
	App     string `json:"app,omitempty"`
	Message string `json:"message,omitempty"`
	Code    int    `json:"code,omitempty"`
}

// DeviceReport is a device's reported property values.
type DeviceReport struct {
	Device string                     `json:"device"`
	Props  map[string]json.RawMessage `json:"props"`
}

// Record kinds.
const (
	KindStatus = "status"
	KindEvent  = "event"
	KindDevice = "device"
)

// Record is one entry of a node's outbox.
type Record struct {
	Seq  uint64          `json:"seq"`
	At   time.Time       `json:"at"`
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// Up is what a node publishes on its up topic: its outbox records from
// Floor on (possibly none), and the desired version it holds, so that
// the cloud can answer a stale node with its desired state (version diff).
type Up struct {
	Node string `json:"node"`
	// Epoch names the node's local store (drawn when it was created): a
	// new store starts its sequence numbers again.
	Epoch uint64 `json:"epoch"`
	// Floor is the lowest sequence number the node still holds (the next
	// one when it holds none): everything below was acknowledged or
	// dropped by the node.
	Floor          uint64   `json:"floor"`
	DesiredVersion uint64   `json:"desired_version"`
	Records        []Record `json:"records,omitempty"`
	// More: the node holds records beyond this batch.
	More bool `json:"more,omitempty"`
}

// Ack acknowledges a node's records up to Seq (applied and durable in the
// cloud). Wait asks the node to hold its next batch that long (the cloud's
// pacing of drains after an outage).
type Ack struct {
	Epoch uint64   `json:"epoch"`
	Seq   uint64   `json:"seq"`
	Wait  Duration `json:"wait,omitempty"`
}

// Down is what the cloud publishes on a node's down topic.
type Down struct {
	Ack     *Ack     `json:"ack,omitempty"`
	Desired *Desired `json:"desired,omitempty"`
}

// Topics.
const (
	TopicPrefix = "skybridge/nodes/"
	// UpFilter is the cloud's subscription to every node's up topic.
	UpFilter = TopicPrefix + "+/up"
)

// NodeUpTopic is the topic a node publishes its Up batches on.
func NodeUpTopic(node string) string { return TopicPrefix + node + "/up" }

// NodeDownTopic is the topic a node receives Down messages on.
func NodeDownTopic(node string) string { return TopicPrefix + node + "/down" }

// NodeOfUpTopic returns the node of an up topic.
func NodeOfUpTopic(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return "", false
	}
	node, ok := strings.CutSuffix(rest, "/up")
	if !ok || ValidName(node) != nil {
		return "", false
	}
	return node, true
}

// ValidName checks the name of a node, app, config, secret, device model
// or device: 1 to 63 characters, lower-case letters, digits, '-', '_' and
// '.', starting and ending with a letter or digit. Names appear in MQTT
// topics and file paths, so nothing else is allowed.
func ValidName(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("name %q: 1 to 63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if alnum {
			continue
		}
		if (c == '-' || c == '_' || c == '.') && i > 0 && i < len(s)-1 {
			continue
		}
		return fmt.Errorf("name %q: only a-z, 0-9 and inner '-', '_', '.'", s)
	}
	return nil
}

// ValidLabel checks a label key and value: keys are 1 to 63 characters of
// letters, digits, '-', '_', '.', '/'; values 0 to 63 of the same without
// '/'.
func ValidLabel(k, v string) error {
	if len(k) == 0 || len(k) > 63 || !labelChars(k, true) {
		return fmt.Errorf("label key %q: 1 to 63 of A-Z a-z 0-9 - _ . /", k)
	}
	if len(v) > 63 || !labelChars(v, false) {
		return fmt.Errorf("label %s value %q: up to 63 of A-Z a-z 0-9 - _ .", k, v)
	}
	return nil
}

func labelChars(s string, slash bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || (slash && c == '/')
		if !ok {
			return false
		}
	}
	return true
}

// ValidLabels checks every label.
func ValidLabels(l map[string]string) error {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := ValidLabel(k, l[k]); err != nil {
			return err
		}
	}
	return nil
}

// validRelPath checks a path inside an app's working directory.
func validRelPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("path %q: a relative path", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("path %q: no empty, '.' or '..' parts", p)
		}
	}
	return nil
}

// ValidSHA256 checks a hex SHA-256 digest.
func ValidSHA256(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("sha256 %q: 64 hex digits", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
			return fmt.Errorf("sha256 %q: 64 lower-case hex digits", s)
		}
	}
	return nil
}

// Validate checks an app as an operator submits it.
func (a *App) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	add("name", ValidName(a.Name))
	_, err := ParseSelector(a.Selector)
	add("selector", err)
	add("artifact.sha256", ValidSHA256(a.Artifact.SHA256))
	if a.Artifact.Size < 0 {
		add("artifact.size", errors.New("negative"))
	}
	if n := a.Artifact.Name; n != "" && (strings.ContainsAny(n, "/\x00") || n == "." || n == "..") {
		add("artifact.name", fmt.Errorf("%q is not a file name", n))
	}
	for i, e := range a.Env {
		if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") || strings.ContainsRune(e.Value, 0) {
			add(fmt.Sprintf("env[%d]", i), fmt.Errorf("bad variable %q", e.Name))
		}
	}
	dirs := map[string]bool{}
	for i, m := range a.Mounts {
		f := fmt.Sprintf("mounts[%d]", i)
		switch {
		case (m.Config == "") == (m.Secret == ""):
			add(f, errors.New("exactly one of config and secret"))
		case m.Config != "":
			add(f+".config", ValidName(m.Config))
		default:
			add(f+".secret", ValidName(m.Secret))
		}
		add(f+".dir", validRelPath(m.Dir))
		if dirs[m.Dir] {
			add(f+".dir", fmt.Errorf("%q mounted twice", m.Dir))
		}
		dirs[m.Dir] = true
	}
	switch a.Restart.Policy {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		add("restart.policy", fmt.Errorf("%q: always, on-failure or never", a.Restart.Policy))
	}
	if a.Restart.BackoffMin < 0 || a.Restart.BackoffMax < 0 || a.Restart.StableAfter < 0 {
		add("restart", errors.New("negative duration"))
	}
	if h := a.Health; h != nil {
		n := 0
		if len(h.Exec) > 0 {
			n++
		}
		if h.HTTP != "" {
			n++
		}
		if h.TCP != "" {
			n++
		}
		if n != 1 {
			add("health", errors.New("exactly one of exec, http and tcp"))
		}
		if h.Period < 0 || h.Timeout < 0 || h.Grace < 0 || h.Failures < 0 {
			add("health", errors.New("negative value"))
		}
	}
	l := a.Limits
	if l.MemoryBytes < 0 || l.CPUMillis < 0 || l.NoFile < 0 || l.Procs < 0 {
		add("limits", errors.New("negative value"))
	}
	return errors.Join(errs...)
}

// Validate checks a config or secret as an operator submits it.
func (c *Config) Validate() error {
	var errs []error
	if err := ValidName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	for k := range c.Data {
		if err := validRelPath(k); err != nil || strings.Contains(k, "/") {
			errs = append(errs, fmt.Errorf("data key %q: a file name", k))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// PropertyType is a device property's type.
type PropertyType string

// Property types.
const (
	PropInt    PropertyType = "int"
	PropFloat  PropertyType = "float"
	PropBool   PropertyType = "bool"
	PropString PropertyType = "string"
)

// Property is one property of a device model.
type Property struct {
	Name string       `json:"name"`
	Type PropertyType `json:"type"`
	// Writable properties can be set from the cloud (desired values).
	Writable bool   `json:"writable,omitempty"`
	Unit     string `json:"unit,omitempty"`
	// Modbus maps the property to a register or a bit of a Modbus TCP
	// device (devices of the model with a Modbus endpoint are polled by
	// their node's gateway; properties without a point are not read).
	Modbus *ModbusPoint `json:"modbus,omitempty"`
}

// DeviceModel is a kind of device: its properties.
type DeviceModel struct {
	Name       string     `json:"name"`
	Properties []Property `json:"properties"`
}

// Validate checks a device model.
func (m *DeviceModel) Validate() error {
	var errs []error
	if err := ValidName(m.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	seen := map[string]bool{}
	for i, p := range m.Properties {
		if err := ValidName(p.Name); err != nil {
			errs = append(errs, fmt.Errorf("properties[%d].name: %w", i, err))
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("properties[%d]: %q twice", i, p.Name))
		}
		seen[p.Name] = true
		switch p.Type {
		case PropInt, PropFloat, PropBool, PropString:
		default:
			errs = append(errs, fmt.Errorf("properties[%d].type: %q: int, float, bool or string", i, p.Type))
		}
		if p.Modbus != nil {
			if err := p.Modbus.Validate(&m.Properties[i]); err != nil {
				errs = append(errs, fmt.Errorf("properties[%d].modbus: %w", i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Property returns the property called name, or nil.
func (m *DeviceModel) Property(name string) *Property {
	for i := range m.Properties {
		if m.Properties[i].Name == name {
			return &m.Properties[i]
		}
	}
	return nil
}

// CheckValue checks that v (JSON) has the property's type.
func (p *Property) CheckValue(v json.RawMessage) error {
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return fmt.Errorf("%s: not JSON", p.Name)
	}
	ok := false
	switch p.Type {
	case PropInt:
		// An integer of int64's range: exact digits (a float64 cannot
		// tell 9223372036854775600 from 2^63), or an integral number
		// such as 1e3.
		f, isNum := x.(float64)
		if !isNum {
			break
		}
		var n json.Number
		if json.Unmarshal(v, &n) == nil {
			if _, err := n.Int64(); err == nil {
				ok = true
				break
			}
		}
		ok = f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63
	case PropFloat:
		_, ok = x.(float64)
	case PropBool:
		_, ok = x.(bool)
	case PropString:
		_, ok = x.(string)
	}
	if !ok {
		return fmt.Errorf("%s: want a value of type %s", p.Name, p.Type)
	}
	return nil
}

// Device is one device, bound to the node that reaches it.
type Device struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	Node  string `json:"node"`
	// Modbus: the device is a Modbus TCP server that its node's gateway
	// polls (its model maps the registers); without it the device speaks
	// MQTT to the node's local broker.
	Modbus *ModbusEndpoint `json:"modbus,omitempty"`
}

// Shadow is a device's shadow: the property values the cloud wants
// (desired) and those the device last reported, each with a version, and
// the delta between them (desired values the device does not report yet).
type Shadow struct {
	Device          string                     `json:"device"`
	Desired         map[string]json.RawMessage `json:"desired"`
	DesiredVersion  uint64                     `json:"desired_version"`
	Reported        map[string]json.RawMessage `json:"reported"`
	ReportedVersion uint64                     `json:"reported_version"`
	ReportedAt      time.Time                  `json:"reported_at,omitzero"`
	Delta           map[string]json.RawMessage `json:"delta"`
}

// ComputeDelta sets Delta: the desired values that differ from the
// reported ones (compared as compact JSON).
func (s *Shadow) ComputeDelta() {
	s.Delta = map[string]json.RawMessage{}
	for k, want := range s.Desired {
		if got, ok := s.Reported[k]; !ok || !sameJSON(got, want) {
			s.Delta[k] = want
		}
	}
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	ea, _ := json.Marshal(x)
	eb, _ := json.Marshal(y)
	return string(ea) == string(eb)
}

// Event is something that happened in the fleet, as the cloud's event log
// keeps it.
type Event struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Type    string    `json:"type"`
	Node    string    `json:"node,omitempty"`
	App     string    `json:"app,omitempty"`
	Device  string    `json:"device,omitempty"`
	Message string    `json:"message,omitempty"`
}

// TokenInfo is an outstanding activation token as the operator API lists
// it: its identifier (the part of the token before the dot), never its
// secret.
type TokenInfo struct {
	ID      string            `json:"id"`
	Node    string            `json:"node"`
	Labels  map[string]string `json:"labels,omitempty"`
	Expires time.Time         `json:"expires"`
}

// ActivateRequest is a node's first request: its one-time token and a
// certificate signing request for the key it generated.
type ActivateRequest struct {
	Token string   `json:"token"`
	CSR   []byte   `json:"csr"` // DER
	Info  NodeInfo `json:"info"`
}

// ActivateResponse gives the node its identity.
type ActivateResponse struct {
	Node string `json:"node"`
	Cert []byte `json:"cert"` // DER
	CA   []byte `json:"ca"`   // DER
	// Broker is the MQTT address the node connects to (host:port, TLS).
	Broker string `json:"broker"`
}

// RenewRequest asks for a new certificate: a CSR for a new key, the
// current certificate (which may have expired, within the cloud's grace
// period), and the current key's signature over the CSR, which proves the
// node holds it.
type RenewRequest struct {
	Node      string `json:"node"`
	CSR       []byte `json:"csr"`
	Cert      []byte `json:"cert"`
	Signature []byte `json:"signature"`
}

// JoinToken is what an operator gives a new node: where the cloud is, the
// SHA-256 of the cloud CA's certificate (so the node trusts the cloud's
// answer before it has a certificate), and the one-time token.
type JoinToken struct {
	API    string `json:"api"`
	CAHash string `json:"ca_sha256"`
	Token  string `json:"token"`
}

// BrokerCertRequest asks for an external broker's server certificate.
type BrokerCertRequest struct {
	// PublicKey is the broker's Ed25519 public key (32 bytes, base64).
	PublicKey []byte `json:"public_key"`
	// Hosts are the names and addresses nodes reach the broker by.
	Hosts []string `json:"hosts"`
}

// BrokerCertResponse is the certificate chain (PEM: the broker's, then
// the fleet CA's) and the fleet CA (PEM, the broker's client_ca_file).
type BrokerCertResponse struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}
