package cluster

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Kind is what a report says about a node.
type Kind uint8

const (
	Joined  Kind = iota + 1 // alive, seen for the first time by the reporter (or again after dead/left)
	Updated                 // alive, with new metadata
	Suspect                 // the failure detector suspects it
	Dead                    // declared failed
	Left                    // left gracefully
)

var kindNames = [...]string{"?", "joined", "updated", "suspect", "dead", "left"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// State is a member's state in the view.
type State uint8

const (
	StateAlive State = iota + 1
	StateSuspect
	StateDead
	StateLeft
)

var stateNames = [...]string{"?", "alive", "suspect", "dead", "left"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// stateOf maps a report to the state it puts the member in; its order is
// also the tie-break between reports with the same (Incarnation, Seq).
func stateOf(k Kind) State {
	switch k {
	case Joined, Updated:
		return StateAlive
	case Suspect:
		return StateSuspect
	case Dead:
		return StateDead
	case Left:
		return StateLeft
	}
	return 0
}

// Event is one report about one node.
type Event struct {
	Kind Kind
	Node string
	// Seq orders the reporter's reports about Node within one Incarnation
	// (a later report has a higher Seq). It need not be contiguous.
	Seq  uint64
	Meta Meta // the node's metadata; Meta.Incarnation is the event's incarnation
}

// Member is one node as the view shows it.
type Member struct {
	ID    string
	State State
	Local bool // the node running this Membership
	Meta
}

// View is the membership at one version.
type View struct {
	Version uint64
	Members []Member // sorted by ID
}

// Outcome says what Apply did with an event.
type Outcome uint8

const (
	Applied   Outcome = iota + 1 // the view changed
	Unchanged                    // a duplicate, or a newer report that changes nothing visible
	Stale                        // older than the report kept for the node
	Refused                      // see Change.Reason
)

var outcomeNames = [...]string{"?", "applied", "unchanged", "stale", "refused"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", o)
}

// Reasons for Refused.
const (
	ReasonInvalid      = "invalid"       // empty or long node id, unknown kind, metadata out of bounds
	ReasonWrongCluster = "wrong cluster" // the metadata names another cluster
	ReasonLocal        = "local node"    // about this node: another incarnation, or suspect/dead
	ReasonFull         = "full"          // MaxMembers alive or suspect members already
)

// Change is the result of one Apply.
type Change struct {
	Outcome Outcome
	Reason  string // when Refused
	Version uint64 // the view's version after the event
	// Member is the member after the event and Previous before it (ID
	// empty when the member is new), for Applied and Unchanged.
	Member   Member
	Previous Member
	// Restarted: the event's Incarnation is higher than the one known, so
	// the node restarted and lost its in-memory state (sessions, inflight
	// forwards, raft state not on disk), even if this observer never saw it
	// dead.
	Restarted bool
}

// Stats counts Apply's outcomes.
type Stats struct {
	Applied, Unchanged, Stale                     uint64
	Invalid, WrongCluster, LocalRefused, Full     uint64
	Forgotten                                     uint64 // dead or left members dropped to make room
	Members, Alive, Suspect, Dead, Left, MaxBound int
}

// Options bound a Membership.
type Options struct {
	// MaxMembers bounds the members kept, dead and left ones included
	// (default 1024). When full, the member dead or left the longest is
	// forgotten to make room for a new one.
	MaxMembers int
}

// MaxNodeID bounds a node id (memberlist's node name).
const MaxNodeID = 128

const defaultMaxMembers = 1024

type entry struct {
	member Member
	kind   Kind
	seq    uint64
	// downAt is the view version at which the member became dead or
	// left: the oldest goes first when room is needed.
	downAt uint64
}

// Membership is the membership state machine. See the package comment for
// its contract.
type Membership struct {
	cluster string
	local   string
	max     int
	members map[string]*entry
	version uint64
	stats   Stats
}

// NewMembership returns the membership of the node localID, which is in it
// from the start, alive with the metadata local.
func NewMembership(localID string, local Meta, opts Options) (*Membership, error) {
	if localID == "" || len(localID) > MaxNodeID {
		return nil, fmt.Errorf("cluster: node id must be 1 to %d bytes", MaxNodeID)
	}
	if err := local.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxMembers == 0 {
		opts.MaxMembers = defaultMaxMembers
	}
	if opts.MaxMembers < 1 {
		return nil, fmt.Errorf("cluster: MaxMembers %d", opts.MaxMembers)
	}
	m := &Membership{cluster: local.Cluster, local: localID, max: opts.MaxMembers, members: map[string]*entry{}}
	m.members[localID] = &entry{member: Member{ID: localID, State: StateAlive, Local: true, Meta: local}, kind: Joined}
	return m, nil
}

// LocalID returns the id of the node running this Membership.
func (m *Membership) LocalID() string { return m.local }

// Apply takes one report and returns what it changed.
func (m *Membership) Apply(ev Event) Change {
	if reason := m.check(ev); reason != "" {
		return m.refuse(reason)
	}
	e, known := m.members[ev.Node]
	if known {
		if ev.Node == m.local && (ev.Meta.Incarnation != e.member.Incarnation || ev.Kind == Suspect || ev.Kind == Dead) {
			return m.refuse(ReasonLocal)
		}
		switch c := compareReports(ev, e); {
		case c < 0:
			m.stats.Stale++
			return Change{Outcome: Stale, Version: m.version, Member: e.member, Previous: e.member}
		case c == 0:
			m.stats.Unchanged++
			return Change{Outcome: Unchanged, Version: m.version, Member: e.member, Previous: e.member}
		}
	} else if len(m.members) >= m.max && !m.forgetOldestDown() {
		return m.refuse(ReasonFull)
	}
	var prev Member
	if known {
		prev = e.member
	} else {
		e = &entry{}
		m.members[ev.Node] = e
	}
	e.kind, e.seq = ev.Kind, ev.Seq
	e.member = Member{ID: ev.Node, State: stateOf(ev.Kind), Local: ev.Node == m.local, Meta: ev.Meta}
	ch := Change{Member: e.member, Previous: prev, Restarted: known && ev.Meta.Incarnation > prev.Incarnation}
	if known && e.member == prev {
		m.stats.Unchanged++
		ch.Outcome, ch.Version = Unchanged, m.version
		return ch
	}
	m.version++
	if s := e.member.State; (s == StateDead || s == StateLeft) && (!known || (prev.State != StateDead && prev.State != StateLeft)) {
		e.downAt = m.version
	}
	m.stats.Applied++
	ch.Outcome, ch.Version = Applied, m.version
	return ch
}

// check returns why ev must be refused, or "".
func (m *Membership) check(ev Event) string {
	if ev.Node == "" || len(ev.Node) > MaxNodeID || stateOf(ev.Kind) == 0 || ev.Meta.Validate() != nil {
		return ReasonInvalid
	}
	if ev.Meta.Cluster != m.cluster {
		return ReasonWrongCluster
	}
	return ""
}

func (m *Membership) refuse(reason string) Change {
	switch reason {
	case ReasonInvalid:
		m.stats.Invalid++
	case ReasonWrongCluster:
		m.stats.WrongCluster++
	case ReasonLocal:
		m.stats.LocalRefused++
	case ReasonFull:
		m.stats.Full++
	}
	return Change{Outcome: Refused, Reason: reason, Version: m.version}
}

// compareReports orders ev against the report kept in e: by Incarnation,
// then Seq, then state, then metadata, so that any two reports compare the
// same way whichever arrived first.
func compareReports(ev Event, e *entry) int {
	return cmp.Or(
		cmp.Compare(ev.Meta.Incarnation, e.member.Incarnation),
		cmp.Compare(ev.Seq, e.seq),
		cmp.Compare(stateOf(ev.Kind), stateOf(e.kind)),
		compareMeta(ev.Meta, e.member.Meta),
	)
}

// forgetOldestDown drops the member that has been dead or left the
// longest, and reports whether there was one.
func (m *Membership) forgetOldestDown() bool {
	var oldest *entry
	for _, e := range m.members {
		if e.member.Local || (e.member.State != StateDead && e.member.State != StateLeft) {
			continue
		}
		// The map's order must not decide: ties go to the smaller id.
		if oldest == nil || cmp.Or(cmp.Compare(e.downAt, oldest.downAt), strings.Compare(e.member.ID, oldest.member.ID)) < 0 {
			oldest = e
		}
	}
	if oldest == nil {
		return false
	}
	delete(m.members, oldest.member.ID)
	m.stats.Forgotten++
	return true
}

// View returns every member, sorted by id.
func (m *Membership) View() View {
	v := View{Version: m.version, Members: make([]Member, 0, len(m.members))}
	for _, e := range m.members {
		v.Members = append(v.Members, e.member)
	}
	slices.SortFunc(v.Members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return v
}

// Member returns one member.
func (m *Membership) Member(id string) (Member, bool) {
	e, ok := m.members[id]
	if !ok {
		return Member{}, false
	}
	return e.member, true
}

// Stats returns the counters and the members per state.
func (m *Membership) Stats() Stats {
	s := m.stats
	s.Members, s.MaxBound = len(m.members), m.max
	for _, e := range m.members {
		switch e.member.State {
		case StateAlive:
			s.Alive++
		case StateSuspect:
			s.Suspect++
		case StateDead:
			s.Dead++
		case StateLeft:
			s.Left++
		}
	}
	return s
}
