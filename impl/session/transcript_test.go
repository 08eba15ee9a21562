package session

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// driver runs a session through a transcript in testdata/. Commands:
//
//	config key=value ...        set Config fields before `new`
//	new id=CLIENT               a fresh session
//	attach v=5 [clean] [present] [keepalive=N] [expiry=N] [recvmax=N] [maxpacket=N] [aliasmax=N]
//	       [will=TOPIC will-qos=N will-retain will-delay=N] [assigned=ID] [problem-info=0]
//	recv                        one packet per input line (see parsePacket)
//	deliver topic=T qos=N [payload=P] [retain] [subids=1,2] [expiry=S] [user=k:v]
//	publish-done id=N qos=N [code=0xNN]
//	subscribe-done [codes=0x80,...] [existed=1,0]   completes the last SUBSCRIBE
//	unsubscribe-done            completes the last UNSUBSCRIBE
//	detach | kick code=0xNN | advance d=DURATION | state
//	ops                         print (and take) the journaled store ops
//	commit                      report the ops last taken as durable
//
// After each command the driver prints the Result (when not empty) and every
// packet the session wrote.
type driver struct {
	cfg     Config
	persist bool
	opsSeq  []Span // the journal spans of the ops printed since the last commit
	s       *Session
	now     time.Time
	res     *Result
	// last SUBSCRIBE/UNSUBSCRIBE waiting for completion
	subReqs  []SubRequest
	subPID   uint16
	unsubs   [][]byte
	unsubPID uint16
}

func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		d := &driver{cfg: DefaultConfig(), now: time.Unix(1_700_000_000, 0)}
		d.cfg.OutboundTopicAliases = false
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			out, err := d.run(td)
			if err != nil {
				t.Fatalf("%s: %v", td.Pos, err)
			}
			return out
		})
	})
}

