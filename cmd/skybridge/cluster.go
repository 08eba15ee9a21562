package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/cluster/gossip"
	"github.com/skybridge-mq/skybridge/impl/cluster/router"
	"github.com/skybridge-mq/skybridge/impl/config"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvclient"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvserver"
	"github.com/skybridge-mq/skybridge/impl/server"
)

// joinCluster starts the node's gossip membership (docs/CLUSTER.md). With
// a router, the node advertises its forward address and the router hears
// every change; without one, the node is a member only and serves its
// own clients alone.
func joinCluster(c *config.Cluster, mqtt string, rt *clusterRouting, log *slog.Logger) (*gossip.Node, error) {
	g, err := c.Gossip(mqtt)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	g.Logger = log
	note := "membership only: messages are not routed between nodes (no cluster.forward)"
	if rt != nil {
		g.Incarnation, g.Forward, g.OnChange = rt.incarnation, rt.forwardAddr, rt.router.MemberChanged
		if rt.kv != nil {
			g.KV = rt.kv.ClientAddr()
		}
		note = "messages are routed between nodes"
	}
	n, err := gossip.Start(g)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	log.Info("cluster membership started", "cluster", c.Name, "node", c.NodeID, "gossip", n.GossipAddr(),
		"seeds", len(c.Seeds), "note", note)
	return n, nil
}

// redirector names, round robin, the MQTT addresses of the other live
// members: where a stopping node sends its 5.0 clients.
func redirector(n *gossip.Node, self string) func() string {
	var next atomic.Uint64
	return func() string {
		var addrs []string
		for _, m := range n.Members().Members {
			if m.ID != self && m.State == cluster.StateAlive && !m.Leaving && m.MQTT != "" {
				addrs = append(addrs, m.MQTT)
			}
		}
		if len(addrs) == 0 {
			return ""
		}
		return addrs[int(next.Add(1)-1)%len(addrs)]
	}
}

// clusterRouting is what routes messages between nodes: the raftkv node
// (when this process runs one), the client of raftkv, and the router.
type clusterRouting struct {
	kv          *kvserver.Server
	kvDone      chan error
	client      *kvclient.Client
	router      *router.Router
	broker      atomic.Pointer[broker.Broker]
	incarnation uint64
	forwardAddr string
}

// startRouting starts what clusterRouting holds. The broker, made later,
// is handed over with setBroker; messages forwarded before are dropped
// (no session of this node can have subscribed yet).
func startRouting(f *config.File, log *slog.Logger) (_ *clusterRouting, err error) {
	c := f.Cluster
	cr := &clusterRouting{incarnation: uint64(time.Now().UnixMilli())}
	sec, err := loadClusterTLS(c)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls: %w", err)
	}
	ln, err := net.Listen("tcp", c.Forward)
	if err != nil {
		return nil, fmt.Errorf("cluster.forward: %w", err)
	}
	defer func() {
		if err != nil { // what started goes, in reverse
			if cr.router != nil {
				cr.router.Close()
			} else {
				ln.Close()
			}
			if cr.client != nil {
				cr.client.Close()
			}
			cr.closeKV()
		}
	}()
	cr.forwardAddr = ln.Addr().String()
	endpoints := c.KV.Endpoints
	if c.KV.NodeID != 0 {
		if err = cr.startKV(f, sec != nil, log); err != nil {
			return nil, err
		}
		if len(endpoints) == 0 {
			endpoints = []string{cr.kv.ClientAddr()}
		}
	}
	var kvTLS *tls.Config
	if sec != nil {
		if kvTLS, err = kvclient.LoadTLS(c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile, kvserver.TLSServerName); err != nil {
			return nil, fmt.Errorf("cluster.tls for raftkv's clients: %w", err)
		}
	}
	cr.client = kvclient.New(endpoints, kvTLS)
	rc := router.Config{
		Self: c.NodeID, Incarnation: cr.incarnation, KV: cr.client, Listener: ln,
		Deliver: func(tenant []byte, m *message.Message, plain bool, groups [][]byte) int {
			if b := cr.broker.Load(); b != nil {
				return b.DeliverForwarded(tenant, m, plain, groups)
			}
			return 0
		},
		Retained: func(tenant []byte, m *message.Message) {
			if b := cr.broker.Load(); b != nil {
				b.ApplyRetained(tenant, m)
			}
		},
		EndSession: func(tenant, clientID, user string) bool {
			if b := cr.broker.Load(); b != nil {
				return b.EndTakenOver(tenant, clientID, user)
			}
			return true
		},
		Logger: log.With("part", "router"),
	}
	if sec != nil {
		rc.ServerTLS, rc.CheckPeer, rc.PeerTLS = sec.server, sec.checkPeer, sec.peer
	}
	if cr.router, err = router.New(rc); err != nil {
		return nil, err
	}
	// Routes and connection counts this node wrote in an earlier run go:
	// its sessions that survived write their routes again as the broker
	// recovers them.
	began := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var n int
		n, err = cr.router.ClearOwnKeys(ctx)
		cancel()
		if err == nil {
			log.Info("cluster routing started", "forward", cr.forwardAddr, "kv", endpoints, "stale_keys_cleared", n,
				"took", time.Since(began).String())
			return cr, nil
		}
		if time.Since(began) > time.Minute {
			return nil, fmt.Errorf("cluster: raftkv unreachable for a minute: %w", err)
		}
		log.Info("waiting for raftkv", "err", err)
	}
}

