package agent

import (
	"encoding/json"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/impl/fifo"
)

// floor is the lowest sequence number the outbox holds (the next one when
// it holds none).
func (a *Agent) floor() uint64 {
	if e := a.index.Peek(); e != nil {
		return e.seq
	}
	return a.nextSeq
}

// appendRecord adds a record, synced before it returns; records beyond
// the bounds are dropped oldest first, in the same batch.
func (a *Agent) appendRecord(kind string, body any, now time.Time) {
	a.appendRecords(kind, []any{body}, now)
}

// appendRecords adds records in one synced batch (one sync for many
// device reports); records beyond the bounds are dropped oldest first —
// older ones of the outbox, then earlier ones of the batch — in the same
// batch.
func (a *Agent) appendRecords(kind string, bodies []any, now time.Time) {
	if a.id == nil || len(bodies) == 0 {
		return // nobody to send it to: the node is not registered yet
	}
	type step struct {
		rec     *api.Record // appended, or
		dropped uint64      // the sequence number dropped
	}
	lim := a.cfg.Outbox
	b := a.db.Batch()
	count, bytes := a.index.Len(), a.bytes
	popped := 0 // entries of the index dropped (its head)
	var added []outEntry
	var steps []step
	seq := a.nextSeq
	for _, body := range bodies {
		raw, err := json.Marshal(body)
		if err != nil {
			a.Stats.Outbox.AppendFailures++
			continue
		}
		rec := &api.Record{Seq: seq, At: now, Kind: kind, Body: raw}
		enc, _ := json.Marshal(rec) // plain data
		// Drop from the head until the new record fits.
		for count > 0 && (count+1 > lim.MaxRecords || bytes+len(enc) > lim.MaxBytes) {
			var e outEntry
			if popped < a.index.Len() {
				e = *a.index.At(popped)
				popped++
			} else {
				e, added = added[0], added[1:]
			}
			b.Delete(seqKey(e.seq))
			steps = append(steps, step{dropped: e.seq})
			count--
			bytes -= e.size
		}
		b.PutRaw(seqKey(rec.Seq), enc)
		added = append(added, outEntry{seq: rec.Seq, size: len(enc), at: now})
		steps = append(steps, step{rec: rec})
		count++
		bytes += len(enc)
		seq++
	}
	if seq == a.nextSeq {
		return
	}
	b.Put(keySeq, seq)
	if err := b.Commit(); err != nil {
		a.Stats.Outbox.AppendFailures += seq - a.nextSeq
		a.Stats.StoreErrors++
		return // nothing was written: the index is as it was
	}
	for range popped {
		a.index.Pop()
	}
	for _, e := range added {
		a.index.Push(e)
	}
	a.bytes = bytes
	a.Stats.Outbox.Appended += seq - a.nextSeq
	a.nextSeq = seq
	for _, st := range steps {
		if st.rec == nil {
			a.Stats.Outbox.DroppedFull++
		}
		if o := a.cfg.Observer; o != nil {
			if st.rec != nil {
				o.Appended(a.id.Node, a.epoch, st.rec)
			} else {
				o.Dropped(a.id.Node, a.epoch, st.dropped)
			}
		}
	}
}

// reindex rebuilds the index from the store (after a failed write).
func (a *Agent) reindex() {
	a.index = fifo.Queue[outEntry]{}
	a.bytes = 0
	_ = a.db.Range(keyOut, keyOutEnd, func(k string, v []byte) bool {
		var r api.Record
		if json.Unmarshal(v, &r) == nil {
			a.index.Push(outEntry{seq: r.Seq, size: len(v), at: r.At})
			a.bytes += len(v)
		}
		return true
	})
}

// expireOutbox drops records older than MaxAge.
func (a *Agent) expireOutbox(now time.Time) {
	limit := now.Add(-a.cfg.Outbox.MaxAge)
	var drop []outEntry
	for a.index.Len() > 0 && a.index.Peek().at.Before(limit) {
		drop = append(drop, a.index.Pop())
	}
	if len(drop) == 0 {
		return
	}
	b := a.db.Batch()
	for _, e := range drop {
		b.Delete(seqKey(e.seq))
	}
	if err := b.CommitNoSync(); err != nil {
		a.Stats.StoreErrors++
	}
	for _, e := range drop {
		a.bytes -= e.size
		a.Stats.Outbox.DroppedAge++
		if o := a.cfg.Observer; o != nil {
			o.Dropped(a.id.Node, a.epoch, e.seq)
		}
	}
}

