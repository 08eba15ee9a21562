package gateway

import (
	"cmp"
	"slices"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// Bounds of one Modbus read request (the protocol's: 125 registers, 2000
// bits).
const (
	maxReadRegisters = 125
	maxReadBits      = 2000
)

// Read is one Modbus read request: Count registers (or bits) of Table
// from Address.
type Read struct {
	Table   string
	Address uint16
	Count   uint16
}

// point is a mapped property and where its value lies in a poll's reads.
type point struct {
	prop  api.Property // with Modbus set
	read  int          // index of the Read holding it
	start int          // its offset in that Read
}

// plan groups a device's points into reads: points of one table whose
// addresses touch or overlap share a request, up to the protocol's bound.
// Addresses between points are never read (a device may refuse them).
// Reads come out in (table, address) order, points in property order.
func plan(props []api.Property) ([]Read, []point) {
	type span struct {
		i     int // index in props
		table string
		lo    int
		hi    int // exclusive
	}
	var spans []span
	for i := range props {
		p := props[i].Modbus
		if p == nil {
			continue
		}
		spans = append(spans, span{i, p.Table, int(p.Address), int(p.Address) + p.Count()})
	}
	slices.SortStableFunc(spans, func(a, b span) int {
		if c := cmp.Compare(a.table, b.table); c != 0 {
			return c
		}
		return cmp.Compare(a.lo, b.lo)
	})
	var reads []Read
	pts := make([]point, 0, len(spans))
	lo, hi := 0, 0
	for k, s := range spans {
		limit := maxReadRegisters
		if props[s.i].Modbus.IsBit() {
			limit = maxReadBits
		}
		if k == 0 || s.table != spans[k-1].table || s.lo > hi || max(hi, s.hi)-lo > limit {
			if k > 0 {
				reads[len(reads)-1].Count = uint16(hi - lo)
			}
			reads = append(reads, Read{Table: s.table, Address: uint16(s.lo)})
			lo, hi = s.lo, s.hi
		}
		hi = max(hi, s.hi)
		pts = append(pts, point{prop: props[s.i], read: len(reads) - 1, start: s.lo - lo})
	}
	if len(reads) > 0 {
		reads[len(reads)-1].Count = uint16(hi - lo)
	}
	slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.prop.Name, b.prop.Name) })
	return reads, pts
}