func (d *driver) run(td *datadriven.TestData) (string, error) {
	var b strings.Builder
	args := map[string]string{}
	for _, a := range td.CmdArgs {
		args[a.Key] = strings.Join(a.Vals, ",")
	}
	num := func(k string, def int) int {
		if v, ok := args[k]; ok {
			n, err := strconv.ParseInt(v, 0, 64)
			if err == nil {
				return int(n)
			}
		}
		return def
	}
	flag := func(k string) bool { _, ok := args[k]; return ok }
	switch td.Cmd {
	case "config":
		for k := range args {
			switch k {
			case "max-qos":
				d.cfg.MaxQoS = packet.QoS(num(k, 2))
			case "max-inflight":
				d.cfg.MaxInflight = uint16(num(k, 0))
			case "max-queued":
				d.cfg.MaxQueued = num(k, 0)
			case "max-queued-bytes":
				d.cfg.MaxQueuedBytes = num(k, 0)
			case "max-output":
				d.cfg.MaxOutput = num(k, 0)
			case "receive-max":
				d.cfg.ReceiveMaximum = uint16(num(k, 0))
			case "alias-max":
				d.cfg.TopicAliasMaximum = uint16(num(k, 0))
			case "outbound-aliases":
				d.cfg.OutboundTopicAliases = num(k, 0) == 1
			case "retain":
				d.cfg.RetainAvailable = num(k, 1) == 1
			case "shared":
				d.cfg.SharedSubscriptions = num(k, 1) == 1
			case "wildcards":
				d.cfg.WildcardSubscriptions = num(k, 1) == 1
			case "subids":
				d.cfg.SubscriptionIdentifiers = num(k, 1) == 1
			case "max-keepalive":
				d.cfg.MaxKeepAlive = uint16(num(k, 0))
			case "max-session-expiry":
				d.cfg.MaxSessionExpiry = uint32(num(k, 0))
			default:
				return "", fmt.Errorf("unknown config %q", k)
			}
		}
		return "ok", nil
	case "new":
		d.persist = flag("persist")
		d.s = New(&d.cfg, 1, "t", args["id"], d.persist)
		return "ok", nil
	case "ops":
		ops, seq := d.s.TakeOps()
		d.opsSeq = append(d.opsSeq, seq)
		for _, op := range ops {
			fmt.Fprintf(&b, "op %s\n", formatOp(op))
		}
		if len(ops) == 0 {
			return "no ops", nil
		}
		return b.String(), nil
	case "commit":
		for _, sp := range d.opsSeq {
			d.s.Committed(sp)
		}
		d.opsSeq = nil
	case "attach":
		c := &packet.Connect{Version: packet.Version(num("v", 5)), CleanStart: flag("clean"),
			KeepAlive: uint16(num("keepalive", 60)), ClientID: []byte(d.s.ClientID)}
		cp := &c.Properties
		if flag("expiry") {
			cp.SessionExpiry = uint32(num("expiry", 0))
			cp.Set(packet.PropSessionExpiry)
		}
		if flag("recvmax") {
			cp.ReceiveMaximum = uint16(num("recvmax", 0))
			cp.Set(packet.PropReceiveMaximum)
		}
		if flag("maxpacket") {
			cp.MaximumPacketSize = uint32(num("maxpacket", 0))
			cp.Set(packet.PropMaximumPacketSize)
		}
		if flag("aliasmax") {
			cp.TopicAliasMaximum = uint16(num("aliasmax", 0))
			cp.Set(packet.PropTopicAliasMaximum)
		}
		if flag("problem-info") {
			cp.RequestProblemInfo = byte(num("problem-info", 1))
			cp.Set(packet.PropRequestProblemInfo)
		}
		if w, ok := args["will"]; ok {
			c.WillFlag, c.WillTopic, c.WillPayload = true, []byte(w), []byte("will")
			c.WillQoS, c.WillRetain = packet.QoS(num("will-qos", 0)), flag("will-retain")
			if flag("will-delay") {
				c.WillProperties.WillDelay = uint32(num("will-delay", 0))
				c.WillProperties.Set(packet.PropWillDelay)
			}
		}
		d.s.Attach(c, AttachInfo{Present: flag("present"), Assigned: args["assigned"]}, d.now)
	case "recv":
		for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
			p, err := parsePacket(line)
			if err != nil {
				return "", err
			}
			d.res = d.s.Handle(p, d.now)
			d.printResult(&b, d.res)
			d.flush(&b)
		}
		return b.String(), nil
	case "deliver":
		m := &message.Message{Topic: []byte(args["topic"]), Payload: []byte(args["payload"]),
			QoS: packet.QoS(num("qos", 0)), Retain: flag("retain"), Owned: true}
		if flag("expiry") {
			m.Expiry = d.now.Add(time.Duration(num("expiry", 0)) * time.Second)
		}
		if u, ok := args["user"]; ok {
			k, v, _ := strings.Cut(u, ":")
			m.Properties.User = []packet.UserProperty{{Key: []byte(k), Value: []byte(v)}}
		}
		dl := Delivery{QoS: packet.QoS(num("qos", 0)), Retain: flag("retain")}
		if ids, ok := args["subids"]; ok {
			for _, s := range strings.Split(ids, ",") {
				n, _ := strconv.Atoi(s)
				dl.SubIDs = append(dl.SubIDs, uint32(n))
			}
		}
		o := d.s.Deliver(m, dl, d.now)
		fmt.Fprintf(&b, "outcome: %s\n", outcomeNames[o])
	case "publish-done":
		d.s.PublishDone(uint16(num("id", 0)), packet.QoS(num("qos", 1)), packet.ReasonCode(num("code", 0)))
	case "subscribe-done":
		codes := strings.Split(args["codes"], ",")
		existed := strings.Split(args["existed"], ",")
		for i := range d.subReqs {
			if i < len(codes) && codes[i] != "" {
				n, _ := strconv.ParseInt(codes[i], 0, 16)
				d.subReqs[i].Reason = packet.ReasonCode(n)
			}
			d.subReqs[i].Existed = i < len(existed) && existed[i] == "1"
		}
		d.s.SubscribeDone(d.subPID, d.subReqs)
	case "unsubscribe-done":
		d.s.UnsubscribeDone(d.unsubPID, d.unsubs)
	case "detach":
		d.printResult(&b, d.s.Detach(d.now))
		return b.String(), nil
	case "kick":
		d.printResult(&b, d.s.Kick(packet.ReasonCode(num("code", 0x8e))))
	case "advance":
		dur, err := time.ParseDuration(args["d"])
		if err != nil {
			return "", err
		}
		d.now = d.now.Add(dur)
		return "ok", nil
	case "state":
		q, inf := d.s.Queued()
		fmt.Fprintf(&b, "connected=%v queued=%d inflight=%d expiry=%d\n", d.s.Connected(), q, inf, d.s.Expiry())
		d.s.Subscriptions(func(f string, o topic.Options) bool {
			fmt.Fprintf(&b, "sub %q qos=%d nl=%v rap=%v rh=%d id=%d\n", f, o.QoS, o.NoLocal, o.RetainAsPublished, o.RetainHandling, o.ID)
			return true
		})
		st := d.s.Stats()
		fmt.Fprintf(&b, "stats sent=%d queue-full=%d output-full=%d offline=%d too-large=%d expired=%d\n",
			st.Sent, st.DroppedQueueFull, st.DroppedOutputFull, st.DroppedOffline, st.DroppedTooLarge, st.DroppedExpired)
		return b.String(), nil
	default:
		return "", fmt.Errorf("unknown command %q", td.Cmd)
	}
	d.flush(&b)
	if b.Len() == 0 {
		return "ok", nil
	}
	return b.String(), nil
}

