package server

import (
	"context"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

// ClusterMembers is what the admin API needs of a cluster node's
// membership (impl/cluster/gossip.Node).
type ClusterMembers interface {
	Members() cluster.View
	GossipAddr() string
}

// ClusterInfo is GET /api/v1/cluster: the members this node sees.
type ClusterInfo struct {
	// Standalone: the node is in no cluster (no cluster: section).
	Standalone bool `json:"standalone"`
	// Cluster is the cluster's name, Gossip this node's gossip address.
	Cluster string `json:"cluster,omitempty"`
	Gossip  string `json:"gossip,omitempty"`
	// Version counts the changes of this node's view.
	Version uint64          `json:"version"`
	Members []ClusterMember `json:"members"`
	// KVNode and Ranges: the raftkv node this process runs and its
	// replicas (absent when it runs none).
	KVNode uint64         `json:"kv_node,omitempty"`
	Ranges []ClusterRange `json:"ranges,omitempty"`
	// KVError says why the ranges could not be read.
	KVError string `json:"kv_error,omitempty"`
	// Draining: the node sends its clients to others (POST
	// /api/v1/cluster/drain).
	Draining bool `json:"draining,omitempty"`
}

// ClusterRange is one replica of a raftkv range on this node.
type ClusterRange struct {
	Range   uint64   `json:"range"`
	Start   string   `json:"start"` // the span's keys, Go-quoted; End "" is the end of the key space
	End     string   `json:"end"`
	Replica uint64   `json:"replica"`
	Nodes   []uint64 `json:"nodes"` // the raftkv nodes holding a replica
	Leader  bool     `json:"leader"`
	Term    uint64   `json:"term"`
	Applied uint64   `json:"applied"`
	// Lag, on a leader: committed entries the furthest behind replica
	// has not acknowledged.
	Lag   uint64 `json:"lag"`
	Keys  int64  `json:"keys"`
	Bytes int64  `json:"bytes"`
}

// ClusterRanges reads this node's raftkv replicas for the admin API.
type ClusterRanges func(ctx context.Context) (node uint64, ranges []ClusterRange, err error)

// ClusterMember is one member as this node sees it.
type ClusterMember struct {
	ID          string   `json:"id"`
	State       string   `json:"state"` // alive, suspect, dead, left
	Local       bool     `json:"local"` // this node
	Incarnation uint64   `json:"incarnation"`
	Roles       []string `json:"roles"`
	MQTT        string   `json:"mqtt,omitempty"`
}

func (s *Server) clusterInfo(ctx context.Context) ClusterInfo {
	info := clusterInfo(s.cfg.Cluster)
	info.Draining = s.b.Draining()
	if s.cfg.ClusterRanges != nil && !info.Standalone {
		var err error
		if info.KVNode, info.Ranges, err = s.cfg.ClusterRanges(ctx); err != nil {
			info.KVError = err.Error()
		}
	}
	return info
}

func clusterInfo(c ClusterMembers) ClusterInfo {
	if c == nil {
		return ClusterInfo{Standalone: true, Members: []ClusterMember{}}
	}
	v := c.Members()
	info := ClusterInfo{Gossip: c.GossipAddr(), Version: v.Version, Members: make([]ClusterMember, 0, len(v.Members))}
	for _, m := range v.Members {
		if m.Local {
			info.Cluster = m.Cluster
		}
		info.Members = append(info.Members, ClusterMember{ID: m.ID, State: m.State.String(), Local: m.Local,
			Incarnation: m.Incarnation, Roles: m.Roles.Names(), MQTT: m.MQTT})
	}
	return info
}
