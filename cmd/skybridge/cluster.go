package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skybridge-mq/skybridge/impl/cluster/gossip"
	"github.com/skybridge-mq/skybridge/impl/config"
)

// joinCluster starts the node's gossip membership (docs/CLUSTER.md). Only
// membership for now: the nodes see each other, and each still serves
// only its own clients.
func joinCluster(c *config.Cluster, mqtt string, log *slog.Logger) (*gossip.Node, error) {
	g, err := c.Gossip(mqtt)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	g.Logger = log
	n, err := gossip.Start(g)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	log.Info("cluster membership started", "cluster", c.Name, "node", c.NodeID, "gossip", n.GossipAddr(),
		"seeds", len(c.Seeds), "note", "membership only: messages are not routed between nodes yet")
	return n, nil
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
)

func (clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clusterMembers, clusterJoins, clusterJoinFailures, clusterRefused, clusterDropped, clusterConflicts} {
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
}