var outcomeNames = map[Outcome]string{Sent: "sent", Queued: "queued", DropQueueFull: "drop-queue-full",
	DropOutput: "drop-output", DropOffline: "drop-offline", DropTooLarge: "drop-too-large", DropExpired: "drop-expired"}

func (d *driver) printResult(b *strings.Builder, r *Result) {
	if r.Route != nil {
		m := r.Route
		fmt.Fprintf(b, "route topic=%q qos=%d retain=%v payload=%q", m.Topic, m.QoS, m.Retain, m.Payload)
		if !m.Expiry.IsZero() {
			fmt.Fprintf(b, " expires-in=%v", m.Expiry.Sub(d.now))
		}
		if r.RoutePID != 0 {
			fmt.Fprintf(b, " pid=%d", r.RoutePID)
		}
		b.WriteString("\n")
	}
	if len(r.Subscribe) > 0 {
		d.subReqs = append(d.subReqs[:0], r.Subscribe...)
		d.subPID = r.SubscribePID
		for _, q := range r.Subscribe {
			fmt.Fprintf(b, "subscribe %q qos=%d shared=%v code=0x%02x id=%d\n", q.Filter, q.Options.QoS, q.Shared, byte(q.Reason), q.Options.ID)
		}
	}
	if len(r.Unsubscribe) > 0 {
		d.unsubs = append(d.unsubs[:0], r.Unsubscribe...)
		d.unsubPID = r.UnsubscribePID
		for _, f := range r.Unsubscribe {
			fmt.Fprintf(b, "unsubscribe %q\n", f)
		}
	}
	if r.Close {
		fmt.Fprintf(b, "close code=0x%02x\n", byte(r.Reason))
	}
	if r.Will != nil {
		fmt.Fprintf(b, "will topic=%q qos=%d retain=%v delay=%v\n", r.Will.Topic, r.Will.QoS, r.Will.Retain, r.WillDelay)
	}
	if r.Expire != 0 || r.Will != nil {
		if r.Expire == Forever {
			b.WriteString("expire never\n")
		} else {
			fmt.Fprintf(b, "expire in %v\n", r.Expire)
		}
	}
}

// flush prints every packet in the session's output.
func (d *driver) flush(b *strings.Builder) {
	out := d.s.TakeOutput(nil, d.now)
	dec := packet.NewDecoder(bytes.NewReader(out), d.s.Version())
	for {
		p, err := dec.Next()
		if err != nil {
			return
		}
		fmt.Fprintf(b, "> %s\n", packet.Format(p))
	}
}

