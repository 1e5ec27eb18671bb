package logsink

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A process name with a newline must not become a second journal line
// (or, in journalctl's view, a forged message).
func TestEventTextIsEscaped(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	s := New(zap.New(core), time.Hour)
	s.Write(context.Background(), []collectors.Record{{Kind: collectors.KindEvent, Type: "spike", Time: time.Now(),
		Message: "spike: cause process y\n<0>PANIC (pid 7)", Dims: map[string]string{"top_comm": "y\n<0>PANIC"}}})
	e := logs.All()
	if len(e) != 1 {
		t.Fatalf("%d entries", len(e))
	}
	if strings.ContainsAny(e[0].Message, "\n") || !strings.Contains(e[0].Message, `y\x0a<0>PANIC`) {
		t.Errorf("message %q", e[0].Message)
	}
	if v := e[0].ContextMap()["top_comm"]; v != `y\x0a<0>PANIC` {
		t.Errorf("TOP_COMM %q", v)
	}
}