// startKV starts the raftkv node this process runs (cluster.kv.node_id),
// on mutual TLS when cluster.tls is set.
func (cr *clusterRouting) startKV(f *config.File, secure bool, log *slog.Logger) error {
	c := f.Cluster
	addrs, ids, err := c.KVPeers()
	if err != nil {
		return fmt.Errorf("cluster.kv.peers: %w", err)
	}
	id := raftkv.NodeID(c.KV.NodeID)
	dir := c.KV.Dir
	if dir == "" {
		dir = filepath.Join(f.Storage.Dir, "raftkv")
	}
	replicas := c.KV.Replicas
	if replicas == 0 {
		replicas = min(3, len(ids))
	}
	cfg := kvserver.Config{
		Node:      raftkv.Config{ID: id, Dir: dir, Replicas: replicas, Addr: addrs[id], Peers: ids},
		PeerAddrs: addrs, Listen: c.KV.Bind, ClientListen: c.KV.ClientBind, Tick: 100 * time.Millisecond,
		Logger: log.With("part", "raftkv"),
	}
	if secure {
		t := &c.TLS
		if cfg.PeerTLS, err = kvserver.LoadTLS(id, t.CertFile, t.KeyFile, t.CAFile); err == nil {
			cfg.ClientTLS, err = kvserver.LoadClientTLS(t.CertFile, t.KeyFile, t.CAFile)
		}
		if err != nil {
			return fmt.Errorf("cluster.tls for raftkv: %w", err)
		}
	}
	if cr.kv, err = kvserver.New(cfg); err != nil {
		return fmt.Errorf("cluster.kv: %w", err)
	}
	cr.kvDone = make(chan error, 1)
	go func() { cr.kvDone <- cr.kv.Run() }()
	return nil
}

func (cr *clusterRouting) setBroker(b *broker.Broker) { cr.broker.Store(b) }

// nodeTLS is mutual TLS between broker nodes' forward links: each node's
// certificate, signed by the cluster's CA, names the node
// (cluster.NodeURI).
type nodeTLS struct {
	cert tls.Certificate
	pool *x509.CertPool
	// server takes the links of other nodes; checkPeer then checks that
	// the sender's certificate names the node its hello claims.
	server *tls.Config
}

// loadClusterTLS reads cluster.tls (nil when it is not set) and checks
// that the certificate is this node's.
func loadClusterTLS(c *config.Cluster) (*nodeTLS, error) {
	if c.TLS.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil {
		return nil, err
	}
	if id, err := cluster.CertNode(cert.Leaf); err != nil || id != c.NodeID {
		return nil, fmt.Errorf("%s is not node %q's certificate (it names %q: %v)", c.TLS.CertFile, c.NodeID, id, err)
	}
	pool, err := kvclient.LoadCertPool(c.TLS.CAFile)
	if err != nil {
		return nil, err
	}
	return &nodeTLS{cert: cert, pool: pool, server: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}}, nil
}

// checkPeer refuses a link whose client certificate is not the node its
// hello names.
func (n *nodeTLS) checkPeer(from string, c net.Conn) error {
	tc, ok := c.(*tls.Conn)
	if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	id, err := cluster.CertNode(tc.ConnectionState().PeerCertificates[0])
	if err != nil {
		return err
	}
	if id != from {
		return fmt.Errorf("node %q's certificate on a link from %q", id, from)
	}
	return nil
}

