package raftkv

import (
	"encoding/binary"
)

// Pebble key layout of one node (docs/RAFTKV.md). Every range of the node
// shares the store; a range's raft state lives under its own prefix and its
// data under the data prefix, keyed by logical key, so a split moves no
// data: it only changes which range owns which keys.
//
//	\x00 "format"                      format version of the store
//	\x01 rangeID(8) 'r'                replica ID of the local replica
//	\x01 rangeID(8) 'h'                raft HardState
//	\x01 rangeID(8) 's'                applied state: index, term, descriptor, stats, freeze
//	\x01 rangeID(8) 't'                truncated log state: index and term before the first entry
//	\x01 rangeID(8) 'l' index(8)       raft log entry
//	\x01 rangeID(8) 'x'                tombstone: replica IDs below this one are gone for good
//	\x02 logical key                   data
const (
	prefixLocal = 0x00
	prefixRange = 0x01
	prefixData  = 0x02
)

var formatKey = []byte("\x00format")

// formatVersion is the layout version written into a new store.
const formatVersion = "raftkv-1"

const (
	sufReplicaID = 'r'
	sufHard      = 'h'
	sufState     = 's'
	sufTrunc     = 't'
	sufLog       = 'l'
	sufTombstone = 'x'
)

func rangeKey(id RangeID, suffix byte) []byte {
	k := make([]byte, 0, 10)
	k = append(k, prefixRange)
	k = binary.BigEndian.AppendUint64(k, uint64(id))
	return append(k, suffix)
}

// rangePrefixEnd is the first key after every key of range id.
func rangePrefixEnd(id RangeID) []byte {
	k := make([]byte, 0, 9)
	k = append(k, prefixRange)
	return binary.BigEndian.AppendUint64(k, uint64(id)+1)
}

func logKey(id RangeID, index uint64) []byte {
	k := rangeKey(id, sufLog)
	return binary.BigEndian.AppendUint64(k, index)
}

// rangeIDOf parses the range ID of a range-local key.
func rangeIDOf(k []byte) (RangeID, byte, bool) {
	if len(k) < 10 || k[0] != prefixRange {
		return 0, 0, false
	}
	return RangeID(binary.BigEndian.Uint64(k[1:9])), k[9], true
}

func dataKey(logical []byte) []byte {
	k := make([]byte, 0, 1+len(logical))
	k = append(k, prefixData)
	return append(k, logical...)
}

// dataEnd is the data key bounding a span end (nil: the end of the data).
func dataEnd(end []byte) []byte {
	if end == nil {
		return []byte{prefixData + 1}
	}
	return dataKey(end)
}

// Meta range keys (logical): "md"+end → descriptor of the range ending
// there ("md\xff" for the range without end), "mn"+id → node record,
// "mi" → the last range ID handed out.
var (
	metaDescPrefix = []byte("md")
	metaNodePrefix = []byte("mn")
	metaIDKey      = []byte("mi")
)

func metaDescKey(end []byte) []byte {
	if end == nil {
		return []byte("md\xff")
	}
	k := append([]byte(nil), metaDescPrefix...)
	return append(k, end...)
}

func metaNodeKey(id NodeID) []byte {
	k := append([]byte(nil), metaNodePrefix...)
	return binary.BigEndian.AppendUint64(k, uint64(id))
}
