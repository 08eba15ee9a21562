package fleet

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

func (f *Fleet) request(node, kind string) {
	if f.cfg.Observer != nil {
		f.cfg.Observer.Request(node, kind)
	}
}

func (f *Fleet) nextSerial(t *tx) uint64 {
	f.serial++
	t.b.Put(keySerial, f.serial)
	return f.serial
}

// Activate redeems a one-time token: it signs the node's CSR and makes the
// node active. The token is gone afterwards, used or not.
func (f *Fleet) Activate(req api.ActivateRequest, now time.Time) (api.ActivateResponse, error) {
	id, secret, _ := strings.Cut(req.Token, ".")
	tr, ok := f.tokens.Get(id)
	f.request(nodeOf(tr), "activate")
	if !ok || subtle.ConstantTimeCompare([]byte(tokenHash(secret)), []byte(tr.Hash)) != 1 {
		f.Stats.Refused++
		return api.ActivateResponse{}, errf(http.StatusForbidden, "unknown activation token")
	}
	t := f.begin(now)
	f.tokens.Delete(id)
	t.b.Delete(keyToken + id)
	if !now.Before(tr.Expires) {
		f.Stats.Refused++
		if err := t.commit(); err != nil {
			return api.ActivateResponse{}, err
		}
		return api.ActivateResponse{}, errf(http.StatusForbidden, "activation token expired")
	}
	serial := f.nextSerial(t)
	der, err := f.ca.SignNode(req.CSR, tr.Node, serial, now, f.cfg.CertLifetime)
	if err != nil {
		return api.ActivateResponse{}, t.abort(invalid(err))
	}
	n, ok := f.nodes.Get(tr.Node)
	if !ok {
		n = &nodeRec{Node: api.Node{Name: tr.Node, Created: now}}
		f.nodes.Set(tr.Node, n)
	}
	if tr.Labels != nil || n.Labels == nil {
		n.Labels = tr.Labels
	}
	n.State = api.NodeActive
	n.Serial, n.PrevSerial = serial, 0
	n.CertSerial, n.CertExpires = ca.SerialString(serial), now.Add(f.cfg.CertLifetime)
	if n.Status == nil {
		n.Status = &api.Status{Info: req.Info}
	}
	t.putNode(n)
	t.event("node.activated", n.Name, "", "", "certificate "+n.CertSerial)
	if err := f.recompute(t, []*nodeRec{n}); err != nil {
		return api.ActivateResponse{}, t.abort(err)
	}
	if err := t.commit(); err != nil {
		return api.ActivateResponse{}, err
	}
	f.Stats.Activations++
	return api.ActivateResponse{Node: n.Name, Cert: der, CA: f.ca.CertDER(), Broker: f.cfg.Broker}, nil
}

func nodeOf(tr *tokenRec) string {
	if tr == nil {
		return ""
	}
	return tr.Node
}

// Renew issues a new certificate for a new key. The request carries the
// node's current certificate, which may have expired up to RenewGrace
// ago (a node offline for longer than its certificate), and the
// certificate key's signature over the new CSR. The previous certificate
// stays valid until it expires, so a node whose answer was lost can renew
// again with it.
func (f *Fleet) Renew(req api.RenewRequest, now time.Time) (api.ActivateResponse, error) {
	f.request(req.Node, "renew")
	refuse := func(msg string) (api.ActivateResponse, error) {
		f.Stats.Refused++
		return api.ActivateResponse{}, errf(http.StatusForbidden, "renewal refused: %s", msg)
	}
	nc, err := f.ca.Verify(req.Cert, now, true)
	if err != nil {
		return refuse(err.Error())
	}
	if now.After(nc.NotAfter.Add(f.cfg.RenewGrace)) {
		return refuse("the certificate expired more than " + f.cfg.RenewGrace.String() + " ago")
	}
	n, ok := f.nodes.Get(nc.Node)
	if !ok || nc.Node != req.Node || n.State != api.NodeActive {
		return refuse("node " + nc.Node + " is not active")
	}
	if nc.Serial != n.Serial && (n.PrevSerial == 0 || nc.Serial != n.PrevSerial) {
		return refuse("certificate " + ca.SerialString(nc.Serial) + " was replaced")
	}
	if err := ca.CheckProof(nc.Cert, req.CSR, req.Signature); err != nil {
		return refuse(err.Error())
	}
	t := f.begin(now)
	serial := f.nextSerial(t)
	der, err := f.ca.SignNode(req.CSR, n.Name, serial, now, f.cfg.CertLifetime)
	if err != nil {
		return api.ActivateResponse{}, t.abort(invalid(err))
	}
	n.PrevSerial, n.Serial = nc.Serial, serial
	n.CertSerial, n.CertExpires = ca.SerialString(serial), now.Add(f.cfg.CertLifetime)
	t.putNode(n)
	t.event("node.renewed", n.Name, "", "", "certificate "+n.CertSerial)
	if err := t.commit(); err != nil {
		return api.ActivateResponse{}, err
	}
	f.Stats.Renewals++
	return api.ActivateResponse{Node: n.Name, Cert: der, CA: f.ca.CertDER(), Broker: f.cfg.Broker}, nil
}

