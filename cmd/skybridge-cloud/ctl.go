package main

import (
	"bytes"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
)

const ctlUsage = `usage: skybridge-cloud ctl [--api URL] [--token T] [--data DIR | --ca FILE] COMMAND ...

  nodes                            list nodes
  node NAME                        one node (status, last report, outbox cursor)
  token NODE [k=v ...] [--ttl D]   a one-time activation token; prints the join string
  tokens | revoke-token ID         outstanding tokens (never their secrets); revoke one
  label NODE [k=v ...]             replace a node's labels
  revoke NODE | delete-node NODE
  push FILE [--name N]             upload an artifact; prints its sha256
  artifacts
  deploy FILE                      create or update an app (YAML or JSON, see docs/EDGE.md)
  apps | app NAME | undeploy NAME
  config NAME key=value|key=@file ...      create or update a config
  secret NAME key=value|key=@file ...      create or update a secret (encrypted at rest)
  configs | secrets
  devicemodel FILE | device FILE   create or update (YAML or JSON)
  devices | shadow DEVICE
  desire DEVICE prop=JSON ...      set desired property values
  events [--since N] [--follow]
  get PATH | put PATH FILE | delete PATH   raw API calls
  broker-cert --out DIR HOST...    an external broker's TLS files, from the fleet CA
                                   (server.crt, server.key, ca.crt; docs/EDGE.md)

The token comes from --token, $SKYBRIDGE_CLOUD_TOKEN or DATA/admin.token; the
CA from --ca or DATA/tls/ca.crt; the API from --api or $SKYBRIDGE_CLOUD_API.`

type ctlClient struct {
	base, token string
	hc          *http.Client
	out         io.Writer
}