// peer is the client side of the link to node: the server's certificate
// must chain to the CA and name that node (no host name is checked: the
// node's URI is its identity).
func (n *nodeTLS) peer(node string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{n.cert}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, // the chain and the node are checked below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: n.pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			id, err := cluster.CertNode(leaf)
			if err != nil {
				return err
			}
			if id != node {
				return fmt.Errorf("node %q answered for node %q", id, node)
			}
			return nil
		}}
}

// ranges reads the local raftkv node's replicas for the admin API.
func (cr *clusterRouting) ranges(ctx context.Context) (uint64, []server.ClusterRange, error) {
	if cr.kv == nil {
		return 0, nil, nil
	}
	var id raftkv.NodeID
	var lrs []raftkv.LocalRange
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := cr.kv.Do(ctx, func(n *raftkv.Node) { id, lrs = n.ID(), n.Ranges() }); err != nil {
		return 0, nil, err
	}
	out := make([]server.ClusterRange, 0, len(lrs))
	for _, lr := range lrs {
		d := lr.Desc
		rg := server.ClusterRange{Range: uint64(d.RangeID), Start: strconv.Quote(string(d.Start)), Replica: uint64(lr.ReplicaID),
			Leader: lr.Leader, Term: lr.Term, Applied: lr.Applied, Lag: lr.Lag, Keys: lr.LiveKeys, Bytes: lr.LiveBytes}
		if d.End != nil {
			rg.End = strconv.Quote(string(d.End))
		}
		for _, r := range d.Replicas {
			rg.Nodes = append(rg.Nodes, uint64(r.Node))
		}
		out = append(out, rg)
	}
	return uint64(id), out, nil
}

func (cr *clusterRouting) close() {
	cr.router.Close()
	cr.client.Close()
	cr.closeKV()
}

func (cr *clusterRouting) closeKV() {
	if cr.kv != nil {
		cr.kv.Close()
		<-cr.kvDone
	}
}

// clusterCollector exports the membership's figures to /metrics.
type clusterCollector struct{ n *gossip.Node }

var (
	clusterMembers = prometheus.NewDesc("skybridge_cluster_members",
		"Cluster members as this node sees them, by state.", []string{"state"}, nil)
	clusterJoins = prometheus.NewDesc("skybridge_cluster_join_attempts_total",
		"Attempts to join the cluster through the seeds.", nil, nil)
	clusterJoinFailures = prometheus.NewDesc("skybridge_cluster_join_failures_total",
		"Join attempts that reached no seed.", nil, nil)
	clusterRefused = prometheus.NewDesc("skybridge_cluster_reports_refused_total",
		"Membership reports refused: another cluster's, undecodable metadata, invalid.", nil, nil)
	clusterDropped = prometheus.NewDesc("skybridge_cluster_reports_dropped_total",
		"Membership reports dropped at the bound of waiting reports.", nil, nil)
	clusterConflicts = prometheus.NewDesc("skybridge_cluster_conflicts_total",
		"Another address claimed this node's id or another member's.", nil, nil)
	clusterReconnects = prometheus.NewDesc("skybridge_cluster_reconnect_attempts_total",
		"Joins tried at the address of a member held dead, or at a seed while one is (a healed partition).", nil, nil)
	clusterReconnectFailures = prometheus.NewDesc("skybridge_cluster_reconnect_failures_total",
		"Reconnect attempts that reached nobody.", nil, nil)
	clusterReconnectGaveUp = prometheus.NewDesc("skybridge_cluster_reconnect_given_up_total",
		"Members held dead longer than reconnect_timeout, no longer tried.", nil, nil)
)

func (clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clusterMembers, clusterJoins, clusterJoinFailures, clusterRefused, clusterDropped, clusterConflicts,
		clusterReconnects, clusterReconnectFailures, clusterReconnectGaveUp} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Stats()
	for state, n := range map[string]int{"alive": st.Core.Alive, "suspect": st.Core.Suspect, "dead": st.Core.Dead, "left": st.Core.Left} {
		ch <- prometheus.MustNewConstMetric(clusterMembers, prometheus.GaugeValue, float64(n), state)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(clusterJoins, st.JoinAttempts)
	counter(clusterJoinFailures, st.JoinFailures)
	counter(clusterRefused, st.Core.Invalid+st.Core.WrongCluster+st.Core.LocalRefused+st.BadMeta+st.RefusedAlive)
	counter(clusterDropped, st.Dropped)
	counter(clusterConflicts, st.Conflicts)
	counter(clusterReconnects, st.ReconnectAttempts)
	counter(clusterReconnectFailures, st.ReconnectFailures)
	counter(clusterReconnectGaveUp, st.ReconnectGaveUp)
}

