package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "wxpay",
		Usage: "events [--state pending|delivered|dead|held] | event <id> | replay <id> | status | pause | resume",
		Short: "Operates the WeChat Pay gateway's event delivery",
		Long: `
Talks to the running Caddy's admin endpoint (--address, default the one in
the config, usually localhost:2019) to see and operate the wxpay ledger:

  caddy wxpay events [--state dead] [--limit 100]   list events, newest first
  caddy wxpay event <id>                            one event, its attempts, the backend's last answer
  caddy wxpay replay <id>                           deliver an event again (same id, same payload)
  caddy wxpay status                                paused or not, events per state
  caddy wxpay pause | resume                        stop or restart deliveries
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("address", "", "The address of Caddy's admin endpoint")
			cmd.Flags().String("config", "", "The configuration file, to find the admin address")
			cmd.Flags().String("adapter", "", "The adapter of the configuration file")
			cmd.Flags().String("state", "", "With events: only events in this state")
			cmd.Flags().Int("limit", 0, "With events: at most this many")
			cmd.Args = cobra.RangeArgs(1, 2)
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdWxpay)
		},
	})
}

func cmdWxpay(fl caddycmd.Flags) (int, error) {
	args := fl.Args()
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy1(err)
	}
	method, path := http.MethodGet, ""
	need := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("caddy wxpay %s takes %d argument(s)", args[0], n-1)
		}
		return nil
	}
	switch args[0] {
	case "events":
		if err := need(1); err != nil {
			return caddy1(err)
		}
		q := url.Values{}
		if s := fl.String("state"); s != "" {
			q.Set("state", s)
		}
		if l := fl.Int("limit"); l > 0 {
			q.Set("limit", fmt.Sprint(l))
		}
		path = "/wxpay/events"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
	case "event":
		if err := need(2); err != nil {
			return caddy1(err)
		}
		path = "/wxpay/events/" + url.PathEscape(args[1])
	case "replay":
		if err := need(2); err != nil {
			return caddy1(err)
		}
		method, path = http.MethodPost, "/wxpay/events/"+url.PathEscape(args[1])+"/replay"
	case "status":
		if err := need(1); err != nil {
			return caddy1(err)
		}
		path = "/wxpay/delivery"
	case "pause", "resume":
		if err := need(1); err != nil {
			return caddy1(err)
		}
		method, path = http.MethodPost, "/wxpay/delivery/"+args[0]
	default:
		return caddy1(fmt.Errorf("unknown wxpay command %q (events, event, replay, status, pause, resume)", args[0]))
	}
	var headers http.Header
	if method == http.MethodPost {
		headers = http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, path, headers, nil)
	if err != nil {
		return caddy1(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return caddy1(err)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") == nil {
		body = pretty.Bytes()
	}
	_, _ = os.Stdout.Write(append(bytes.TrimRight(body, "\n"), '\n'))
	return 0, nil
}

func caddy1(err error) (int, error) { return 1, err }
