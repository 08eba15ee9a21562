package agent

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
)

// Activate starts the activation with a join token: the node draws its
// key, and Ready carries the request with its CSR. The answer comes back
// through Response.
func (a *Agent) Activate(j api.JoinToken, now time.Time) error {
	if a.id != nil {
		return errors.New("agent: already activated as " + a.id.Node)
	}
	key, seed, err := ca.NewKey(a.rnd)
	if err != nil {
		return err
	}
	csr, err := ca.CSR(key, "")
	if err != nil {
		return err
	}
	body, _ := json.Marshal(api.ActivateRequest{Token: j.Token, CSR: csr, Info: a.info})
	a.pendKey, a.pendingAPI = seed, j.API
	a.retry.reset()
	a.request(ReqActivate, j.API, j.CAHash, body)
	return nil
}

func (a *Agent) request(kind, apiURL, caHash string, body []byte) uint64 {
	a.nextReq++
	a.requests[a.nextReq] = kind
	q := Request{ID: a.nextReq, Kind: kind, API: apiURL, CAHash: caHash, Body: body}
	if kind == ReqActivate {
		a.lastActivate = q
	}
	a.out.Requests = append(a.out.Requests, q)
	return a.nextReq
}

// Response is the answer to a Request: an HTTP status (0 when the request
// did not reach the cloud) and the body.
func (a *Agent) Response(id uint64, status int, body []byte, now time.Time) error {
	kind, ok := a.requests[id]
	if !ok {
		return nil
	}
	delete(a.requests, id)
	switch kind {
	case ReqActivate:
		if a.id != nil {
			return nil // an answer to a request sent again after the first one worked
		}
		if status == 0 || status >= 500 {
			// The cloud was not reached (or failed): the same request again,
			// later; the token is still good.
			a.activateReq = a.lastActivate
			a.activateAt = now.Add(a.retry.next())
			return nil
		}
		if status != 200 {
			a.pendKey = nil
			return errors.New("activation refused: " + string(body))
		}
		return a.adopt(body, a.pendKey, now)
	case ReqRenew:
		r := a.renew
		a.renew = nil
		if r == nil || r.id != id {
			return nil
		}
		if status != 200 {
			a.Stats.RenewFailures++
			a.renewAt = now.Add(a.retry.next())
			return nil
		}
		return a.adopt(body, r.seed, now)
	}
	return nil
}

// adopt stores a new identity (activation or renewal) and asks the link
// to reconnect with it.
func (a *Agent) adopt(body, seed []byte, now time.Time) error {
	var resp api.ActivateResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return err
	}
	nc, err := ca.ParseCert(resp.Cert)
	if err != nil {
		return err
	}
	key, err := ca.KeyFromSeed(seed)
	if err != nil {
		return err
	}
	if !key.Public().(ed25519.PublicKey).Equal(nc.Cert.PublicKey) {
		return errors.New("agent: the certificate is not for this node's key")
	}
	id := identity{Node: resp.Node, Seed: seed, Cert: resp.Cert, CA: resp.CA, Broker: resp.Broker, API: a.pendingAPI,
		NotBefore: nc.Cert.NotBefore, NotAfter: nc.Cert.NotAfter, Received: now}
	if a.id != nil {
		if resp.Node != a.id.Node {
			return errors.New("agent: a certificate for another node")
		}
		id.API = a.id.API
	}
	b := a.db.Batch()
	b.Put(keyIdentity, &id)
	if err := b.Commit(); err != nil {
		a.Stats.StoreErrors++
		return err
	}
	first := a.id == nil
	a.id = &id
	a.pendKey = nil
	a.retry.reset()
	a.scheduleRenew(now)
	a.out.Reconnect = true
	a.Stats.Reconnects++
	if !first {
		a.Stats.Renewals++
	}
	a.noteChange(now)
	return nil
}

// scheduleRenew sets the renewal instant: RenewAt of the lifetime, ±5%,
// counted from the certificate's receipt.
func (a *Agent) scheduleRenew(now time.Time) {
	from := a.id.Received
	if from.IsZero() || from.Before(a.id.NotBefore) || !from.Before(a.id.NotAfter) {
		from = a.id.NotBefore
	}
	life := a.id.NotAfter.Sub(from)
	at := from.Add(time.Duration(a.cfg.RenewAt*float64(life)) - life/20 + time.Duration(a.rnd.Float64()*float64(life/10)))
	a.renewAt = at
}

// startRenew sends a renewal: a CSR for a new key, signed by the current
// key. It goes over HTTPS, which works with an expired certificate.
func (a *Agent) startRenew(now time.Time) {
	key, seed, err := ca.NewKey(a.rnd)
	if err != nil {
		return
	}
	csr, err := ca.CSR(key, a.id.Node)
	if err != nil {
		return
	}
	cur, err := ca.KeyFromSeed(a.id.Seed)
	if err != nil {
		return
	}
	body, _ := json.Marshal(api.RenewRequest{Node: a.id.Node, CSR: csr, Cert: a.id.Cert, Signature: ca.Prove(cur, csr)})
	id := a.request(ReqRenew, a.id.API, "", body)
	a.renew = &pendingRenew{id: id, seed: seed}
}