func ctl(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, ctlUsage) }
	apiURL := fs.String("api", envOr("SKYBRIDGE_CLOUD_API", "https://127.0.0.1:8443"), "the cloud's API")
	token := fs.String("token", os.Getenv("SKYBRIDGE_CLOUD_TOKEN"), "operator token")
	data := fs.String("data", "skybridge-cloud-data", "data directory to read the token and CA from")
	caFile := fs.String("ca", "", "CA certificate to trust (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		fmt.Fprintln(stdout, ctlUsage)
		return nil
	}
	if *token == "" {
		if b, err := os.ReadFile(filepath.Join(*data, "admin.token")); err == nil {
			*token = strings.TrimSpace(string(b))
		}
	}
	if *caFile == "" {
		*caFile = filepath.Join(*data, "tls", "ca.crt")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("the cloud's CA certificate: %w (give --ca, or fetch it once with curl -k %s/v1/ca)", err, *apiURL)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", *caFile)
	}
	c := &ctlClient{base: strings.TrimSuffix(*apiURL, "/"), token: *token, out: stdout,
		hc: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
	return c.command(rest[0], rest[1:])
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// call sends a request and decodes the JSON answer into out (when not
// nil); a status >= 300 is an error with the API's message.
func (c *ctlClient) call(method, path string, body io.Reader, ctype string, out any) error {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s (%d)", method, path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (c *ctlClient) callJSON(method, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.call(method, path, bytes.NewReader(b), "application/json", out)
}

func (c *ctlClient) print(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// get prints a resource as JSON.
func (c *ctlClient) get(path string) error {
	var v any
	if err := c.call("GET", path, nil, "", &v); err != nil {
		return err
	}
	return c.print(v)
}

// readDoc reads a YAML or JSON file into v through JSON (so the API's
// field names apply to both).
func readDoc(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// pairs reads k=v arguments (v=@file reads a file).
func pairs(args []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value", a)
		}
		if f, isFile := strings.CutPrefix(v, "@"); isFile {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			v = string(b)
		}
		m[k] = v
	}
	return m, nil
}

func need(args []string, n int, what string) error {
	if len(args) < n {
		return errors.New("usage: " + what)
	}
	return nil
}

func (c *ctlClient) command(cmd string, args []string) error {
	esc := url.PathEscape
	switch cmd {
	case "nodes":
		var nodes []api.Node
		if err := c.call("GET", "/v1/nodes", nil, "", &nodes); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tONLINE\tDESIRED\tAPPLIED\tAPPS\tOUTBOX\tLABELS\tLAST SEEN")
		for _, n := range nodes {
			applied, apps, pending := "-", "-", "-"
			if n.Status != nil {
				applied = fmt.Sprint(n.Status.AppliedVersion)
				running := 0
				for _, a := range n.Status.Apps {
					if a.State == api.AppRunning {
						running++
					}
				}
				apps = fmt.Sprintf("%d/%d", running, len(n.Status.Apps))
				pending = fmt.Sprint(n.Status.Outbox.Pending)
			}
			seen := "never"
			if !n.LastSeen.IsZero() {
				seen = time.Since(n.LastSeen).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.State, n.Online, n.DesiredVersion, applied, apps, pending, labelString(n.Labels), seen)
		}
		return tw.Flush()
	case "node":
		if err := need(args, 1, "node NAME"); err != nil {
			return err
		}
		return c.get("/v1/nodes/" + esc(args[0]))
	case "token":
		fs := flag.NewFlagSet("token", flag.ContinueOnError)
		ttl := fs.Duration("ttl", 0, "validity (default the cloud's, 24h)")
		if err := need(args, 1, "token NODE [k=v ...] [--ttl D]"); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		labels, err := pairs(fs.Args())
		if err != nil {
			return err
		}
		var out struct{ Join string }
		if err := c.callJSON("POST", "/v1/tokens", map[string]any{"node": args[0], "labels": labels, "ttl": api.Duration(*ttl)}, &out); err != nil {
			return err
		}
		fmt.Fprintln(c.out, out.Join)
		return nil
	case "broker-cert":
		return c.brokerCert(args)
	case "tokens":
		var tokens []api.TokenInfo
		if err := c.call("GET", "/v1/tokens", nil, "", &tokens); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNODE\tLABELS\tEXPIRES")
		for _, tk := range tokens {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", tk.ID, tk.Node, labelString(tk.Labels), tk.Expires.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	case "revoke-token":
		if err := need(args, 1, "revoke-token ID"); err != nil {
			return err
		}
		return c.call("DELETE", "/v1/tokens/"+esc(args[0]), nil, "", nil)
	case "label":
		if err := need(args, 1, "label NODE [k=v ...]"); err != nil {
			return err
		}
		labels, err := pairs(args[1:])
		if err != nil {
			return err
		}
		return c.callJSON("PUT", "/v1/nodes/"+esc(args[0])+"/labels", map[string]any{"labels": labels}, nil)
	case "revoke":
		if err := need(args, 1, "revoke NODE"); err != nil {
			return err
		}
		return c.call("POST", "/v1/nodes/"+esc(args[0])+"/revoke", nil, "", nil)
	case "delete-node":
		if err := need(args, 1, "delete-node NODE"); err != nil {
			return err
		}
		return c.call("DELETE", "/v1/nodes/"+esc(args[0]), nil, "", nil)
	case "push":
		fs := flag.NewFlagSet("push", flag.ContinueOnError)
		name := fs.String("name", "", "file name the app sees (default the file's)")
		if err := need(args, 1, "push FILE [--name N]"); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		if *name == "" {
			*name = filepath.Base(args[0])
		}
		var out struct {
			SHA256 string
			Size   int64
		}
		if err := c.call("POST", "/v1/artifacts?name="+url.QueryEscape(*name), f, "application/octet-stream", &out); err != nil {
			return err
		}
		fmt.Fprintln(c.out, out.SHA256)
		return nil
	case "deploy":
		if err := need(args, 1, "deploy FILE"); err != nil {
			return err
		}
		var a api.App
		if err := readDoc(args[0], &a); err != nil {
			return err
		}
		var out api.App
		if err := c.callJSON("PUT", "/v1/apps/"+esc(a.Name), a, &out); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "app %s revision %d\n", out.Name, out.Revision)
		return nil
	case "apps":
		var apps []api.App
		if err := c.call("GET", "/v1/apps", nil, "", &apps); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tREVISION\tSELECTOR\tARTIFACT")
		for _, a := range apps {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.12s\n", a.Name, a.Revision, a.Selector, a.Artifact.SHA256)
		}
		return tw.Flush()
	case "app":
		if err := need(args, 1, "app NAME"); err != nil {
			return err
		}
		return c.get("/v1/apps/" + esc(args[0]))
	case "undeploy":
		if err := need(args, 1, "undeploy NAME"); err != nil {
			return err
		}
		return c.call("DELETE", "/v1/apps/"+esc(args[0]), nil, "", nil)
	case "config", "secret":
		if err := need(args, 1, cmd+" NAME key=value|key=@file ..."); err != nil {
			return err
		}
		data, err := pairs(args[1:])
		if err != nil {
			return err
		}
		var out api.Config
		if err := c.callJSON("PUT", "/v1/"+cmd+"s/"+esc(args[0]), api.Config{Data: data}, &out); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "%s %s version %d\n", cmd, out.Name, out.Version)
		return nil
	case "configs", "secrets", "artifacts", "devices":
		return c.get("/v1/" + cmd)
	case "devicemodel", "device":
		if err := need(args, 1, cmd+" FILE"); err != nil {
			return err
		}
		var doc map[string]any
		if err := readDoc(args[0], &doc); err != nil {
			return err
		}
		name, _ := doc["name"].(string)
		return c.callJSON("PUT", "/v1/"+cmd+"s/"+esc(name), doc, nil)
	case "shadow":
		if err := need(args, 1, "shadow DEVICE"); err != nil {
			return err
		}
		return c.get("/v1/devices/" + esc(args[0]) + "/shadow")
	case "desire":
		if err := need(args, 2, "desire DEVICE prop=JSON ..."); err != nil {
			return err
		}
		kv, err := pairs(args[1:])
		if err != nil {
			return err
		}
		props := map[string]json.RawMessage{}
		for k, v := range kv {
			if !json.Valid([]byte(v)) {
				v, _ = jsonString(v)
			}
			props[k] = json.RawMessage(v)
		}
		var out any
		if err := c.callJSON("PUT", "/v1/devices/"+esc(args[0])+"/shadow/desired", props, &out); err != nil {
			return err
		}
		return c.print(out)
	case "events":
		return c.events(args)
	case "get":
		if err := need(args, 1, "get PATH"); err != nil {
			return err
		}
		return c.get(args[0])
	case "put":
		if err := need(args, 2, "put PATH FILE"); err != nil {
			return err
		}
		var doc any
		if err := readDoc(args[1], &doc); err != nil {
			return err
		}
		var out any
		if err := c.callJSON("PUT", args[0], doc, &out); err != nil {
			return err
		}
		return c.print(out)
	case "delete":
		if err := need(args, 1, "delete PATH"); err != nil {
			return err
		}
		return c.call("DELETE", args[0], nil, "", nil)
	}
	return fmt.Errorf("unknown ctl command %q (skybridge-cloud ctl help)", cmd)
}

