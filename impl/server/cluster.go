package server

import "github.com/skybridge-mq/skybridge/impl/cluster"

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
}

// ClusterMember is one member as this node sees it.
type ClusterMember struct {
	ID          string   `json:"id"`
	State       string   `json:"state"` // alive, suspect, dead, left
	Local       bool     `json:"local"` // this node
	Incarnation uint64   `json:"incarnation"`
	Roles       []string `json:"roles"`
	MQTT        string   `json:"mqtt,omitempty"`
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