// routerCollector exports the router's figures to /metrics.
type routerCollector struct{ r *router.Router }

var (
	routerMessages = prometheus.NewDesc("skybridge_cluster_forward_messages_total",
		"Messages this node forwarded to other nodes (one per destination node), by outcome.", []string{"outcome"}, nil)
	routerReceived = prometheus.NewDesc("skybridge_cluster_forward_received_total",
		"Messages other nodes forwarded to this node.", nil, nil)
	routerUnrouted = prometheus.NewDesc("skybridge_cluster_unrouted_total",
		"Publishes whose routes could not be loaded in time: QoS 0 reached this node only, QoS 1/2 were refused.", nil, nil)
	routerMinority = prometheus.NewDesc("skybridge_cluster_minority_refused_total",
		"QoS 1/2 publishes refused because this node saw no majority of the cluster's members alive (a partition's minority side).", nil, nil)
	routerRouteWrites = prometheus.NewDesc("skybridge_cluster_route_writes_total",
		"Route, retained-message and connection-count keys written to or deleted from raftkv, by outcome (failed writes are retried).", []string{"outcome"}, nil)
	routerRoutesPending = prometheus.NewDesc("skybridge_cluster_routes_pending",
		"Route changes not yet in raftkv.", nil, nil)
	routerPrefixes = prometheus.NewDesc("skybridge_cluster_route_prefixes",
		"Route key prefixes cached by this node, by state.", []string{"state"}, nil)
	routerPeers = prometheus.NewDesc("skybridge_cluster_forward_links",
		"Forward links open to other nodes.", nil, nil)
	routerUnconfirmed = prometheus.NewDesc("skybridge_cluster_suback_unconfirmed_total",
		"New routes not confirmed by every live node within the wait; their SUBACK went anyway.", nil, nil)
	routerClaims = prometheus.NewDesc("skybridge_cluster_session_claims_total",
		"Sessions this node claimed at CONNECT, by outcome (owned, or refused with 0x88/0x89).", []string{"outcome"}, nil)
	routerReleased = prometheus.NewDesc("skybridge_cluster_sessions_released_total",
		"Sessions this node ended because another node claimed them.", nil, nil)
)

func (routerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{routerMessages, routerReceived, routerUnrouted, routerMinority, routerRouteWrites, routerRoutesPending, routerPrefixes, routerPeers, routerUnconfirmed, routerClaims, routerReleased} {
		ch <- d
	}
}

func (c routerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.Stats()
	for outcome, n := range map[string]uint64{"sent": st.Forwarded, "dropped": st.Dropped, "refused": st.Refused, "abandoned": st.Abandoned} {
		ch <- prometheus.MustNewConstMetric(routerMessages, prometheus.CounterValue, float64(n), outcome)
	}
	ch <- prometheus.MustNewConstMetric(routerReceived, prometheus.CounterValue, float64(st.Received))
	ch <- prometheus.MustNewConstMetric(routerUnrouted, prometheus.CounterValue, float64(st.Unrouted))
	ch <- prometheus.MustNewConstMetric(routerMinority, prometheus.CounterValue, float64(st.Minority))
	ch <- prometheus.MustNewConstMetric(routerRouteWrites, prometheus.CounterValue, float64(st.RouteWrites), "done")
	ch <- prometheus.MustNewConstMetric(routerRouteWrites, prometheus.CounterValue, float64(st.RouteWriteErrors), "failed")
	ch <- prometheus.MustNewConstMetric(routerRoutesPending, prometheus.GaugeValue, float64(st.RoutesPending))
	ch <- prometheus.MustNewConstMetric(routerPrefixes, prometheus.GaugeValue, float64(st.Cache.Ready), "ready")
	ch <- prometheus.MustNewConstMetric(routerPrefixes, prometheus.GaugeValue, float64(st.Cache.Prefixes-st.Cache.Ready), "loading")
	ch <- prometheus.MustNewConstMetric(routerPeers, prometheus.GaugeValue, float64(st.Peers))
	ch <- prometheus.MustNewConstMetric(routerUnconfirmed, prometheus.CounterValue, float64(st.Unconfirmed))
	ch <- prometheus.MustNewConstMetric(routerClaims, prometheus.CounterValue, float64(st.Claims), "owned")
	ch <- prometheus.MustNewConstMetric(routerClaims, prometheus.CounterValue, float64(st.ClaimsRefused), "refused")
	ch <- prometheus.MustNewConstMetric(routerReleased, prometheus.CounterValue, float64(st.Released))
}