func jsonString(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

func labelString(l map[string]string) string {
	var out []string
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func (c *ctlClient) events(args []string) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	since := fs.Uint64("since", 0, "after this sequence number")
	follow := fs.Bool("follow", false, "keep printing new events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for {
		var evs []api.Event
		if err := c.call("GET", fmt.Sprintf("/v1/events?since=%d", *since), nil, "", &evs); err != nil {
			return err
		}
		for _, e := range evs {
			fmt.Fprintf(c.out, "%d %s %-18s node=%s app=%s device=%s %s\n", e.Seq, e.At.Local().Format(time.DateTime), e.Type, e.Node, e.App, e.Device, e.Message)
			*since = e.Seq
		}
		if !*follow {
			return nil
		}
		time.Sleep(time.Second) // the API has no push; poll
	}
}

// brokerCert makes an external broker's key here, has the cloud certify
// it for the hosts, and writes the broker's TLS files.
func (c *ctlClient) brokerCert(args []string) error {
	fs := flag.NewFlagSet("broker-cert", flag.ContinueOnError)
	out := fs.String("out", "", "directory for server.crt, server.key and ca.crt")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return errors.New("usage: broker-cert --out DIR HOST...")
	}
	pub, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		return err
	}
	var resp api.BrokerCertResponse
	if err := c.callJSON("POST", "/v1/broker/certificate", api.BrokerCertRequest{PublicKey: pub, Hosts: fs.Args()}, &resp); err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM(priv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	for name, data := range map[string]string{"server.key": string(keyPEM), "server.crt": resp.Certificate, "ca.crt": resp.CA} {
		if err := os.WriteFile(filepath.Join(*out, name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.out, "wrote %s: the broker's fleet listener takes cert_file server.crt, key_file server.key, client_ca_file ca.crt (docs/EDGE.md)\n",
		strings.Join([]string{filepath.Join(*out, "server.crt"), "server.key", "ca.crt"}, ", "))
	return nil
}
