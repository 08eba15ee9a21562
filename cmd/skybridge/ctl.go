package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const ctlUsage = `usage: skybridge ctl COMMAND [ARGS] [--admin URL] [--token TOKEN] [--tenant TENANT]
commands:
  tenants                               tenants and their figures
  tenant TENANT                         one tenant
  settings TENANT                       a tenant's settings
  set-settings TENANT JSON              change settings ({"max_connections": 100})
  sessions TENANT [OFFSET [LIMIT]]      a tenant's sessions
  session TENANT CLIENT                 one session, with its subscriptions
  kick TENANT CLIENT [--discard]        disconnect a client (0x98); --discard ends its session
  subscriptions TENANT                  every subscription of a tenant
  retained TENANT [FILTER]              retained messages (default filter #)
  delete-retained TENANT TOPIC          delete a retained message
  cluster                               the cluster's members as this node sees them, and its raftkv ranges
  drain                                 send this node's clients to other nodes (0x9C), and new ones too
  undrain                               accept clients again
Flags go before or after the command and its arguments; "--" ends them (for an
argument that starts with a dash). --tenant T gives the TENANT argument as a flag.
--admin defaults to $SKYBRIDGE_ADMIN or http://127.0.0.1:8081, --token to $SKYBRIDGE_ADMIN_TOKEN.`

// ctl is the command-line client of the admin API (docs/ADMIN.md).
func ctl(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), ctlUsage) }
	admin := fs.String("admin", envDefault("SKYBRIDGE_ADMIN", "http://127.0.0.1:8081"), "admin API base URL")
	token := fs.String("token", os.Getenv("SKYBRIDGE_ADMIN_TOKEN"), "admin token")
	tenant := fs.String("tenant", "", "the command's TENANT argument")
	discard := fs.Bool("discard", false, "kick: end the session too")
	if helpRequested(args) {
		printHelp(fs, stdout)
		return nil
	}
	a, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(a) == 0 {
		fs.Usage()
		return errors.New("no command")
	}
	if *tenant != "" && a[0] != "tenants" && a[0] != "cluster" {
		a = append([]string{a[0], *tenant}, a[1:]...)
	}
	need := func(n int) error {
		if len(a) < n+1 {
			fs.Usage()
			return fmt.Errorf("%s needs %d argument(s)", a[0], n)
		}
		return nil
	}
	esc := url.PathEscape
	var method, path, body string
	switch a[0] {
	case "tenants":
		method, path = "GET", "/api/v1/tenants"
	case "cluster":
		method, path = "GET", "/api/v1/cluster"
	case "drain":
		method, path = "POST", "/api/v1/cluster/drain"
	case "undrain":
		method, path = "DELETE", "/api/v1/cluster/drain"
	case "tenant":
		if err := need(1); err != nil {
			return err
		}
		method, path = "GET", "/api/v1/tenants/"+esc(a[1])
	case "settings":
		if err := need(1); err != nil {
			return err
		}
		method, path = "GET", "/api/v1/tenants/"+esc(a[1])+"/settings"
	case "set-settings":
		if err := need(2); err != nil {
			return err
		}
		method, path, body = "PUT", "/api/v1/tenants/"+esc(a[1])+"/settings", a[2]
	case "sessions":
		if err := need(1); err != nil {
			return err
		}
		q := url.Values{}
		if len(a) > 2 {
			q.Set("offset", a[2])
		}
		if len(a) > 3 {
			q.Set("limit", a[3])
		}
		method, path = "GET", "/api/v1/tenants/"+esc(a[1])+"/sessions?"+q.Encode()
	case "session":
		if err := need(2); err != nil {
			return err
		}
		method, path = "GET", "/api/v1/tenants/"+esc(a[1])+"/sessions/"+esc(a[2])
	case "kick":
		if err := need(2); err != nil {
			return err
		}
		path = "/api/v1/tenants/" + esc(a[1]) + "/sessions/" + esc(a[2])
		if *discard {
			path += "?discard=true"
		}
		method = "DELETE"
	case "subscriptions":
		if err := need(1); err != nil {
			return err
		}
		method, path = "GET", "/api/v1/tenants/"+esc(a[1])+"/subscriptions"
	case "retained":
		if err := need(1); err != nil {
			return err
		}
		filter := "#"
		if len(a) > 2 {
			filter = a[2]
		}
		method, path = "GET", "/api/v1/tenants/"+esc(a[1])+"/retained?filter="+url.QueryEscape(filter)
	case "delete-retained":
		if err := need(2); err != nil {
			return err
		}
		method, path = "DELETE", "/api/v1/tenants/"+esc(a[1])+"/retained?topic="+url.QueryEscape(a[2])
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", a[0])
	}
	req, err := http.NewRequest(method, strings.TrimRight(*admin, "/")+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s", resp.Status)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	_, err = stdout.Write(out)
	return err
}

func envDefault(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