// CloudClientID is the client id of the cloud's own MQTT connection.
const CloudClientID = "skybridge-cloud"

// ClientIDOf is the client id a certificate's owner connects with: a
// node its name, the cloud CloudClientID. Holding it to that keeps anyone
// from taking another's session.
func ClientIDOf(user string) string {
	if user == CloudUser {
		return CloudClientID
	}
	return user
}

// CertValid reports whether a verified certificate (node, serial) may
// connect: the node's current or previous one, or the cloud's own.
func (f *Fleet) CertValid(node string, serial uint64) bool {
	if node == CloudUser {
		return serial != 0 && serial == f.cloudSerial
	}
	n, ok := f.nodes.Get(node)
	return ok && n.State == api.NodeActive && serial != 0 && (serial == n.Serial || serial == n.PrevSerial)
}

// IssueCloudCert issues the certificate of the cloud's own MQTT
// connection (user CloudUser); the previous one stops being accepted.
func (f *Fleet) IssueCloudCert(pub ed25519.PublicKey, now time.Time) ([]byte, error) {
	return f.issue(pub, CloudUser, nil, now, &f.cloudSerial)
}

// IssueServerCert issues the certificate of the broker's and the API's
// TLS listeners for the given host names and addresses.
func (f *Fleet) IssueServerCert(pub ed25519.PublicKey, hosts []string, now time.Time) ([]byte, error) {
	return f.issue(pub, "skybridge-cloud", hosts, now, nil)
}

func (f *Fleet) issue(pub ed25519.PublicKey, cn string, hosts []string, now time.Time, keep *uint64) ([]byte, error) {
	t := f.begin(now)
	serial := f.nextSerial(t)
	der, err := f.ca.SignServer(pub, cn, hosts, serial, now, 365*24*time.Hour)
	if err != nil {
		return nil, t.abort(err)
	}
	if err := t.commit(); err != nil {
		return nil, err
	}
	if keep != nil {
		*keep = serial
	}
	return der, nil
}

// ArtifactAllowed reports whether a node may download an artifact: one of
// the apps of its desired state uses it.
func (f *Fleet) ArtifactAllowed(node, sha string) bool {
	f.request(node, "artifact")
	n, ok := f.nodes.Get(node)
	if !ok || n.State != api.NodeActive {
		return false
	}
	d := f.desiredFor(n)
	for _, a := range d.Apps {
		if a.Artifact.SHA256 == sha {
			f.Stats.ArtifactFetches++
			return true
		}
	}
	return false
}

