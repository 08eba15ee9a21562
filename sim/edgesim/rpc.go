package edgesim

import (
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/sim"
)

// The cloud's HTTPS API on the virtual network: one request per
// connection, a 4-byte length and a JSON document each way. Production
// runs the same calls over net/http with TLS (cloud/service); here the
// node's certificate travels in the request and the server verifies it as
// TLS would, on virtual time.

// rpcPort is the API's port on the cloud host.
const rpcPort = 8443

// rpcRequest is a call.
type rpcRequest struct {
	Kind string `json:"kind"` // activate, renew, artifact
	// Cert is the caller's client certificate (artifact downloads).
	Cert []byte `json:"cert,omitempty"`
	SHA  string `json:"sha,omitempty"`
	Body []byte `json:"body,omitempty"`
}

type rpcResponse struct {
	Status int    `json:"status"`
	Body   []byte `json:"body"`
}

func frame(v any) []byte {
	b, _ := json.Marshal(v) // plain data
	out := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(out, uint32(len(b)))
	return append(out, b...)
}

// unframe returns the document at the front of b once it is whole.
func unframe(b []byte) ([]byte, bool) {
	if len(b) < 4 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(b))
	if len(b) < 4+n {
		return nil, false
	}
	return b[4 : 4+n], true
}

// rpcCall is one call in flight, from a node.
type rpcCall struct {
	ep    *sim.Endpoint
	req   []byte
	in    []byte
	done  func(status int, body []byte)
	timer env.Timer
	over  bool
}

// call sends req to the cloud host; done hears the answer, or status 0
// when the cloud cannot be reached (refused, reset, or no answer within
// timeout: a partition).
func call(clock *sim.Clock, from *sim.Host, to string, req rpcRequest, timeout time.Duration, done func(int, []byte)) {
	c := &rpcCall{req: frame(req), done: done}
	c.ep = from.Dial(to, rpcPort, c)
	c.timer = clock.AfterFunc(timeout, func() { c.finish(0, nil) })
}

func (c *rpcCall) finish(status int, body []byte) {
	if c.over {
		return
	}
	c.over = true
	c.timer.Stop()
	c.ep.Abort()
	c.done(status, body)
}

func (c *rpcCall) Opened(ep *sim.Endpoint) { ep.Write(c.req) }

func (c *rpcCall) Data(ep *sim.Endpoint, b []byte) {
	ep.Consume(len(b))
	c.in = append(c.in, b...)
	if doc, ok := unframe(c.in); ok {
		var r rpcResponse
		if json.Unmarshal(doc, &r) != nil {
			c.finish(0, nil)
			return
		}
		c.finish(r.Status, r.Body)
	}
}

func (c *rpcCall) Closed(*sim.Endpoint, bool) { c.finish(0, nil) }

func (c *rpcCall) Writable(*sim.Endpoint) {}

// rpcServer is the API's side of one connection.
type rpcServer struct {
	in     []byte
	handle func(req rpcRequest) (int, []byte)
	done   bool
}

// serveRPC makes host answer calls with handle.
func serveRPC(host *sim.Host, handle func(rpcRequest) (int, []byte)) {
	host.Listen(rpcPort, func(*sim.Endpoint) sim.Handler { return &rpcServer{handle: handle} })
}

func (r *rpcServer) Opened(*sim.Endpoint) {}

func (r *rpcServer) Data(ep *sim.Endpoint, b []byte) {
	ep.Consume(len(b))
	if r.done {
		return
	}
	r.in = append(r.in, b...)
	doc, ok := unframe(r.in)
	if !ok {
		return
	}
	r.done = true
	var req rpcRequest
	status, body := 400, []byte("bad request")
	if json.Unmarshal(doc, &req) == nil {
		status, body = r.handle(req)
	}
	ep.Write(frame(rpcResponse{Status: status, Body: body}))
	ep.Close()
}

func (r *rpcServer) Closed(*sim.Endpoint, bool) {}

func (r *rpcServer) Writable(*sim.Endpoint) {}
