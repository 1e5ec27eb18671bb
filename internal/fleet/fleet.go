// Package fleet asks CloudWatch Logs Insights about the incidents every
// instance shipped (internal/sink/cwlogs): which machines spiked or hung,
// and which jobs were blamed, across the fleet. The queries are plain
// Logs Insights text (Query), so the README can give them for pasting
// into the console and the tests can run them against the stand-in.
package fleet

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/ec2diag/ec2diag/internal/clock"
)

// API is what the queries call; *cloudwatchlogs.Client satisfies it.
type API interface {
	StartQuery(context.Context, *cloudwatchlogs.StartQueryInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.StartQueryOutput, error)
	GetQueryResults(context.Context, *cloudwatchlogs.GetQueryResultsInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.GetQueryResultsOutput, error)
}

// Filter narrows a query.
type Filter struct {
	Since    time.Duration
	Instance string // one instance (the dashboard's single-instance view)
	ASG      string // AutoScalingGroupName the instances were in
	Job      string // only incidents that blamed this job
	Limit    int
}

// Incident is one incident of the fleet, from its records' latest verdict.
type Incident struct {
	Instance  string    `json:"instance_id"`
	ASG       string    `json:"asg,omitempty"`
	ID        string    `json:"incident"`
	Started   time.Time `json:"started"`
	LastSeen  time.Time `json:"last_seen"`
	Ended     bool      `json:"ended"` // false: no end record (still running, or the machine hung or went away)
	Reason    string    `json:"reason,omitempty"`
	Cause     string    `json:"cause,omitempty"`
	BlamedJob string    `json:"blamed_job,omitempty"`
	Top       string    `json:"top_process,omitempty"`
	Records   int       `json:"records"`
}

// JobCount is how often a job was blamed (caused) and on how many incidents.
type JobCount struct {
	Job       string `json:"job"`
	Incidents int    `json:"incidents"`
	Instances int    `json:"instances"`
}

// q quotes a value for a Logs Insights string literal.
func q(s string) string { return strconv.Quote(s) }

func filters(f Filter) string {
	var b strings.Builder
	if f.Instance != "" {
		b.WriteString(" and instance_id = " + q(f.Instance))
	}
	if f.ASG != "" {
		b.WriteString(" and asg = " + q(f.ASG))
	}
	if f.Job != "" {
		b.WriteString(" and blamed_job = " + q(f.Job))
	}
	return b.String()
}

func limit(f Filter) int {
	if f.Limit <= 0 || f.Limit > 10000 {
		return 1000
	}
	return f.Limit
}

// IncidentsQuery is one row per incident: its first and last record, the
// latest verdict, and whether an end record came.
func IncidentsQuery(f Filter) string {
	return `filter kind in ["onset", "snapshot", "end"]` + filters(f) + `
| stats earliest(@timestamp) as started, latest(@timestamp) as last_seen, latest(kind) as last_kind, earliest(reason) as first_reason, latest(cause) as cause, latest(blamed_job) as blamed_job, latest(top_process) as top_process, latest(asg) as asg, count(*) as records by instance_id, incident
| sort started desc
| limit ` + strconv.Itoa(limit(f))
}

// JobsQuery counts, per job blamed (verdict "caused"), the incidents that
// blamed it. One row per incident and job first; the counting is done
// here, as Logs Insights cannot count distinct pairs in one stats.
func JobsQuery(f Filter) string {
	return `filter kind in ["onset", "snapshot", "end"] and ispresent(blamed_job)` + filters(f) + `
| stats count(*) as records by blamed_job, instance_id, incident
| limit 10000`
}

// TopJobsQuery is JobsQuery counted by Logs Insights itself (its
// count_distinct is approximate on large sets, so the CLI counts exactly
// from JobsQuery): for the console and the dashboard.
func TopJobsQuery(f Filter) string {
	return `filter kind in ["onset", "snapshot", "end"] and ispresent(blamed_job)` + filters(f) + `
| stats count_distinct(incident) as incidents, count_distinct(instance_id) as instances by blamed_job
| sort incidents desc
| limit ` + strconv.Itoa(min(limit(f), 100))
}

// Source is the SOURCE clause a dashboard's log widget starts with.
// (Log group names cannot hold a quote: config validates them.)
func Source(group string) string { return "SOURCE '" + group + "' | " }

