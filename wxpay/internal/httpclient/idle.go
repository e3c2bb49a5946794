package httpclient

import (
	"context"
	"sync/atomic"
	"time"
)

// IdleTimeout is a deadline that progress renews: a stream's (a bill's)
// Timeout bounds the wait for the answer, then each stretch without a byte,
// not the whole download.
type IdleTimeout struct {
	d      time.Duration
	timer  *time.Timer
	cancel context.CancelFunc
	fired  atomic.Bool
}

// WithIdleTimeout returns ctx cancelled once d passes without Touch (never
// when d <= 0) or on Release.
func WithIdleTimeout(ctx context.Context, d time.Duration) (context.Context, *IdleTimeout) {
	ctx, cancel := context.WithCancel(ctx)
	t := &IdleTimeout{d: d, cancel: cancel}
	if d > 0 {
		t.timer = time.AfterFunc(d, func() { t.fired.Store(true); cancel() })
	}
	return ctx, t
}

// Touch gives the context its whole timeout again, from now.
func (t *IdleTimeout) Touch() {
	if t.timer != nil {
		t.timer.Reset(t.d)
	}
}

// Expired reports whether the timeout ran out (rather than the caller's
// context, or Release, ending it).
func (t *IdleTimeout) Expired() bool { return t.fired.Load() }

// Release stops the timer and cancels the context.
func (t *IdleTimeout) Release() {
	if t.timer != nil {
		t.timer.Stop()
	}
	t.cancel()
}