// parsePacket reads a packet written as TYPE key=value ... (see the
// testdata files for examples).
func parsePacket(line string) (packet.Packet, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty packet line")
	}
	kv := func(tok string) (string, string) { k, v, _ := strings.Cut(tok, "="); return k, v }
	n := func(v string) int { x, _ := strconv.ParseInt(v, 0, 64); return int(x) }
	switch f[0] {
	case "PUBLISH":
		p := &packet.Publish{}
		for _, tok := range f[1:] {
			k, v := kv(tok)
			pr := &p.Properties
			switch k {
			case "topic":
				p.Topic = []byte(v)
			case "qos":
				p.QoS = packet.QoS(n(v))
			case "id":
				p.PacketID = uint16(n(v))
			case "payload":
				p.Payload = []byte(v)
			case "retain":
				p.Retain = true
			case "dup":
				p.Dup = true
			case "alias":
				pr.TopicAlias = uint16(n(v))
				pr.Set(packet.PropTopicAlias)
			case "expiry":
				pr.MessageExpiry = uint32(n(v))
				pr.Set(packet.PropMessageExpiry)
			case "format":
				pr.PayloadFormat = byte(n(v))
				pr.Set(packet.PropPayloadFormat)
			case "response-topic":
				pr.ResponseTopic = []byte(v)
				pr.Set(packet.PropResponseTopic)
			case "subid":
				pr.SubscriptionIDs = append(pr.SubscriptionIDs, uint32(n(v)))
			case "user":
				k2, v2, _ := strings.Cut(v, ":")
				pr.User = append(pr.User, packet.UserProperty{Key: []byte(k2), Value: []byte(v2)})
			default:
				return nil, fmt.Errorf("PUBLISH: unknown %q", k)
			}
		}
		return p, nil
	case "PUBACK", "PUBREC", "PUBREL", "PUBCOMP":
		a := &packet.Ack{PacketType: map[string]packet.Type{"PUBACK": packet.PUBACK, "PUBREC": packet.PUBREC,
			"PUBREL": packet.PUBREL, "PUBCOMP": packet.PUBCOMP}[f[0]]}
		for _, tok := range f[1:] {
			k, v := kv(tok)
			switch k {
			case "id":
				a.PacketID = uint16(n(v))
			case "code":
				a.ReasonCode = packet.ReasonCode(n(v))
			}
		}
		return a, nil
	case "SUBSCRIBE":
		p := &packet.Subscribe{}
		var cur *packet.Subscription
		for _, tok := range f[1:] {
			k, v := kv(tok)
			switch k {
			case "id":
				p.PacketID = uint16(n(v))
			case "subid":
				p.Properties.SubscriptionIDs = append(p.Properties.SubscriptionIDs, uint32(n(v)))
			case "filter":
				p.Subscriptions = append(p.Subscriptions, packet.Subscription{Filter: []byte(v)})
				cur = &p.Subscriptions[len(p.Subscriptions)-1]
			case "qos":
				cur.QoS = packet.QoS(n(v))
			case "nl":
				cur.NoLocal = true
			case "rap":
				cur.RetainAsPublished = true
			case "rh":
				cur.RetainHandling = byte(n(v))
			}
		}
		return p, nil
	case "UNSUBSCRIBE":
		p := &packet.Unsubscribe{}
		for _, tok := range f[1:] {
			k, v := kv(tok)
			switch k {
			case "id":
				p.PacketID = uint16(n(v))
			case "filter":
				p.Filters = append(p.Filters, []byte(v))
			}
		}
		return p, nil
	case "PINGREQ":
		return &packet.Pingreq{}, nil
	case "DISCONNECT":
		p := &packet.Disconnect{}
		for _, tok := range f[1:] {
			k, v := kv(tok)
			switch k {
			case "code":
				p.ReasonCode = packet.ReasonCode(n(v))
			case "session-expiry":
				p.Properties.SessionExpiry = uint32(n(v))
				p.Properties.Set(packet.PropSessionExpiry)
			}
		}
		return p, nil
	case "CONNECT":
		return &packet.Connect{Version: packet.V5}, nil
	case "AUTH":
		return &packet.Auth{}, nil
	case "PINGRESP":
		return &packet.Pingresp{}, nil
	}
	return nil, fmt.Errorf("unknown packet %q", f[0])
}

func formatOp(op store.Op) string {
	switch op.Kind {
	case store.PutSession:
		r := op.Session
		will := ""
		if r.Will != nil {
			will = fmt.Sprintf(" will=%q delay=%d", r.Will.Topic, r.WillDelay)
		}
		off := ""
		if !r.OfflineSince.IsZero() {
			off = " offline"
		}
		return fmt.Sprintf("put-session v%d expiry=%d%s%s", r.Version, r.Expiry, off, will)
	case store.PutSub:
		return fmt.Sprintf("put-sub %q qos=%d", op.Filter, op.Options.QoS)
	case store.DeleteSub:
		return fmt.Sprintf("delete-sub %q", op.Filter)
	case store.PutDelivery:
		r := op.Delivery
		body := ""
		if r.Msg != nil {
			body = fmt.Sprintf(" %q", r.Msg.Payload)
		}
		return fmt.Sprintf("put-delivery seq=%d pid=%d qos=%d state=%d%s", r.Seq, r.PID, r.QoS, r.State, body)
	case store.DeleteDelivery:
		return fmt.Sprintf("delete-delivery seq=%d", op.Seq)
	case store.PutInbound:
		return fmt.Sprintf("put-inbound pid=%d", op.PID)
	case store.DeleteInbound:
		return fmt.Sprintf("delete-inbound pid=%d", op.PID)
	}
	return fmt.Sprintf("op kind %d", op.Kind)
}