// pump sends what is due: the first message after a connection once its
// jittered delay has passed, then batches, one in flight, at the pace the
// cloud asks for.
func (a *Agent) pump(now time.Time) {
	if !a.up || a.id == nil || now.Before(a.helloAt) {
		return
	}
	if a.inflight != 0 {
		if now.Before(a.sentAt.Add(a.cfg.AckTimeout)) {
			return
		}
		a.Stats.Outbox.Resent++ // no acknowledgement: send again from the floor
		a.inflight = 0
		// A connection that takes publishes and answers nothing for several
		// timeouts is likely half-open (TCP can take a quarter of an hour
		// to notice): start a new one.
		if a.timeouts++; a.timeouts >= maxTimeouts {
			a.timeouts = 0
			a.out.Reconnect = true
			a.Stats.Reconnects++
		}
	}
	if now.Before(a.sendAt) && !a.cfg.Hooks.NoJitter {
		return
	}
	if a.index.Len() == 0 && !a.helloDue {
		return
	}
	up := api.Up{Node: a.id.Node, Epoch: a.epoch, Floor: a.floor(), DesiredVersion: a.desiredVersion()}
	size := 0
	last := uint64(0)
	_ = a.db.Range(seqKey(up.Floor), keyOutEnd, func(_ string, v []byte) bool {
		if len(up.Records) >= a.cfg.BatchRecords || (len(up.Records) > 0 && size+len(v) > a.cfg.BatchBytes) {
			up.More = true
			return false
		}
		var r api.Record
		if json.Unmarshal(v, &r) != nil {
			return true // cannot happen: written by appendRecord
		}
		up.Records = append(up.Records, r)
		size += len(v)
		last = r.Seq
		return true
	})
	payload, _ := json.Marshal(&up) // plain data
	a.out.Publish = append(a.out.Publish, Message{Topic: api.NodeUpTopic(a.id.Node), Payload: payload})
	a.Stats.Ups++
	if a.helloDue {
		a.Stats.Hellos++
	}
	a.helloDue = false
	a.Stats.Outbox.Sent += uint64(len(up.Records))
	if last == 0 {
		return // a hello: its acknowledgement is not waited for
	}
	a.inflight, a.sentAt = last, now
	if a.cfg.Hooks.DeleteOnSend {
		a.handleAck(&api.Ack{Epoch: a.epoch, Seq: last}, now)
	}
}

func (a *Agent) desiredVersion() uint64 {
	if a.desired == nil {
		return 0
	}
	return a.desired.Version
}

// maxTimeouts acknowledgement timeouts in a row make the link reconnect.
const maxTimeouts = 3

// handleAck deletes what the cloud acknowledged.
func (a *Agent) handleAck(ack *api.Ack, now time.Time) {
	if ack.Epoch != a.epoch {
		a.Stats.Ignored++
		return
	}
	a.Stats.Acks++
	if ack.Seq >= a.floor() && a.index.Len() > 0 {
		// Point deletions, not a range: every iterator of the outbox would
		// pay for each range tombstone in the memtable.
		b := a.db.Batch()
		for a.index.Len() > 0 && a.index.Peek().seq <= ack.Seq {
			e := a.index.Pop()
			a.bytes -= e.size
			b.Delete(seqKey(e.seq))
		}
		// A deletion lost in a power failure only resends records the
		// cloud ignores as duplicates.
		if err := b.CommitNoSync(); err != nil {
			a.Stats.StoreErrors++
			a.reindex()
			return
		}
	}
	// An acknowledgement below the batch in flight is an earlier one (a
	// hello's); a batch the cloud could not apply whole is resent after
	// AckTimeout.
	if a.inflight != 0 && ack.Seq >= a.inflight {
		a.inflight = 0
	}
	a.sendAt = now.Add(ack.Wait.D())
}

// OutboxStats returns the outbox's counters.
func (a *Agent) OutboxStats() api.OutboxStats {
	s := a.Stats.Outbox
	s.Pending = uint64(a.index.Len())
	s.PendingBytes = uint64(a.bytes)
	return s
}
