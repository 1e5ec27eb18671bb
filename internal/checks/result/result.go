// Package result is the outcome of an instance check, apart from the
// checks themselves: the daemon reports results without linking the EC2
// API the checks call.
package result

import "slices"

// Statuses.
const (
	Pass = "pass"
	Warn = "warn"
	Fail = "fail"
)

// Result is one check's outcome; the JSON is a contract.
type Result struct {
	Name    string            `json:"name"`
	Status  string            `json:"status"`
	Reason  string            `json:"reason"`
	Details map[string]string `json:"details,omitempty"`
}

// Worst is the worst status among rs (pass when empty).
func Worst(rs []Result) string {
	order := []string{Pass, Warn, Fail}
	w := Pass
	for _, r := range rs {
		if slices.Index(order, r.Status) > slices.Index(order, w) {
			w = r.Status
		}
	}
	return w
}
