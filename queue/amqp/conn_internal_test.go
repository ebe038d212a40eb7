package amqp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestConnBroke: a write to a cut connection breaks the link (and the
// claim reconnects); a deadline while the broker is silent, or a broker's
// refusal, does not (the caller gets its error at once).
func TestConnBroke(t *testing.T) {
	epipe := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"write: broken pipe", fmt.Errorf("claim: %w", epipe), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"EOF", fmt.Errorf("read frame: %w", io.EOF), true},
		{"the broker did not answer by the deadline", fmt.Errorf("the broker did not answer: %w", context.DeadlineExceeded), false},
		{"cancelled", context.Canceled, false},
		{"a channel exception", &amqp.Error{Code: 404, Reason: "NOT_FOUND - no queue"}, false},
		{"something else", errors.New("bad message"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := connBroke(tt.err); got != tt.want {
				t.Errorf("connBroke(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