// HandleUp handles an api.Up a node published on its up topic: it renews
// the node's lease, applies its new records in sequence order (each once),
// and queues an acknowledgement (with the pacing of a draining node) and,
// when the node's desired version is not the current one, its desired
// state.
func (f *Fleet) HandleUp(topic string, payload []byte, now time.Time) error {
	node, ok := api.NodeOfUpTopic(topic)
	if !ok {
		f.Stats.Ignored++
		return nil
	}
	f.request(node, "up")
	f.Stats.Ups++
	var up api.Up
	if err := json.Unmarshal(payload, &up); err != nil || up.Node != node {
		f.Stats.Ignored++
		return nil
	}
	n, ok := f.nodes.Get(node)
	if !ok || n.State != api.NodeActive {
		f.Stats.Ignored++
		return nil
	}
	t := f.begin(now)
	n.LastSeen = now
	f.renewLease(n, now)
	if !n.Online {
		n.Online = true
		t.event("node.online", node, "", "", "")
	}
	cur := &n.Outbox
	if up.Epoch != cur.Epoch {
		if cur.Epoch != 0 {
			t.event("outbox.reset", node, "", "", "the node's store is new (epoch "+strconv.FormatUint(up.Epoch, 16)+")")
		}
		*cur = api.OutboxCursor{Epoch: up.Epoch}
	}
	if up.Floor > cur.Applied+1 {
		gap := up.Floor - 1 - cur.Applied
		cur.Gaps += gap
		f.Stats.Gaps += gap
		t.event("outbox.gap", node, "", "", strconv.FormatUint(gap, 10)+" records dropped by the node (full or too old)")
		cur.Applied = up.Floor - 1
	}
	for i := range up.Records {
		rec := &up.Records[i]
		if rec.Seq <= cur.Applied && !f.cfg.Hooks.NoDedupe {
			cur.Duplicates++
			f.Stats.Duplicates++
			continue
		}
		if rec.Seq != cur.Applied+1 && !f.cfg.Hooks.NoDedupe {
			break // a hole: the node resends from the acknowledgement
		}
		f.apply(t, n, rec)
		cur.Applied = max(cur.Applied, rec.Seq)
		t.applied = append(t.applied, appliedRec{node, up.Epoch, rec})
	}
	t.putNode(n)
	ack := &api.Ack{Epoch: up.Epoch, Seq: cur.Applied}
	if up.More {
		// The drain scheduler: one slot per batch at DrainRate over the
		// whole fleet; a node waits for its slot.
		slot := f.nextDrn
		if slot.Before(now) {
			slot = now
		}
		f.nextDrn = slot.Add(time.Duration(float64(time.Second) / f.cfg.DrainRate))
		ack.Wait = api.Duration(slot.Sub(now))
	}
	stale := up.DesiredVersion != n.DesiredVersion
	t.owe = append(t.owe, func() {
		p := f.owe(node)
		p.ack = ack
		if stale {
			p.desired = true
		}
	})
	if err := t.commit(); err != nil {
		return err
	}
	f.Stats.RecordsApplied += uint64(len(t.applied))
	return nil
}

// apply applies one record to the node's state (in t). A record that
// does not decode is counted and skipped: it must not block the stream.
func (f *Fleet) apply(t *tx, n *nodeRec, rec *api.Record) {
	var err error
	switch rec.Kind {
	case api.KindStatus:
		var s api.Status
		if err = json.Unmarshal(rec.Body, &s); err == nil {
			prev := uint64(0)
			if n.Status != nil {
				prev = n.Status.AppliedVersion
			}
			n.Status = &s
			if s.AppliedVersion != prev && s.AppliedVersion == n.DesiredVersion {
				t.event("desired.applied", n.Name, "", "", "version "+uitoa(s.AppliedVersion))
			}
		}
	case api.KindEvent:
		var e api.EdgeEvent
		if err = json.Unmarshal(rec.Body, &e); err == nil {
			t.events = append(t.events, api.Event{At: rec.At, Type: "edge." + e.Type, Node: n.Name, App: e.App, Message: e.Message})
		}
	case api.KindDevice:
		var r api.DeviceReport
		if err = json.Unmarshal(rec.Body, &r); err == nil {
			err = f.applyDevice(t, n, &r, rec.At)
		}
	default:
		err = errors.New("unknown kind " + rec.Kind)
	}
	if err != nil {
		f.Stats.Malformed++
		t.event("record.malformed", n.Name, "", "", "seq "+uitoa(rec.Seq)+": "+err.Error())
	}
}

func (f *Fleet) applyDevice(t *tx, n *nodeRec, r *api.DeviceReport, at time.Time) error {
	d, ok := f.devices.Get(r.Device)
	if !ok || d.Node != n.Name {
		return errors.New("device " + r.Device + " is not bound to this node")
	}
	sh, ok := f.shadows.Get(r.Device)
	if !ok {
		return errors.New("device " + r.Device + " has no shadow")
	}
	for k, v := range r.Props {
		sh.Reported[k] = v
	}
	sh.ReportedVersion++
	sh.ReportedAt = at
	t.b.Put(keyShadow+r.Device, sh)
	return nil
}

// NodeAuth authenticates the broker's clients by their verified client
// certificate (CN = node, SERIALNUMBER = serial): only a certificate the
// fleet currently accepts (Check, normally Fleet.CertValid under the
// runtime's lock) connects, so a replaced or revoked certificate is
// refused before its expiry.
type NodeAuth struct {
	Check func(node string, serial uint64) bool
}

