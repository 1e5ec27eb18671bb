package metrics

import (
	"os"
	"strings"
	"testing"
)

// The catalogue is a contract dashboards and alarms are built on: every
// metric the agent can publish is in docs/metrics.md.
func TestCatalogueIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Catalogue() {
		if !strings.Contains(string(doc), "`"+s.Name+"`") {
			t.Errorf("%s is not in docs/metrics.md", s.Name)
		}
	}
	for _, f := range []string{"healthy", "bw_in_allowance_exceeded", "bw_out_allowance_exceeded", "pps_allowance_exceeded",
		"conntrack_allowance_exceeded", "conntrack_allowance_available", "linklocal_allowance_exceeded", "total_resets", "tx_timeout"} {
		if n := nicSpec("ena", f).Name; !strings.Contains(string(doc), n) {
			t.Errorf("%s is not in docs/metrics.md", n)
		}
	}
}