// Client runs the queries.
type Client struct {
	API   API
	Group string
	Clock clock.Clock
	// Poll is the first wait between GetQueryResults calls (doubling to
	// 5 s); Timeout bounds the whole query.
	Poll, Timeout time.Duration
}

// Run starts query over the last since and waits for its rows.
func (c *Client) Run(ctx context.Context, query string, since time.Duration) ([]map[string]string, error) {
	now := clock.Or(c.Clock).Now
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	end := now()
	out, err := c.API.StartQuery(ctx, &cloudwatchlogs.StartQueryInput{LogGroupNames: []string{c.Group}, QueryString: aws.String(query),
		StartTime: aws.Int64(end.Add(-since).Unix()), EndTime: aws.Int64(end.Unix()), Limit: aws.Int32(10000)})
	if err != nil {
		return nil, fmt.Errorf("start Logs Insights query on %s: %w", c.Group, err)
	}
	wait := c.Poll
	for {
		res, err := c.API.GetQueryResults(ctx, &cloudwatchlogs.GetQueryResultsInput{QueryId: out.QueryId})
		if err != nil {
			return nil, fmt.Errorf("Logs Insights query results: %w", err)
		}
		switch res.Status {
		case types.QueryStatusComplete:
			rows := make([]map[string]string, 0, len(res.Results))
			for _, r := range res.Results {
				m := map[string]string{}
				for _, f := range r {
					if f.Field != nil && f.Value != nil {
						m[*f.Field] = *f.Value
					}
				}
				rows = append(rows, m)
			}
			return rows, nil
		case types.QueryStatusFailed, types.QueryStatusCancelled, types.QueryStatusTimeout:
			return nil, fmt.Errorf("Logs Insights query %s", strings.ToLower(string(res.Status)))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("Logs Insights query did not complete: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// insightsTime parses @timestamp as Logs Insights prints it (UTC).
func insightsTime(s string) time.Time {
	t, _ := time.Parse("2006-01-02 15:04:05.000", s)
	return t
}

// Incidents runs IncidentsQuery. A row that lacks the incident, the
// instance or the start (events that are not the agent's in the group,
// or fields Logs Insights did not extract) is no incident: it is counted
// in skipped, not shown dated 0001-01-01.
func (c *Client) Incidents(ctx context.Context, f Filter) (_ []Incident, skipped int, _ error) {
	rows, err := c.Run(ctx, IncidentsQuery(f), f.Since)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Incident, 0, len(rows))
	for _, r := range rows {
		if r["incident"] == "" || r["instance_id"] == "" || insightsTime(r["started"]).IsZero() {
			skipped++
			continue
		}
		n, _ := strconv.Atoi(r["records"])
		out = append(out, Incident{Instance: r["instance_id"], ASG: r["asg"], ID: r["incident"], Started: insightsTime(r["started"]),
			LastSeen: insightsTime(r["last_seen"]), Ended: r["last_kind"] == "end", Reason: r["first_reason"], Cause: r["cause"],
			BlamedJob: r["blamed_job"], Top: r["top_process"], Records: n})
	}
	return out, skipped, nil
}

// Jobs runs JobsQuery and counts incidents and instances per job, most
// blamed first.
func (c *Client) Jobs(ctx context.Context, f Filter) ([]JobCount, error) {
	rows, err := c.Run(ctx, JobsQuery(f), f.Since)
	if err != nil {
		return nil, err
	}
	type acc struct {
		incidents map[string]bool
		instances map[string]bool
	}
	by := map[string]*acc{}
	for _, r := range rows {
		j := r["blamed_job"]
		if j == "" {
			continue
		}
		a := by[j]
		if a == nil {
			a = &acc{map[string]bool{}, map[string]bool{}}
			by[j] = a
		}
		a.incidents[r["instance_id"]+"\x00"+r["incident"]] = true
		a.instances[r["instance_id"]] = true
	}
	out := make([]JobCount, 0, len(by))
	for j, a := range by {
		out = append(out, JobCount{Job: j, Incidents: len(a.incidents), Instances: len(a.instances)})
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].Incidents != out[k].Incidents {
			return out[i].Incidents > out[k].Incidents
		}
		return out[i].Job < out[k].Job
	})
	if l := limit(f); len(out) > l {
		out = out[:l]
	}
	return out, nil
}