// Authenticate implements broker.Authenticator.
func (a NodeAuth) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	node, _, ok := identify(req.CertSubject, req.ClientID, a.Check)
	if !ok {
		return broker.AuthResult{Code: packet.NotAuthorized}
	}
	return broker.AuthResult{Code: packet.Success, Tenant: req.DefaultTenant, User: node}
}

// identify is the one decision of both brokers (NodeAuth, BrokerHook): the
// owner (a node, or CloudUser) and serial of a verified certificate that
// check accepts now, connecting under its owner's client id.
func identify(subject, clientID string, check func(node string, serial uint64) bool) (string, uint64, bool) {
	node, serial, ok := SubjectIdentity(subject)
	if !ok || !check(node, serial) || clientID != ClientIDOf(node) {
		return "", 0, false
	}
	return node, serial, true
}

// SubjectIdentity reads the node and serial of a certificate subject.
func SubjectIdentity(subject string) (string, uint64, bool) {
	if subject == "" {
		return "", 0, false
	}
	attrs, err := auth.ParseDN(subject)
	if err != nil {
		return "", 0, false
	}
	var cn, sn string
	for _, at := range attrs {
		switch strings.ToUpper(at.Type) {
		case "CN", "2.5.4.3":
			cn = at.Value
		case "SERIALNUMBER", "2.5.4.5":
			sn = at.Value
		}
	}
	serial, err := strconv.ParseUint(sn, 16, 64)
	if cn == "" || err != nil {
		return "", 0, false
	}
	return cn, serial, true
}

// IssueBrokerCert issues the server certificate of an external broker
// the fleet's nodes connect to (nodes trust the fleet CA only).
func (f *Fleet) IssueBrokerCert(pub ed25519.PublicKey, hosts []string, now time.Time) ([]byte, error) {
	return f.issue(pub, "skybridge-broker", hosts, now, nil)
}

// HookAnswer is the answer to an external broker's authentication
// webhook (the protocol of impl/webhook).
type HookAnswer struct {
	Result    string     `json:"result"`
	Tenant    string     `json:"tenant,omitempty"`
	User      string     `json:"user,omitempty"`
	ACL       *acl.Claim `json:"acl,omitempty"`
	ExpiresAt int64      `json:"expires_at,omitempty"`
	Reason    int        `json:"reason,omitempty"`
}

// BrokerHook decides a CONNECT to an external broker by the client's
// verified certificate subject, as NodeAuth does for the embedded one:
// a certificate the fleet accepts now connects as its node (or as
// CloudUser) in tenant, with the ACL of BrokerACL as the connection's own
// claim, which ends in a deny of everything so that it holds whatever the
// broker's rules for the tenant say; the client id must be ClientIDOf the
// certificate's owner. Anything else is refused 0x87: the caller only asks about its
// fleet listener, whose clients the fleet CA verified. The allow expires
// with the node's current certificate.
func (f *Fleet) BrokerHook(subject, clientID, tenant string) HookAnswer {
	node, serial, ok := identify(subject, clientID, f.CertValid)
	if !ok {
		return HookAnswer{Result: "deny", Reason: int(packet.NotAuthorized)}
	}
	// BrokerACL's rules as the connection's own, and its default deny as
	// their last rule.
	rules := append(BrokerACL().Global, acl.RuleConfig{Permission: "deny", Action: "all", Topics: []string{"#"}})
	a := HookAnswer{Result: "allow", Tenant: tenant, User: node, ACL: &acl.Claim{Rules: rules}}
	if n, ok := f.nodes.Get(node); ok && serial == n.Serial && !n.CertExpires.IsZero() {
		a.ExpiresAt = n.CertExpires.Unix()
	}
	return a
}

// BrokerACL is the broker's authorization: the cloud reaches every node
// topic; a node publishes on its own up topic and subscribes to its own
// down topic, nothing else.
func BrokerACL() acl.Config {
	return acl.Config{DefaultDeny: true, Global: []acl.RuleConfig{
		{Permission: "allow", Action: "all", Topics: []string{api.TopicPrefix + "#"}, Users: []string{CloudUser}},
		{Permission: "allow", Action: "publish", Topics: []string{api.TopicPrefix + "%u/up"}},
		{Permission: "allow", Action: "subscribe", Topics: []string{api.TopicPrefix + "%u/down"}},
	}}
}
