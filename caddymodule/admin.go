package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the gateway's operator endpoints on Caddy's admin
// endpoint (localhost:2019 by default):
//
//	GET  /wxpay/events[?state=pending|delivered|dead&mch_id=…&limit=…&before=<id>]
//	GET  /wxpay/events/<id>           the event, its attempts, the backend's last answer
//	POST /wxpay/events/<id>/replay    deliver it again (same id, same payload)
//	GET  /wxpay/delivery              paused or not, events per state, in flight
//	POST /wxpay/delivery/pause
//	POST /wxpay/delivery/resume
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.wxpay",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/wxpay/events", Handler: caddy.AdminHandlerFunc(a.listEvents)},
		{Pattern: "/wxpay/events/", Handler: caddy.AdminHandlerFunc(a.event)},
		{Pattern: "/wxpay/delivery", Handler: caddy.AdminHandlerFunc(a.delivery)},
		{Pattern: "/wxpay/delivery/", Handler: caddy.AdminHandlerFunc(a.delivery)},
	}
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// current returns the running configuration's ledger.
func current() (*App, *ledgerHandle, error) {
	app := active.Load()
	if app == nil {
		return nil, nil, apiErr(http.StatusServiceUnavailable, "the wxpay app is not running")
	}
	h := app.ledger
	if h == nil {
		return nil, nil, apiErr(http.StatusNotFound, "the wxpay app keeps no ledger (ack upstream)")
	}
	return app, h, nil
}

// eventView is an event as the admin API shows it.
type eventView struct {
	ID            string          `json:"id"`
	MchID         string          `json:"mch_id"`
	Type          string          `json:"type"`
	OutTradeNo    string          `json:"out_trade_no"`
	TransactionID string          `json:"transaction_id,omitempty"`
	State         string          `json:"state"`
	Created       time.Time       `json:"created"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	DeliveredAt   *time.Time      `json:"delivered_at,omitempty"`
	LastStatus    int             `json:"last_status,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	LastResponse  string          `json:"last_response,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	AttemptLog    []attemptView   `json:"attempt_log,omitempty"`
}

type attemptView struct {
	At         time.Time `json:"at"`
	DurationMS int64     `json:"duration_ms"`
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response,omitempty"`
}

func viewOf(e *ledger.Event, withPayload bool) eventView {
	v := eventView{
		ID: e.ID, MchID: e.MchID, Type: e.Type, OutTradeNo: e.OutTradeNo, TransactionID: e.TransactionID,
		State: e.State, Created: e.CreatedAt, Attempts: e.Attempts, LastStatus: e.LastStatus,
		LastError: e.LastError, LastResponse: e.LastResponse,
	}
	if e.State == ledger.EventPending && !e.NextAttemptAt.IsZero() {
		t := e.NextAttemptAt
		v.NextAttemptAt = &t
	}
	if !e.DeliveredAt.IsZero() {
		t := e.DeliveredAt
		v.DeliveredAt = &t
	}
	if withPayload && json.Valid(e.Payload) {
		v.Payload = e.Payload
	}
	return v
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (adminAPI) listEvents(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return apiErr(http.StatusMethodNotAllowed, "use GET")
	}
	_, h, err := current()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := ledger.ListFilter{State: q.Get("state"), MchID: q.Get("mch_id"), Before: q.Get("before")}
	switch f.State {
	case "", ledger.EventPending, ledger.EventDelivered, ledger.EventDead:
	default:
		return apiErr(http.StatusBadRequest, "state %q: want pending, delivered or dead", f.State)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return apiErr(http.StatusBadRequest, "limit %q: want 1 to 1000", l)
		}
		f.Limit = n
	}
	events, err := h.store.ListEvents(r.Context(), f)
	if err != nil {
		return apiErr(http.StatusInternalServerError, "listing events: %v", err)
	}
	out := make([]eventView, 0, len(events))
	for _, e := range events {
		out = append(out, viewOf(e, false))
	}
	return writeAdminJSON(w, out)
}

func (adminAPI) event(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/wxpay/events/")
	id, action, _ := strings.Cut(rest, "/")
	if id == "" {
		return apiErr(http.StatusNotFound, "no event id")
	}
	_, h, err := current()
	if err != nil {
		return err
	}
	switch {
	case action == "" && r.Method == http.MethodGet:
		e, attempts, err := h.store.GetEvent(r.Context(), id)
		if errors.Is(err, ledger.ErrNotFound) {
			return apiErr(http.StatusNotFound, "no event %s", id)
		}
		if err != nil {
			return apiErr(http.StatusInternalServerError, "reading event %s: %v", id, err)
		}
		v := viewOf(e, true)
		for _, a := range attempts {
			v.AttemptLog = append(v.AttemptLog, attemptView{At: a.At, DurationMS: a.Duration.Milliseconds(), Status: a.Status, Error: a.Error, Response: a.Response})
		}
		return writeAdminJSON(w, v)
	case action == "replay" && r.Method == http.MethodPost:
		err := h.store.Replay(r.Context(), id, time.Now())
		if errors.Is(err, ledger.ErrNotFound) {
			return apiErr(http.StatusNotFound, "no event %s", id)
		}
		if err != nil {
			return apiErr(http.StatusInternalServerError, "replaying event %s: %v", id, err)
		}
		h.worker.Notify()
		return writeAdminJSON(w, map[string]string{"id": id, "state": ledger.EventPending})
	case action == "" || action == "replay":
		return apiErr(http.StatusMethodNotAllowed, "use GET /wxpay/events/<id> or POST /wxpay/events/<id>/replay")
	}
	return apiErr(http.StatusNotFound, "no such route")
}

func (adminAPI) delivery(w http.ResponseWriter, r *http.Request) error {
	_, h, err := current()
	if err != nil {
		return err
	}
	switch {
	case r.URL.Path == "/wxpay/delivery" && r.Method == http.MethodGet:
	case r.URL.Path == "/wxpay/delivery/pause" && r.Method == http.MethodPost:
		h.worker.Pause()
	case r.URL.Path == "/wxpay/delivery/resume" && r.Method == http.MethodPost:
		h.worker.Resume()
	default:
		return apiErr(http.StatusNotFound, "use GET /wxpay/delivery, POST /wxpay/delivery/pause or /resume")
	}
	counts, err := h.store.CountEvents(r.Context())
	if err != nil {
		return apiErr(http.StatusInternalServerError, "counting events: %v", err)
	}
	return writeAdminJSON(w, map[string]any{
		"paused":    h.worker.Paused(),
		"in_flight": h.worker.InFlight(),
		"events":    counts,
	})
}

// Interface guard
var _ caddy.AdminRouter = adminAPI{}
